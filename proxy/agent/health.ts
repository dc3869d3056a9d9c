// Health endpoints with kube-proxy's semantics. /healthz and /livez (kube-proxy's :10256): healthy
// unless a sync has been queued and not done for longer than the health timeout. Per service with
// externalTrafficPolicy Local, an HTTP server on its healthCheckNodePort answering 200 with the
// local endpoint count when there are local ready endpoints, else 503, so load balancers only send
// to nodes that have one.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ProxyState } from '../model/types.ts';

export interface ProxyHealth {
  /** A sync was requested (state became dirty); the first unserved request's time counts. */
  queued(now?: number): void;
  /** A sync finished successfully. */
  updated(now?: number): void;
  healthy(now?: number): boolean;
  body(now?: number): { lastUpdated: string; currentTime: string; nodeEligible: boolean };
}

export function createProxyHealth(healthTimeoutMs: number): ProxyHealth {
  let lastUpdated = 0;
  let queuedAt: number | undefined;
  return {
    queued(now = Date.now()) {
      queuedAt ??= now;
    },
    updated(now = Date.now()) {
      lastUpdated = now;
      queuedAt = undefined;
    },
    healthy(now = Date.now()) {
      return queuedAt === undefined || now - queuedAt <= healthTimeoutMs;
    },
    body(now = Date.now()) {
      return { lastUpdated: new Date(lastUpdated).toISOString(), currentTime: new Date(now).toISOString(), nodeEligible: true };
    },
  };
}

export function sendJson(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff', ...headers });
  res.end(text);
}

export function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

interface HealthCheckService {
  namespace: string;
  name: string;
  localEndpoints: number;
}

/** The health-check node port servers, opened and closed as services come and go. */
export function createHealthCheckServers(opts: { bindAddress: string; healthy: () => boolean; log: (m: string) => void }) {
  const servers = new Map<number, { server: Server; service: HealthCheckService }>();

  function handler(port: number) {
    return (_req: IncomingMessage, res: ServerResponse) => {
      const entry = servers.get(port);
      if (!entry) return sendJson(res, 503, {});
      const healthy = opts.healthy();
      const { namespace, name, localEndpoints } = entry.service;
      sendJson(res, localEndpoints > 0 && healthy ? 200 : 503, { service: { namespace, name }, localEndpoints, serviceProxyHealthy: healthy },
        { 'X-Load-Balancing-Endpoint-Weight': String(localEndpoints) });
    };
  }

  return {
    /** Brings the servers in line with the state's eTP=Local services. */
    async sync(state: ProxyState): Promise<void> {
      const wanted = new Map<number, HealthCheckService>();
      for (const sp of state.servicePorts) {
        if (!sp.healthCheckNodePort) continue;
        const before = wanted.get(sp.healthCheckNodePort);
        // kube-proxy counts per service; ports of one service agree unless named ports differ.
        wanted.set(sp.healthCheckNodePort, { namespace: sp.namespace, name: sp.name, localEndpoints: Math.max(before?.localEndpoints ?? 0, sp.localReadyEndpoints) });
      }
      for (const [port, entry] of servers) {
        if (wanted.has(port)) continue;
        servers.delete(port);
        await close(entry.server);
      }
      for (const [port, service] of wanted) {
        const entry = servers.get(port);
        if (entry) {
          entry.service = service;
          continue;
        }
        const server = createServer(handler(port));
        servers.set(port, { server, service });
        try {
          await listen(server, opts.bindAddress, port);
        } catch (err) {
          servers.delete(port);
          opts.log(`failed to open health check node port ${port} for ${service.namespace}/${service.name}: ${(err as Error).message}`);
        }
      }
    },
    async stop(): Promise<void> {
      await Promise.all([...servers.values()].map((e) => close(e.server)));
      servers.clear();
    },
    ports(): number[] {
      return [...servers.keys()];
    },
  };
}

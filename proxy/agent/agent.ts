// The service proxy of the node agent, kube-proxy style and level-triggered: every update from the
// state source only marks the state dirty; one throttled sync (at most one per minSyncPeriod)
// builds the whole desired state, lets the dataplane apply the difference in one transaction,
// and then updates health, the health-check node ports and stale UDP conntrack entries. A failed
// apply or a missing canary makes the next sync full. On stop the rules stay (fail static).
import { createServer, type Server } from 'node:http';
import type { Node } from '../../mesh-control/model/types.ts';
import { createProxyStateBuilder } from '../model/build-proxy-state.ts';
import type { ProxyState } from '../model/types.ts';
import { runCommand } from '../run-command.ts';
import { runConntrackDeletions, staleUdpDeletions } from './conntrack.ts';
import type { Dataplane } from './dataplane.ts';
import { close, createHealthCheckServers, createProxyHealth, listen, sendJson } from './health.ts';
import { createProxyMetrics, type ProxyMetrics } from './metrics.ts';
import type { ClusterStateSource, ClusterView } from './source.ts';

export interface HostPort {
  host: string;
  port: number;
}

export interface NodeAgentConfig {
  node: string;
  /** Pod CIDR of the cluster: ClusterIP traffic from outside it is masqueraded. */
  clusterCIDR?: string;
  /** Network namespace for kernel commands (tests, benchmarks); absent: the agent's own. */
  netns?: string;
  /** Throttle between syncs (default 100 ms). */
  minSyncPeriodMs?: number;
  /** Canary check period; a missing canary forces a full sync (default 30 s). */
  syncPeriodMs?: number;
  /** Delay before retrying after a failed sync (default 1 s). */
  retryMs?: number;
  /** /healthz turns 503 when a queued sync is older than this (default 2 × syncPeriod). */
  healthTimeoutMs?: number;
  /** /metrics, /healthz, /livez; absent: no metrics server. */
  metricsListen?: HostPort;
  /** /healthz and /livez (kube-proxy's :10256); absent: none. */
  healthzListen?: HostPort;
  /** Address the health-check node port servers bind (default 0.0.0.0). */
  healthCheckBindAddress?: string;
  /** Node IPs when the Node object has none (default: read with `ip -j addr` once at start). */
  nodeIPs?: string[];
  /** Delete stale UDP conntrack entries after syncs (default true). */
  conntrack?: boolean;
}

export interface NodeAgentDeps {
  source: ClusterStateSource;
  dataplane: Dataplane;
  log?: (message: string) => void;
}

export interface NodeAgent {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly metrics: ProxyMetrics;
  /** Resolves after the next sync that starts after this call (tests, benchmarks). */
  synced(): Promise<{ full: boolean; error?: Error }>;
  /** The state of the last successful sync. */
  readonly state: ProxyState | undefined;
}

/** Global IPv4 addresses of the namespace, for NodePort addresses when the Node object has none. */
export async function localIPv4Addresses(netns?: string): Promise<string[]> {
  const r = await runCommand('ip', ['-j', '-4', 'addr', 'show', 'scope', 'global'], { netns });
  if (r.code !== 0) return [];
  const links = JSON.parse(r.stdout || '[]') as { addr_info?: { local?: string }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter(Boolean);
}

export function createNodeAgent(config: NodeAgentConfig, deps: NodeAgentDeps): NodeAgent {
  const log = deps.log ?? ((m: string) => process.stderr.write(`weft agent: ${m}\n`));
  const { dataplane } = deps;
  const minSyncPeriodMs = config.minSyncPeriodMs ?? 100;
  const syncPeriodMs = config.syncPeriodMs ?? 30_000;
  const retryMs = config.retryMs ?? 1000;
  const metrics = createProxyMetrics();
  const health = createProxyHealth(config.healthTimeoutMs ?? 2 * syncPeriodMs);
  const hcServers = createHealthCheckServers({ bindAddress: config.healthCheckBindAddress ?? '0.0.0.0', healthy: () => health.healthy(), log });
  const builder = createProxyStateBuilder();
  const servers: Server[] = [];
  let view: ClusterView | undefined;
  let fallbackIPs: string[] = config.nodeIPs ?? [];
  let lastState: ProxyState | undefined;
  let needFull = true;
  let dirty = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let canaryTimer: NodeJS.Timeout | undefined;
  let lastSyncStart = 0;
  let stopped = false;
  let waiters: ((r: { full: boolean; error?: Error }) => void)[] = [];

  function markDirty(delayMs = 0): void {
    dirty = true;
    health.queued();
    metrics.lastQueued.set(Date.now() / 1000);
    schedule(delayMs);
  }

  function schedule(delayMs = 0): void {
    if (stopped || timer || running || !view) return;
    // Bounded frequency: an update after a quiet period syncs at once, a burst is coalesced.
    const wait = Math.max(delayMs, lastSyncStart + minSyncPeriodMs - Date.now(), 0);
    timer = setTimeout(() => {
      timer = undefined;
      running = syncOnce().finally(() => {
        running = undefined;
        if (dirty) schedule();
      });
    }, wait);
  }

  function nodeObject(v: ClusterView): Node {
    return v.nodes.find((n) => n.metadata.name === config.node) ?? { apiVersion: 'v1', kind: 'Node', metadata: { name: config.node } };
  }

  async function syncOnce(): Promise<void> {
    if (!view) return;
    dirty = false;
    lastSyncStart = Date.now();
    const started = performance.now();
    const node = nodeObject(view);
    const fromNode = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address);
    const state = builder.build({
      services: view.services, endpointSlices: view.endpointSlices, node,
      nodeIPs: fromNode.length > 0 ? fromNode : fallbackIPs, clusterCIDR: config.clusterCIDR,
    });
    const full = needFull || lastState === undefined;
    let outcome;
    try {
      outcome = await dataplane.sync(state, full);
    } catch (err) {
      needFull = true;
      if (dataplane.mode === 'nftables') metrics.nftablesSyncFailures.inc();
      else if (full) metrics.iptablesRestoreFailures.inc();
      else metrics.iptablesPartialRestoreFailures.inc();
      log(`${(err as Error).message}; retrying with a full sync in ${retryMs} ms`);
      notify({ full, error: err as Error });
      markDirty(retryMs);
      return;
    }
    needFull = false;
    const seconds = (performance.now() - started) / 1000;
    metrics.syncDuration.observe(seconds);
    (outcome.full ? metrics.fullSyncDuration : metrics.partialSyncDuration).observe(seconds);
    metrics.syncs.inc({ type: outcome.full ? 'full' : 'partial' });
    metrics.lastSync.set(Date.now() / 1000);
    for (const [table, n] of Object.entries(outcome.written)) metrics.rulesWritten.set({ table }, n);
    metrics.servicePorts.set(state.servicePorts.length);
    const before = lastState;
    lastState = state;
    if (!dirty) health.updated();
    notify({ full: outcome.full });
    await hcServers.sync(state);
    if (config.conntrack !== false) {
      const deletions = staleUdpDeletions(before, state);
      if (deletions.length > 0) {
        metrics.conntrackDeletions.inc(deletions.length);
        for (const f of await runConntrackDeletions(deletions, { netns: config.netns })) log(f);
      }
    }
  }

  function notify(r: { full: boolean; error?: Error }): void {
    const w = waiters;
    waiters = [];
    for (const resolve of w) resolve(r);
  }

  async function checkCanary(): Promise<void> {
    if (stopped || !lastState || needFull) return;
    if (await dataplane.rulesPresent().catch(() => false)) return;
    log('proxy rules are missing (canary chain gone): forcing a full sync');
    needFull = true;
    markDirty();
  }

  function serve(target: HostPort, withMetrics: boolean): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz' || path === '/livez') {
        const code = health.healthy() ? 200 : 503;
        (path === '/healthz' ? metrics.healthz : metrics.livez).inc({ code: String(code) });
        return sendJson(res, code, health.body());
      }
      if (withMetrics && path === '/metrics') {
        metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
          res.end(text);
        }, (err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        });
        return;
      }
      res.writeHead(404);
      res.end();
    });
    servers.push(server);
    return listen(server, target.host, target.port);
  }

  return {
    metrics,
    get state() {
      return lastState;
    },
    synced() {
      return new Promise((resolve) => waiters.push(resolve));
    },
    async start() {
      stopped = false;
      if (fallbackIPs.length === 0) fallbackIPs = await localIPv4Addresses(config.netns);
      if (config.metricsListen) await serve(config.metricsListen, true);
      if (config.healthzListen) await serve(config.healthzListen, false);
      canaryTimer = setInterval(() => void checkCanary(), syncPeriodMs);
      canaryTimer.unref();
      // No sync before the first view (kube-proxy waits for its informers to sync).
      await deps.source.start((v) => {
        view = v;
        markDirty();
      });
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (canaryTimer) clearInterval(canaryTimer);
      await deps.source.stop();
      await running;
      await hcServers.stop();
      await Promise.all(servers.splice(0).map(close));
    },
  };
}

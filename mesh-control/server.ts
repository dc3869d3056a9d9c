// `weft control`: the store, the controllers, the gRPC API (node streams, CLI, bootstrap) over
// mTLS with the service's own CA, and the operations endpoint (/healthz, /readyz, /metrics).
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { Server, ServerCredentials, experimental, type Metadata, type ServerUnaryCall, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { ControlError, toGrpcError } from './errors.ts';
import { createAdmission } from './api/admission.ts';
import { createControllers } from './controllers/run.ts';
import { createEtcdLeaseStore, createFileLeaseStore, createSubnetAllocator, DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_MASK, type LeaseStore } from './leases/index.ts';
import { isNamespaced } from './model/objects.ts';
import { createControlMetrics } from './ops/metrics.ts';
import { openCertificateAuthority, type CertificateAuthority, type Identity } from './pki/ca.ts';
import { createJoinTokens, type JoinTokens } from './pki/tokens.ts';
import { weftServices } from './proto/load.ts';
import { createNodeSync } from './push/node-sync.ts';
import { nodeStreamInterceptor, type NodeStream } from './push/node-stream.ts';
import { preEncodedService } from './push/wire.ts';
import { openStore } from './store/index.ts';
import { resolveKind } from './kinds.ts';
import { DEFAULT_LISTEN, splitHostPort, writeClientConfig } from './client-config.ts';
import { unixSocketPath } from './client.ts';
import { CLIENT_CERT_HEADER, makeFrontDir, startHaproxyFront, type HaproxyFront } from './front/haproxy.ts';

export interface ControlServerConfig {
  /** gRPC HOST:PORT (default 127.0.0.1:7443; port 0 picks one) or unix:/path. */
  listen?: string;
  /** HTTP HOST:PORT for /healthz, /readyz, /metrics; absent: not served. */
  opsListen?: string;
  dataDir?: string;
  etcdEndpoints?: string[];
  etcdPrefix?: string;
  /** CA, server certificate and join tokens (default <data-dir>/pki). */
  pkiDir?: string;
  /** Where the admin client config is written (absent: not written). */
  adminConfigPath?: string;
  clusterCIDR?: string;
  nodeMask?: number;
  serviceCIDR?: string;
  nodePortRange?: string;
  debounceMs?: number;
  /** Snapshot-sized updates in flight at once, until ACKed (default 4). */
  largeWrites?: number;
  /**
   * Who terminates the agents' (and clients') mTLS: 'none' (default) this process; 'haproxy' a
   * HAProxy it runs on the listen address, forwarding to it over a private unix socket
   * (front/haproxy.ts).
   */
  front?: 'none' | 'haproxy';
  /** The haproxy binary for front 'haproxy' (default `haproxy` on PATH). */
  haproxyBinary?: string;
  /** HAProxy's threads (default one per CPU). */
  frontThreads?: number;
  log?: (message: string) => void;
}

export interface ControlServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The bound gRPC address (HOST:PORT): the front's when there is one. */
  address(): string;
  /** The front's process id (front 'haproxy'), for benchmarks that count its memory and CPU. */
  frontPid(): number | undefined;
  opsAddress(): string | undefined;
  ca(): CertificateAuthority;
  tokens(): JoinTokens;
}

type Unary = (call: ServerUnaryCall<Record<string, unknown>, unknown>, cb: sendUnaryData<unknown>) => void;

export function createControlServer(config: ControlServerConfig): ControlServer {
  const log = config.log ?? ((m: string) => process.stderr.write(`weft control: ${m}\n`));
  const pkiDir = config.pkiDir ?? (config.dataDir ? join(config.dataDir, 'pki') : undefined);
  if (!pkiDir) throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', 'invalid control config: --pki-dir is required with --etcd-endpoints');
  const listen = config.listen ?? DEFAULT_LISTEN;
  const socketPath = unixSocketPath(listen);
  const frontKind = config.front ?? 'none';
  if (frontKind !== 'none' && frontKind !== 'haproxy') throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `invalid control config: --front must be none or haproxy, not "${String(frontKind)}"`);
  if (frontKind === 'haproxy' && socketPath !== undefined) throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', 'invalid control config: --front haproxy needs a HOST:PORT --listen address, not a unix socket');
  // Clients of a unix socket verify the server as `localhost` (client.ts channelFor).
  const [host, port] = socketPath !== undefined ? ['localhost', 0] : splitHostPort(listen, 'listen address');
  const metrics = createControlMetrics();
  const store = openStore({ dataDir: config.dataDir, etcdEndpoints: config.etcdEndpoints, etcdPrefix: config.etcdPrefix, log });
  const observe = (verb: string, s: number) => metrics.storeLatency.observe({ verb }, s);
  const admission = createAdmission({ serviceCIDR: config.serviceCIDR, nodePortRange: config.nodePortRange }, { store, observe });
  let leaseStore: LeaseStore | undefined;
  const sync = createNodeSync({ debounceMs: config.debounceMs, largeWrites: config.largeWrites, log }, { store, metrics });
  let controllers: ReturnType<typeof createControllers> | undefined;
  let grpc: Server | undefined;
  let ops: HttpServer | undefined;
  let ca: CertificateAuthority | undefined;
  let tokens: JoinTokens | undefined;
  let bound = '';
  let opsBound: string | undefined;
  let ready = false;
  let front: HaproxyFront | undefined;

  /**
   * The caller's certificate: its TLS peer certificate, or behind the front the one HAProxy
   * verified and passed on (every call then arrives over the front's private socket).
   */
  function identify(call: { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } }; metadata: Metadata }): Identity {
    if (frontKind === 'none') return ca!.identify(call.getAuthContext().sslPeerCertificate?.raw);
    const header = call.metadata.get(CLIENT_CERT_HEADER)[0];
    return ca!.identify(typeof header === 'string' && header !== '' ? Buffer.from(header, 'base64') : undefined);
  }

  /** A unary handler for admins only, with errors mapped to gRPC statuses. */
  function admin(fn: (req: Record<string, unknown>) => Promise<unknown>): Unary {
    return (call, cb) => {
      void (async () => {
        if (identify(call).kind !== 'admin') throw new ControlError('WEFT_CONTROL_PERMISSION_DENIED', 'only the admin credential may use the control API');
        return fn(call.request);
      })().then(
        (res) => cb(null, res),
        (err) => cb(toGrpcError(err)),
      );
    };
  }

  const resultsOut = (results: { key: string; outcome: string; object?: unknown }[]) =>
    results.map((r) => ({ key: r.key, outcome: r.outcome, json: Buffer.from(r.object ? JSON.stringify(r.object) : '') }));

  const controlImpl: UntypedServiceImplementation = {
    Apply: admin(async (req) => {
      const items = (req.items as { json: Buffer; source: string }[]).map((i) => ({ json: i.json.toString('utf8'), source: i.source }));
      return { results: resultsOut(await admission.apply(items, { dryRun: req.dry_run === true })) };
    }),
    Get: admin(async (req) => {
      const kind = resolveKind(String(req.kind));
      const namespace = isNamespaced(kind) && !req.all_namespaces ? String(req.namespace || 'default') : undefined;
      let items = store.list(kind, namespace);
      if (req.name) {
        items = items.filter((o) => o.metadata.name === req.name);
        if (items.length === 0) {
          throw new ControlError('WEFT_CONTROL_NOT_FOUND', `${kind} ${namespace ? `${namespace}/` : ''}${String(req.name)} not found`);
        }
      }
      return { items: items.map((o) => Buffer.from(JSON.stringify(o))), revision: String(store.revision()) };
    }),
    Delete: admin(async (req) => {
      // grace_period absent (older clients too): each object's own.
      const grace = req.grace_period as { seconds: number } | null | undefined;
      return { results: resultsOut(await admission.remove(req.keys as string[], { gracePeriodSeconds: grace ? Number(grace.seconds) : undefined })) };
    }),
    Status: admin(async () => ({ revision: String(sync.version()), nodes: sync.status() })),
    CreateJoinToken: admin(async (req) => {
      const node = String(req.node ?? '');
      if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(node)) throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `invalid node name "${node}"`);
      const ttl = Number(req.ttl_seconds ?? 0);
      const t = tokens!.create(node, ca!.caHash, ttl > 0 ? ttl * 1000 : undefined);
      return { token: t.token, expires_unix_ms: t.expiresAt };
    }),
  };

  const bootstrapImpl: UntypedServiceImplementation = {
    Join: ((call, cb) => {
      const req = call.request as { token: string; node: string; csr_pem: string };
      void (async () => {
        tokens!.consume(req.token, req.node);
        const cert = await ca!.signNode(req.node, req.csr_pem);
        log(`node ${req.node} joined`);
        return { cert_pem: cert, ca_pem: ca!.caPem };
      })().then(
        (res) => cb(null, res),
        (err) => cb(toGrpcError(err)),
      );
    }) as Unary,
  };

  const serveNodeStream = (call: NodeStream) => {
    let who: Identity;
    try {
      who = identify(call);
    } catch (err) {
      call.emit('error', toGrpcError(err));
      return;
    }
    sync.serve(call, (node) =>
      who.kind === 'admin' || who.node === node
        ? undefined
        : `WEFT_CONTROL_PERMISSION_DENIED: node ${who.kind === 'node' ? who.node : '?'} may not stream the view of node ${node}`,
    );
  };

  async function startOps(): Promise<void> {
    if (!config.opsListen) return;
    const [h, p] = splitHostPort(config.opsListen, 'operations address');
    ops = createHttpServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      if (path === '/readyz') {
        // Behind the front, not ready while HAProxy is down (being restarted): nothing reaches the service.
        const why = !ready ? 'starting\n' : front && !front.serving() ? 'agent front (HAProxy) down, restarting\n' : undefined;
        return void res.writeHead(why ? 503 : 200, { 'content-type': 'text/plain' }).end(why ?? 'ok\n');
      }
      if (path === '/metrics') {
        sync.status(); // refreshes the per-node gauges
        void metrics.registry.metrics().then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text));
        return;
      }
      res.writeHead(404).end('not found\n');
    });
    await new Promise<void>((resolve, reject) => {
      ops!.once('error', reject);
      ops!.listen(p, h, () => resolve());
    });
    const a = ops.address() as { port: number };
    opsBound = `${h}:${a.port}`;
  }

  return {
    async start() {
      await startOps();
      ca = await openCertificateAuthority(pkiDir, host === '0.0.0.0' || host === '' ? [] : [host]);
      tokens = createJoinTokens(join(pkiDir, 'join-tokens.json'));
      await store.start();
      admission.start();
      leaseStore = config.etcdEndpoints?.length
        ? createEtcdLeaseStore({ endpoints: config.etcdEndpoints, prefix: `${config.etcdPrefix ?? '/weft/'}leases/` })
        : createFileLeaseStore({ dir: join(config.dataDir!, 'leases') });
      const subnets = createSubnetAllocator(leaseStore, { clusterCIDR: config.clusterCIDR ?? DEFAULT_CLUSTER_CIDR, nodeMask: config.nodeMask ?? DEFAULT_NODE_MASK });
      controllers = createControllers({ debounceMs: config.debounceMs, log }, { store, subnets });
      controllers.start();
      sync.start();
      const services = weftServices();
      // A client certificate is requested but not required at the TLS layer (Join has none);
      // every other call checks it against the CA itself (identify).
      const identityPair = { certificate: Buffer.from(ca.server.certPem), privateKey: Buffer.from(ca.server.keyPem) };
      // Updates are delivered on the next tick: grpc-js registers its watcher after adding the listener.
      const provider: experimental.CertificateProvider = {
        addCaCertificateListener: (l) => queueMicrotask(() => l({ caCertificate: Buffer.from(ca!.caPem) })),
        removeCaCertificateListener: () => {},
        addIdentityCertificateListener: (l) => queueMicrotask(() => l(identityPair)),
        removeIdentityCertificateListener: () => {},
      };
      const creds = frontKind === 'none' ? experimental.createCertificateProviderServerCredentials(provider, provider, false) : ServerCredentials.createInsecure();
      const nodeSync = preEncodedService(services.NodeSync.service);
      grpc = new Server({
        'grpc.max_send_message_length': 256 * 1024 * 1024,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // channelz bookkeeping runs per message (timestamps, counters) and per connection; not served here.
        'grpc.enable_channelz': 0,
        interceptors: [nodeStreamInterceptor(nodeSync.Stream.path, serveNodeStream)],
      });
      // Node streams are served by the interceptor (push/node-stream.ts): the handler never runs.
      grpc.addService(nodeSync, {});
      grpc.addService(services.Control.service, controlImpl);
      grpc.addService(services.Bootstrap.service, bootstrapImpl);
      // Behind the front, plaintext HTTP/2 on a socket in a directory of this service's own.
      const frontDir = frontKind === 'haproxy' ? makeFrontDir() : undefined;
      const backendSocket = frontDir && join(frontDir, 'control.sock');
      const bindTo = backendSocket ? `unix:${backendSocket}` : socketPath !== undefined ? listen : `${host.includes(':') ? `[${host}]` : host}:${port}`;
      let boundPort = await new Promise<number>((resolve, reject) => grpc!.bindAsync(bindTo, creds, (err, p) => (err ? reject(err) : resolve(p))));
      if (frontDir && backendSocket) {
        front = await startHaproxyFront({ host, port, dir: frontDir, caPem: ca.caPem, serverCertPem: ca.server.certPem, serverKeyPem: ca.server.keyPem, backendSocket, binary: config.haproxyBinary, threads: config.frontThreads, log });
        boundPort = Number(front.address().slice(front.address().lastIndexOf(':') + 1));
      }
      bound = socketPath !== undefined ? listen : `${host}:${boundPort}`;
      if (config.adminConfigPath) {
        const adminPair = await ca.issueAdmin();
        const dial = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host;
        writeClientConfig(config.adminConfigPath, { server: socketPath !== undefined ? listen : `${dial}:${boundPort}`, caPem: ca.caPem, certPem: adminPair.certPem, keyPem: adminPair.keyPem });
      }
      ready = true;
      log(`serving on ${bound}${opsBound ? `, operations on http://${opsBound}` : ''}`);
    },
    async stop() {
      ready = false;
      sync.stop();
      await controllers?.stop();
      if (grpc) {
        const g = grpc;
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            g.forceShutdown();
            resolve();
          }, 2000);
          g.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      await front?.stop();
      await store.stop();
      await leaseStore?.close();
      if (ops) await new Promise<void>((r) => ops!.close(() => r()));
    },
    address: () => bound,
    frontPid: () => front?.pid(),
    opsAddress: () => opsBound,
    ca: () => ca!,
    tokens: () => tokens!,
  };
}

// The node agent's ClusterStateSource backed by mesh-control (contract C): one gRPC stream,
// full snapshot then deltas, each applied to a local copy and ACKed, or NACKed when the update
// cannot be applied or `validate` rejects the view. While the control service is away the agent
// keeps its last good view (fail static); it reconnects with exponential backoff and jitter and
// resumes from the last ACKed version and the store it came from (a service on another store
// answers with a snapshot), so a short outage costs a delta, not a snapshot.
//
// Credentials: `<credentialsDir>/node.json` (server, CA, certificate, key). When it is missing
// and a join token is given, the agent joins first: it fetches the server's CA over TLS and checks
// it against the hash in the token, sends a CSR (the key never leaves the node), stores the
// returned certificate.
import { mkdirSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { ClusterStateSource, ClusterView } from '../proxy/agent/source.ts';
import { viewFromObjects } from '../proxy/agent/source.ts';
import { causeText, ControlError, fromGrpcError } from './errors.ts';
import { channelFor, unixSocketPath, type Credentials } from './client.ts';
import { readClientConfig, splitHostPort, writeClientConfig, weftHome } from './client-config.ts';
import type { ClusterObject } from './model/types.ts';
import { createKeyAndCsr } from './pki/openssl.ts';
import { parseJoinToken } from './pki/tokens.ts';
import { weftServices } from './proto/load.ts';
import type { NodeRequest, NodeUpdate } from './push/node-sync.ts';

export interface ControlStateSourceOptions {
  /** HOST:PORT of `weft control`. */
  server: string;
  node: string;
  /** Where the node credential lives (default $WEFT_HOME/agent/<node>). */
  credentialsDir?: string;
  /** Used once, when the credentials directory holds no credential yet. */
  joinToken?: string;
  /** A credential given directly (tests, benchmarks); wins over credentialsDir. */
  credentials?: Credentials;
  /** Rejects a view before it is delivered (the agent NACKs with this error). */
  validate?: (view: ClusterView) => string | undefined;
  backoff?: { initialMs?: number; maxMs?: number };
  log?: (message: string) => void;
}

export interface ControlStateSource extends ClusterStateSource {
  /** The version of the last view delivered (and ACKed), '' before the first. */
  version(): string;
  connected(): boolean;
}

function decodePacked(packed: Buffer): NodeUpdate {
  return weftServices().NodeSync.service.Stream.responseDeserialize(inflateRawSync(packed)) as NodeUpdate;
}

/** The server's CA, fetched over TLS without trust and accepted only if its hash matches the token's. */
async function discoverCa(server: string, caHash: string): Promise<string> {
  const path = unixSocketPath(server);
  const [host, port] = path !== undefined ? ['localhost', 0] : splitHostPort(server, 'server address');
  const chain = await new Promise<Buffer[]>((resolve, reject) => {
    const socket = tlsConnect({ ...(path !== undefined ? { path } : { host, port }), rejectUnauthorized: false, ALPNProtocols: ['h2'], servername: host.match(/^[\d.]+$/) ? undefined : host }, () => {
      const out: Buffer[] = [];
      let cert = socket.getPeerCertificate(true);
      while (cert && cert.raw && !out.some((b) => b.equals(cert.raw))) {
        out.push(cert.raw);
        cert = cert.issuerCertificate;
      }
      socket.destroy();
      resolve(out);
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('no TLS handshake within 10 s')));
    socket.on('error', reject);
  }).catch((err) => {
    throw new ControlError('WEFT_CONTROL_UNAVAILABLE', `failed to join via ${server}: ${causeText(err)}`);
  });
  const ca = chain.find((der) => createHash('sha256').update(der).digest('hex') === caHash);
  if (!ca) throw new ControlError('WEFT_CONTROL_UNAUTHENTICATED', `failed to join via ${server}: the server's CA does not match the join token (wrong server or token)`);
  return `-----BEGIN CERTIFICATE-----\n${ca.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END CERTIFICATE-----\n`;
}

/** Joins with a token: returns (and the caller stores) the node's credential. */
export async function joinControl(server: string, node: string, token: string): Promise<Credentials> {
  const t = parseJoinToken(token);
  const caPem = await discoverCa(server, t.caHash);
  const { keyPem, csrPem } = await createKeyAndCsr();
  const channel = channelFor(server, { caPem });
  const client = new (weftServices().Bootstrap)(server, channel.credentials, channel.options);
  try {
    const res = await new Promise<{ cert_pem: string; ca_pem: string }>((resolve, reject) =>
      (client as unknown as { Join: (r: unknown, o: unknown, cb: (e: Error | null, r: { cert_pem: string; ca_pem: string }) => void) => void }).Join(
        { token, node, csr_pem: csrPem },
        { deadline: new Date(Date.now() + 30_000) },
        (err, r) => (err ? reject(fromGrpcError(err, `join as node ${node}`)) : resolve(r)),
      ),
    );
    return { caPem: res.ca_pem, certPem: res.cert_pem, keyPem };
  } finally {
    client.close();
  }
}

export function createControlStateSource(opts: ControlStateSourceOptions): ControlStateSource {
  const log = opts.log ?? ((m: string) => process.stderr.write(`weft agent: ${m}\n`));
  const initialMs = opts.backoff?.initialMs ?? 200;
  const maxMs = opts.backoff?.maxMs ?? 10_000;
  const dir = opts.credentialsDir ?? join(weftHome(), 'agent', opts.node);
  const objects = new Map<string, ClusterObject>();
  let acked = '';
  // The store `acked` belongs to: sent back on resume, so a different store answers with a snapshot.
  let storeId = '';
  let stream: ClientDuplexStream<NodeRequest, NodeUpdate> | undefined;
  let client: InstanceType<ReturnType<typeof weftServices>['NodeSync']> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let attempt = 0;
  let onUpdate: (view: ClusterView) => void = () => {};

  async function loadCredentials(): Promise<Credentials> {
    if (opts.credentials) return opts.credentials;
    const path = join(dir, 'node.json');
    try {
      return readClientConfig(path);
    } catch (err) {
      if (!opts.joinToken) throw err;
    }
    const creds = await joinControl(opts.server, opts.node, opts.joinToken!);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeClientConfig(path, { server: opts.server, ...creds });
    log(`joined ${opts.server} as node ${opts.node}; credential stored in ${path}`);
    return creds;
  }

  /** Applies an update to a copy; the live state changes only if the whole update is good. */
  function applyUpdate(u: NodeUpdate): { next: Map<string, ClusterObject>; error?: string } {
    if (!u.full && (u.base_version !== acked || u.store_id !== storeId)) {
      return { next: objects, error: `delta is based on version ${u.base_version} of store ${u.store_id || '(none)'} but this agent holds ${acked || 'nothing'} of store ${storeId || '(none)'}` };
    }
    const next = u.full ? new Map<string, ClusterObject>() : new Map(objects);
    try {
      // The packed part first, then the plain one; removals before upserts: a later entry for
      // the same key (the node's own pod) wins (proto/weft.proto).
      const parts = u.packed.length > 0 ? [decodePacked(u.packed), u] : [u];
      for (const p of parts) for (const key of p.removed) next.delete(key);
      for (const p of parts) for (const r of p.resources) next.set(r.key, JSON.parse(r.json.toString('utf8')) as ClusterObject);
    } catch (err) {
      return { next: objects, error: `failed to decode a resource: ${causeText(err)}` };
    }
    return { next };
  }

  function scheduleReconnect(creds: Credentials): void {
    if (stopped || timer) return;
    const delay = Math.min(maxMs, initialMs * 2 ** Math.min(attempt++, 16)) * (0.5 + Math.random() / 2);
    timer = setTimeout(() => {
      timer = undefined;
      open(creds);
    }, delay);
  }

  function open(creds: Credentials): void {
    if (stopped) return;
    if (!client) {
      const channel = channelFor(opts.server, creds, {
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      });
      client = new (weftServices().NodeSync)(opts.server, channel.credentials, channel.options);
    }
    const s = (client as unknown as { Stream: () => ClientDuplexStream<NodeRequest, NodeUpdate> }).Stream();
    stream = s;
    s.write({ node: opts.node, resume_version: acked, store_id: storeId, version: '', response_nonce: '', error_detail: '' });
    s.on('data', (u: NodeUpdate) => {
      attempt = 0;
      const { next, error: applyError } = applyUpdate(u);
      const view = applyError ? undefined : viewFromObjects([...next.values()]);
      const error = applyError ?? opts.validate?.(view!);
      if (error) {
        log(`rejected version ${u.version} from ${opts.server}: ${error}`);
        s.write({ node: opts.node, resume_version: '', version: acked, response_nonce: u.nonce, error_detail: error });
        return;
      }
      objects.clear();
      for (const [k, v] of next) objects.set(k, v);
      acked = u.version;
      storeId = u.store_id;
      onUpdate(view!);
      s.write({ node: opts.node, resume_version: '', version: u.version, response_nonce: u.nonce, error_detail: '' });
    });
    const ended = (err?: Error) => {
      if (stream !== s) return;
      stream = undefined;
      if (stopped) return;
      const e = err ? fromGrpcError(err, `stream node ${opts.node} from ${opts.server}`) : undefined;
      log(`lost the stream from ${opts.server}${e ? `: ${e.message}` : ''}; keeping version ${acked || '(none)'} and reconnecting`);
      scheduleReconnect(creds);
    };
    s.on('error', ended);
    s.on('end', () => ended());
  }

  return {
    async start(cb) {
      onUpdate = cb;
      stopped = false;
      const creds = await loadCredentials();
      open(creds);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      stream?.cancel();
      stream = undefined;
      client?.close();
      client = undefined;
    },
    version: () => acked,
    connected: () => stream !== undefined && attempt === 0 && acked !== '',
  };
}

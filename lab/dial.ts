// Probes from where the caller runs (a pod's, host's or node's namespace): an HTTP GET over TCP, or a
// datagram over UDP, answered by a pod server with {"pod","clientAddress"}; and bounded request
// loops (many requests, optionally over keep-alive connections) that count who answered.
import { createSocket } from 'node:dgram';
import { Agent, request } from 'node:http';

export interface DialRequest {
  ip: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  timeoutMs: number;
  /** UDP only: send from this port, so every datagram shares one conntrack entry (as a resolver's may). */
  sourcePort?: number;
}

export interface DialResult {
  ok: boolean;
  answeredBy?: string;
  clientAddress?: string;
  error?: string;
  /** The HTTP status and body of an answer that is not a pod server's (a health-check node port). */
  httpStatus?: number;
  body?: string;
}

export interface ServerReply {
  pod: string;
  clientAddress: string;
}

function serverReply(text: string): ServerReply | undefined {
  try {
    const reply = JSON.parse(text) as Partial<ServerReply>;
    return typeof reply.pod === 'string' ? { pod: reply.pod, clientAddress: reply.clientAddress ?? '' } : undefined;
  } catch {
    return undefined;
  }
}

function fromReply(text: string): DialResult {
  const reply = serverReply(text);
  return reply ? { ok: true, answeredBy: reply.pod, clientAddress: reply.clientAddress } : { ok: false, error: `unexpected reply ${JSON.stringify(text.slice(0, 80))}` };
}

function fromHTTP(status: number, body: string): DialResult {
  const reply = serverReply(body);
  if (reply && status === 200) return { ok: true, answeredBy: reply.pod, clientAddress: reply.clientAddress };
  return { ok: status === 200, ...(status === 200 ? {} : { error: `HTTP ${status}` }), httpStatus: status, body: body.slice(0, 200) };
}

/** Without an agent: a fresh connection, closed after the answer. */
function dialTCP(d: DialRequest, agent?: Agent): Promise<DialResult> {
  return new Promise((resolve) => {
    const req = request({ host: d.ip, port: d.port, path: '/', agent: agent ?? false, headers: agent ? {} : { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => { clearTimeout(timer); resolve(fromHTTP(res.statusCode ?? 0, body)); });
      res.on('error', (err) => { clearTimeout(timer); resolve({ ok: false, error: err.message }); });
    });
    const timer = setTimeout(() => { req.destroy(); resolve({ ok: false, error: `timed out after ${d.timeoutMs} ms` }); }, d.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => { clearTimeout(timer); resolve({ ok: false, error: err.code ? `${err.code}: ${err.message}` : err.message }); });
    req.end();
  });
}

/** Sends up to three datagrams within the timeout: one lost datagram is not a failed probe. */
function dialUDP(d: DialRequest): Promise<DialResult> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const attempts = 3;
    let sent = 0;
    const finish = (r: DialResult) => { clearInterval(resend); clearTimeout(timer); socket.close(); resolve(r); };
    const send = () => { if (sent++ < attempts) socket.send('probe', d.port, d.ip, (err) => { if (err) finish({ ok: false, error: err.message }); }); };
    const resend = setInterval(send, Math.max(1, Math.floor(d.timeoutMs / attempts)));
    const timer = setTimeout(() => finish({ ok: false, error: `no reply after ${d.timeoutMs} ms` }), d.timeoutMs);
    socket.on('message', (msg) => finish(fromReply(msg.toString())));
    socket.on('error', (err) => finish({ ok: false, error: err.message }));
    if (d.sourcePort) socket.bind(d.sourcePort, send);
    else send();
  });
}

export function dial(d: DialRequest): Promise<DialResult> {
  return d.protocol === 'UDP' ? dialUDP(d) : dialTCP(d);
}

export interface LoadRequest extends DialRequest {
  /** Requests in all (bounded). */
  count: number;
  /** Requests in flight at once (one connection each when keepAlive). */
  concurrency: number;
  /** Reuse connections (HTTP keep-alive) instead of one connection per request. */
  keepAlive: boolean;
  /** Stop starting requests after this long, even if `count` is not reached. */
  durationMs: number;
}

export interface LoadResult {
  requests: number;
  ok: number;
  failed: number;
  answeredBy: Record<string, number>;
  clientAddresses: Record<string, number>;
  /** Error text (code first) → count. */
  errors: Record<string, number>;
  elapsedMs: number;
}

/** What a pod server's control socket (or `pod-server --dial`) takes: a list of dials, or one request loop. */
export type ControlRequest = DialRequest[] | { load: LoadRequest };

const bump = (m: Record<string, number>, k: string) => { m[k] = (m[k] ?? 0) + 1; };

/** Sends `count` requests (or until `durationMs`) with `concurrency` in flight; counts the answers. */
export async function runLoad(l: LoadRequest): Promise<LoadResult> {
  const agent = l.keepAlive && l.protocol === 'TCP' ? new Agent({ keepAlive: true, maxSockets: l.concurrency }) : undefined;
  const out: LoadResult = { requests: 0, ok: 0, failed: 0, answeredBy: {}, clientAddresses: {}, errors: {}, elapsedMs: 0 };
  const start = Date.now();
  const worker = async () => {
    while (out.requests < l.count && Date.now() - start < l.durationMs) {
      out.requests++;
      const r = l.protocol === 'UDP' ? await dialUDP(l) : await dialTCP(l, agent);
      if (r.ok) {
        out.ok++;
        if (r.answeredBy) bump(out.answeredBy, r.answeredBy);
        if (r.clientAddress) bump(out.clientAddresses, r.clientAddress);
      } else {
        out.failed++;
        bump(out.errors, r.error ?? 'unknown');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, l.concurrency) }, worker));
  agent?.destroy();
  out.elapsedMs = Date.now() - start;
  return out;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

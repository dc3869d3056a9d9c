// One probe from where the caller runs (a pod's or host's namespace): an HTTP GET over TCP, or a
// datagram over UDP, answered by a pod server with {"pod","clientAddress"}.
import { createSocket } from 'node:dgram';
import { request } from 'node:http';

export interface DialRequest {
  ip: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  timeoutMs: number;
}

export interface DialResult {
  ok: boolean;
  answeredBy?: string;
  clientAddress?: string;
  error?: string;
}

export interface ServerReply {
  pod: string;
  clientAddress: string;
}

function fromReply(text: string): DialResult {
  try {
    const reply = JSON.parse(text) as ServerReply;
    return { ok: true, answeredBy: reply.pod, clientAddress: reply.clientAddress };
  } catch {
    return { ok: false, error: `unexpected reply ${JSON.stringify(text.slice(0, 80))}` };
  }
}

function dialTCP(d: DialRequest): Promise<DialResult> {
  return new Promise((resolve) => {
    const req = request({ host: d.ip, port: d.port, path: '/', agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => { clearTimeout(timer); resolve(res.statusCode === 200 ? fromReply(body) : { ok: false, error: `HTTP ${res.statusCode}` }); });
      res.on('error', (err) => { clearTimeout(timer); resolve({ ok: false, error: err.message }); });
    });
    const timer = setTimeout(() => { req.destroy(); resolve({ ok: false, error: `timed out after ${d.timeoutMs} ms` }); }, d.timeoutMs);
    req.on('error', (err) => { clearTimeout(timer); resolve({ ok: false, error: err.message }); });
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
    send();
  });
}

export function dial(d: DialRequest): Promise<DialResult> {
  return d.protocol === 'UDP' ? dialUDP(d) : dialTCP(d);
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

// Runs inside the client pod's namespace (started with `ip netns exec`): opens `count` TCP
// connections to each target, interleaved (target A, target B, A, B, ...) so drift hits both alike,
// and prints the connect times (SYN to established, integer µs) as one JSON line. The connection is
// reset right after (no TIME_WAIT: thousands of connections must not exhaust the port range).
// Usage: connect-latency.mjs '{"targets":[{"key":"svc","ip":"10.96.0.1","port":80}],"count":2000}'
import { connect } from 'node:net';

export interface LatencyRequest {
  targets: { key: string; ip: string; port: number }[];
  count: number;
  timeoutMs?: number;
}

export interface LatencyResult {
  samplesUs: Record<string, number[]>;
  failures: Record<string, number>;
}

function connectOnce(ip: string, port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const socket = connect({ host: ip, port });
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('timeout')); }, timeoutMs);
    socket.once('connect', () => {
      const us = Number((process.hrtime.bigint() - start) / 1000n);
      clearTimeout(timer);
      socket.resetAndDestroy();
      resolve(us);
    });
    socket.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

async function main(): Promise<void> {
  const req = JSON.parse(process.argv[2] ?? '{}') as LatencyRequest;
  const out: LatencyResult = { samplesUs: {}, failures: {} };
  for (const t of req.targets) { out.samplesUs[t.key] = []; out.failures[t.key] = 0; }
  for (let i = 0; i < req.count; i++) {
    for (const t of req.targets) {
      try {
        out.samplesUs[t.key].push(await connectOnce(t.ip, t.port, req.timeoutMs ?? 2_000));
      } catch {
        out.failures[t.key]++;
      }
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

void main();

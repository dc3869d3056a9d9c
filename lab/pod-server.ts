// A pod's "container" in the lab (the role agnhost netexec plays upstream): answers on every
// declared port with {"pod","clientAddress"} — HTTP/1.1 with keep-alive on TCP, a reply datagram on
// UDP — and, on a unix control socket, dials targets from inside the pod for `weft lab probe`.
// Usage: pod-server --pod NS/NAME [--tcp PORT]... [--udp PORT]... [--control SOCKET]
//        pod-server --dial      (one control request on stdin, its answer on stdout: probes from a node)
//
// On SIGTERM it drains as a well-behaved Kubernetes server does: it keeps accepting (endpoints
// take a moment to leave every node's rules), answers every request with `Connection: close`,
// closes keep-alive connections that sit idle, and exits once no connection has been open for a
// quiet period. The lab enforces terminationGracePeriodSeconds with SIGKILL.
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import { parseArgs, UsageError } from '../cli/args.ts';
import { type ControlRequest, dial, type DialResult, type LoadResult, mapLimit, runLoad } from './dial.ts';

const DIAL_CONCURRENCY = 16;
/** While draining: a keep-alive connection idle this long is closed (a busy one gets `Connection: close`). */
const DRAIN_IDLE_MS = 250;
/** While draining: exit once no connection has been open this long. */
const DRAIN_QUIET_MS = 500;

function serve(request: ControlRequest): Promise<DialResult[] | LoadResult> {
  return Array.isArray(request) ? mapLimit(request, DIAL_CONCURRENCY, dial) : runLoad(request.load);
}

async function dialOnce(): Promise<void> {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  process.stdout.write(JSON.stringify(await serve(JSON.parse(input) as ControlRequest)) + '\n');
}

interface Tracked { socket: Socket; active: number; idleSince: number }

function reply(pod: string, address: string | undefined): string {
  return JSON.stringify({ pod, clientAddress: (address ?? '').replace(/^::ffff:/, '') });
}

function portList(flag: string, values: string[] | undefined): number[] {
  return (values ?? []).map((v) => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError(`flag --${flag}: "${v}" is not a port 1-65535`);
    return Number(v);
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), { values: ['pod', 'control'], repeatable: ['tcp', 'udp'], booleans: ['dial'] });
  if (args.booleans.has('dial')) return dialOnce();
  const pod = args.flags.get('pod') ?? 'unknown/unknown';
  const closers: (() => void)[] = [];
  const listening: Promise<void>[] = [];
  const connections = new Map<Socket, Tracked>();
  let draining = false;

  for (const port of portList('tcp', args.lists.get('tcp'))) {
    const server = createHttpServer({ keepAliveTimeout: 30_000 }, (req, res) => {
      const t = connections.get(req.socket);
      if (t) t.active++;
      res.on('finish', () => { if (t) { t.active--; t.idleSince = Date.now(); } });
      const body = reply(pod, req.socket.remoteAddress);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(draining ? { connection: 'close' } : {}) });
      res.end(body);
    });
    server.on('connection', (socket: Socket) => {
      connections.set(socket, { socket, active: 0, idleSince: Date.now() });
      socket.on('close', () => connections.delete(socket));
    });
    listening.push(new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, '0.0.0.0', resolve); }));
    closers.push(() => { server.close(); server.closeAllConnections(); });
  }
  for (const port of portList('udp', args.lists.get('udp'))) {
    const socket = createSocket('udp4');
    socket.on('message', (_msg, rinfo) => socket.send(reply(pod, rinfo.address), rinfo.port, rinfo.address));
    listening.push(new Promise((resolve, reject) => { socket.once('error', reject); socket.bind(port, '0.0.0.0', resolve); }));
    closers.push(() => socket.close());
  }
  const control = args.flags.get('control');
  if (control) {
    await rm(control, { force: true });
    // One JSON line in (a list of dials), one JSON line out (their results, same order).
    const server = createNetServer((conn) => {
      let input = '';
      conn.setEncoding('utf8');
      conn.on('data', (c: string) => {
        input += c;
        if (!input.includes('\n')) return;
        const request = JSON.parse(input.slice(0, input.indexOf('\n'))) as ControlRequest;
        void serve(request).then((results) => conn.end(JSON.stringify(results) + '\n'));
      });
      conn.on('error', () => conn.destroy());
    });
    listening.push(new Promise((resolve, reject) => { server.once('error', reject); server.listen(control, resolve); }));
    closers.push(() => server.close());
  }
  await Promise.all(listening);
  const stop = () => { for (const close of closers) close(); setTimeout(() => process.exit(0), 200).unref(); };
  const drain = () => {
    draining = true;
    let quietSince = Date.now();
    setInterval(() => {
      const now = Date.now();
      for (const t of connections.values()) if (t.active === 0 && now - t.idleSince >= DRAIN_IDLE_MS) t.socket.end();
      if (connections.size > 0) quietSince = now;
      else if (now - quietSince >= DRAIN_QUIET_MS) stop();
    }, 50);
  };
  process.once('SIGTERM', drain);
  process.once('SIGINT', stop);
  process.stdout.write('ready\n');
}

main().catch((err: Error) => {
  process.stderr.write(`pod-server: ${err.message}\n`);
  process.exit(1);
});

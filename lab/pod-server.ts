// A pod's "container" in the lab (the role agnhost netexec plays upstream): answers on every
// declared port with {"pod","clientAddress"} — HTTP/1.1 with keep-alive on TCP, a reply datagram on
// UDP — and, on a unix control socket, dials targets from inside the pod for `weft lab probe`.
// Usage: pod-server --pod NS/NAME [--tcp PORT]... [--udp PORT]... [--control SOCKET]
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { rm } from 'node:fs/promises';
import { parseArgs, UsageError } from '../cli/args.ts';
import { dial, type DialRequest, mapLimit } from './dial.ts';

const DIAL_CONCURRENCY = 16;

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
  const args = parseArgs(process.argv.slice(2), { values: ['pod', 'control'], repeatable: ['tcp', 'udp'] });
  const pod = args.flags.get('pod') ?? 'unknown/unknown';
  const closers: (() => void)[] = [];
  const listening: Promise<void>[] = [];

  for (const port of portList('tcp', args.lists.get('tcp'))) {
    const server = createHttpServer({ keepAliveTimeout: 30_000 }, (req, res) => {
      const body = reply(pod, req.socket.remoteAddress);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
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
        const dials = JSON.parse(input.slice(0, input.indexOf('\n'))) as DialRequest[];
        void mapLimit(dials, DIAL_CONCURRENCY, dial).then((results) => conn.end(JSON.stringify(results) + '\n'));
      });
      conn.on('error', () => conn.destroy());
    });
    listening.push(new Promise((resolve, reject) => { server.once('error', reject); server.listen(control, resolve); }));
    closers.push(() => server.close());
  }
  await Promise.all(listening);
  const stop = () => { for (const close of closers) close(); setTimeout(() => process.exit(0), 200).unref(); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write('ready\n');
}

main().catch((err: Error) => {
  process.stderr.write(`pod-server: ${err.message}\n`);
  process.exit(1);
});

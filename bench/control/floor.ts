// The memory floor of one agent connection in the control service's process, layer by layer:
// N idle connections from a child process to a server in a fresh process per layer, RSS / heap /
// anonymous memory (smaps_rollup) after a forced GC, minus before, over N. Layers: TCP, TLS (with a
// client certificate), gRPC over plaintext HTTP/2, gRPC over mTLS (what agents use); the last once
// more after one large message per connection (`--message-bytes`, as the initial snapshot), which
// shows what a connection keeps after carrying it. Then the CPU of the control service per agent
// and message over gRPC mTLS: every round sends one 1,200-byte message to every connection and
// waits for all ACKs, served as grpc-js's ServerDuplexStream (with and without channelz) and as the
// control service serves node streams (push/node-stream.ts, channelz off).
// `--server-options JSON` adds grpc-js server options to every gRPC step (e.g. '{"grpc-node.max_session_memory":1}').
//   node bench/run.mjs control --floor [--connections 300] [--message-bytes 2000000] [--rounds 200] [--server-options JSON]
//                                      [--client-procs 4] [--client http2|grpc-js] [--only memory|cpu]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Client, credentials, Metadata, Server, ServerCredentials, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { openCertificateAuthority } from '../../mesh-control/pki/ca.ts';
import { nodeStreamInterceptor } from '../../mesh-control/push/node-stream.ts';
import { openGrpcStream } from './h2-client.ts';

const LAYERS = ['tcp', 'tls', 'grpc-plaintext', 'grpc-mtls'] as const;
type Layer = (typeof LAYERS)[number];
/** The client of the gRPC mTLS steps: grpc-js's, or Node's HTTP/2 client with the framing by hand (h2-client.ts, as the benchmark's simulated agents). */
export type ClientKind = 'http2' | 'grpc-js';
/** How the gRPC server serves the stream (CPU rounds). */
const PATHS = ['duplex', 'duplex-no-channelz', 'node-stream-no-channelz'] as const;
type StreamPath = (typeof PATHS)[number];
/** `--server-options`, handed to the fresh process of every step through its environment. */
const SERVER_OPTIONS_ENV = 'WEFT_BENCH_FLOOR_SERVER_OPTIONS';

interface Pki {
  caPem: string;
  server: { certPem: string; keyPem: string };
  client: { certPem: string; keyPem: string };
}

const id = (b: Buffer) => b;
// Responses are lists of parts, as node-sync writes them.
const serialize = (parts: Buffer[]) => Buffer.concat(parts);
const METHOD = { path: '/bench.Floor/Stream', requestStream: true, responseStream: true, requestSerialize: id, requestDeserialize: id, responseSerialize: serialize, responseDeserialize: id, originalName: 'Stream' };
const SERVICE = { Stream: METHOD } as unknown as ServiceDefinition;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function anonymousKiB(): number {
  const m = /^Anonymous:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Server side of one layer: answers each connection's first bytes. */
interface FloorServer {
  port: number;
  /** One message of `bytes` to every connection, `lanes` at a time, each until ACKed. */
  push(bytes: number, lanes: number): Promise<void>;
}

async function serve(layer: Layer, pki: Pki, path: StreamPath = 'duplex'): Promise<FloorServer> {
  const tlsOptions = { key: pki.server.keyPem, cert: pki.server.certPem, ca: pki.caPem, requestCert: true, rejectUnauthorized: true };
  if (layer === 'tcp' || layer === 'tls') {
    const onConnection = (s: Socket) => s.once('data', () => s.write('ok'));
    const server = layer === 'tcp' ? createNetServer(onConnection) : createTlsServer(tlsOptions, onConnection);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as AddressInfo).port, push: async () => {} };
  }
  interface Call {
    on(event: 'data', l: () => void): unknown;
    write(parts: readonly Buffer[]): unknown;
  }
  const calls: { call: Call; acked?: () => void }[] = [];
  const accept = (call: Call) => {
    const c: (typeof calls)[number] = { call };
    calls.push(c);
    call.on('data', () => (c.acked ? c.acked() : call.write([Buffer.from('ok')])));
  };
  const server = new Server({
    ...(JSON.parse(process.env[SERVER_OPTIONS_ENV] ?? '{}') as object),
    ...(path === 'duplex' ? {} : { 'grpc.enable_channelz': 0 }),
    ...(path === 'node-stream-no-channelz' ? { interceptors: [nodeStreamInterceptor(METHOD.path, accept)] } : {}),
  });
  server.addService(SERVICE, path === 'node-stream-no-channelz' ? {} : { Stream: (call: ServerDuplexStream<Buffer, Buffer[]>) => accept(call) });
  const creds = layer === 'grpc-plaintext' ? ServerCredentials.createInsecure() : ServerCredentials.createSsl(Buffer.from(pki.caPem), [{ private_key: Buffer.from(pki.server.keyPem), cert_chain: Buffer.from(pki.server.certPem) }], true);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port,
    async push(bytes, lanes) {
      const message = Buffer.alloc(bytes, 'x');
      let next = 0;
      const lane = async () => {
        while (next < calls.length) {
          const c = calls[next++];
          await new Promise<void>((r) => {
            c.acked = r;
            c.call.write([message]);
          });
        }
      };
      await Promise.all(Array.from({ length: Math.min(lanes, calls.length) }, lane));
    },
  };
}

/** Client side (a child process): N connections, each sends one message, ACKs what arrives; says "ready" when all answered. */
function connectAll(layer: Layer, port: number, n: number, pki: Pki, clientKind: ClientKind): void {
  let answered = 0;
  const answer = () => {
    if (++answered === n) process.stdout.write('ready\n');
  };
  const keep: unknown[] = [];
  const tlsOptions = { host: '127.0.0.1', port, servername: 'localhost', ca: pki.caPem, key: pki.client.keyPem, cert: pki.client.certPem };
  for (let i = 0; i < n; i++) {
    if (layer === 'tcp' || layer === 'tls') {
      const s = layer === 'tcp' ? netConnect(port, '127.0.0.1') : tlsConnect(tlsOptions);
      s.once('data', answer).write('hello');
      keep.push(s);
      continue;
    }
    if (layer === 'grpc-mtls' && clientKind === 'http2') {
      let received = 0;
      const write = openGrpcStream(`127.0.0.1:${port}`, { caPem: pki.caPem, ...pki.client, servername: 'localhost' }, METHOD.path, () => (++received === 1 ? answer() : write(Buffer.from('ack'))), () => {});
      write(Buffer.from('hello'));
      continue;
    }
    const creds = layer === 'grpc-plaintext' ? credentials.createInsecure() : credentials.createSsl(Buffer.from(pki.caPem), Buffer.from(pki.client.keyPem), Buffer.from(pki.client.certPem));
    const client = new Client(`127.0.0.1:${port}`, creds, { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': 'localhost', 'grpc.max_receive_message_length': -1 });
    const stream = client.makeBidiStreamRequest(METHOD.path, id, id, new Metadata());
    let received = 0;
    stream.on('data', () => (++received === 1 ? answer() : stream.write(Buffer.from('ack'))));
    stream.on('error', () => {});
    stream.write(Buffer.from('hello'));
    keep.push(client, stream);
  }
  // A line on stdin asks for this process's CPU time so far (user + system, ms).
  createInterface({ input: process.stdin }).on('line', () => {
    const c = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuMs: (c.user + c.system) / 1000 })}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}

/** One layer in this (fresh) process: prints one JSON line of KiB per connection. */
async function measure(layer: Layer, n: number, messageBytes: number, pkiFile: string, client: ClientKind): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const pki = JSON.parse(readFileSync(pkiFile, 'utf8')) as Pki;
  const server = await serve(layer, pki);
  gc();
  await sleep(200);
  gc();
  const before = { ...process.memoryUsage(), anon: anonymousKiB() };
  const child = spawn(process.execPath, [process.argv[1], 'floor-clients', layer, String(server.port), String(n), pkiFile, client], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`floor clients exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', () => resolve());
  });
  if (messageBytes > 0) await server.push(messageBytes, 4);
  await sleep(1500);
  gc();
  await sleep(200);
  gc();
  const after = { ...process.memoryUsage(), anon: anonymousKiB() };
  const per = (a: number, b: number) => +((b - a) / 1024 / n).toFixed(1);
  process.stdout.write(
    `${JSON.stringify({ layer, connections: n, messageBytes, rssKiB: per(before.rss, after.rss), anonymousKiB: +((after.anon - before.anon) / n).toFixed(1), heapUsedKiB: per(before.heapUsed, after.heapUsed), externalKiB: per(before.external, after.external) })}\n`,
  );
  child.removeAllListeners('exit');
  child.kill('SIGTERM');
  process.exit(0);
}

/** CPU rounds in this (fresh) process: prints one JSON line, µs of this process's CPU per agent per message. */
async function cpuRounds(path: StreamPath, n: number, rounds: number, procs: number, pkiFile: string, client: ClientKind): Promise<void> {
  const pki = JSON.parse(readFileSync(pkiFile, 'utf8')) as Pki;
  const server = await serve('grpc-mtls', pki, path);
  // The clients in `procs` processes, as the control benchmark runs its simulated agents.
  const children = Array.from({ length: procs }, (_, p) => {
    const share = Math.floor(n / procs) + (p < n % procs ? 1 : 0);
    return spawn(process.execPath, [process.argv[1], 'floor-clients', 'grpc-mtls', String(server.port), String(share), pkiFile, client], { stdio: ['pipe', 'pipe', 'inherit'] });
  });
  const lines = children.map((c) => {
    c.once('exit', (code) => {
      process.stderr.write(`floor clients exited with ${code}\n`);
      process.exit(1);
    });
    return createInterface({ input: c.stdout! });
  });
  await Promise.all(lines.map((l) => new Promise((r) => l.once('line', r))));
  const clientCpuMs = async () =>
    (
      await Promise.all(
        children.map(
          (c, i) =>
            new Promise<number>((resolve) => {
              lines[i].once('line', (l) => resolve((JSON.parse(l) as { cpuMs: number }).cpuMs));
              c.stdin!.write('cpu\n');
            }),
        ),
      )
    ).reduce((a, b) => a + b, 0);
  const round = () => server.push(1200, n);
  for (let r = 0; r < 20; r++) await round();
  const times: number[] = [];
  const clientCpu0 = await clientCpuMs();
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    await round();
    times.push(performance.now() - t);
  }
  const cpu = process.cpuUsage(cpu0);
  const clientCpu = (await clientCpuMs()) - clientCpu0;
  times.sort((a, b) => a - b);
  process.stdout.write(
    `${JSON.stringify({
      path,
      connections: n,
      client,
      clientProcesses: procs,
      rounds,
      serverCpuUsPerAgentMessage: +((cpu.user + cpu.system) / rounds / n).toFixed(1),
      clientCpuUsPerAgentMessage: +((clientCpu * 1000) / rounds / n).toFixed(1),
      roundP50Ms: +times[Math.floor(rounds / 2)].toFixed(1),
      roundP99Ms: +times[Math.min(rounds - 1, Math.floor(rounds * 0.99))].toFixed(1),
    })}\n`,
  );
  for (const c of children) {
    c.removeAllListeners('exit');
    c.kill('SIGTERM');
  }
  process.exit(0);
}

/** Runs this bundle with `args` in a fresh process and returns its first line of output, parsed. */
async function inFreshProcess(args: string[]): Promise<unknown> {
  const child = spawn(process.execPath, [process.argv[1], ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`floor step ${args.join(' ')} exceeded 180 s`));
    }, 180_000);
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(t);
      resolve(JSON.parse(l));
    });
    child.once('exit', (code) => code && reject(new Error(`floor step ${args.join(' ')} exited with ${code}`)));
  });
}

/** A CA, a server and a client credential for the floor's steps, in `dir`; returns the file. */
async function writePki(dir: string): Promise<string> {
  const ca = await openCertificateAuthority(join(dir, 'pki'), ['127.0.0.1']);
  const client = await ca.issueAdmin();
  const pkiFile = join(dir, 'pki.json');
  writeFileSync(pkiFile, JSON.stringify({ caPem: ca.caPem, server: ca.server, client }));
  return pkiFile;
}

/** One CPU step's result (cpuRounds). */
export interface FloorRounds {
  path: StreamPath;
  connections: number;
  client: ClientKind;
  clientProcesses: number;
  rounds: number;
  serverCpuUsPerAgentMessage: number;
  clientCpuUsPerAgentMessage: number;
  roundP50Ms: number;
  roundP99Ms: number;
}

/**
 * The control benchmark's anchor, in its own run: `rounds` fan-outs of one message to `n` bare
 * grpc-js mTLS streams served as the control service serves node streams, clients in `procs`
 * processes, no weft code — what the transport alone takes for "change → all ACKed" on this machine.
 * Must be called from the bench bundle (the step runs in a fresh process of it).
 */
export async function floorRounds(n: number, rounds: number, procs: number, clientKind: ClientKind): Promise<FloorRounds> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-floor-'));
  try {
    return (await inFreshProcess(['floor-cpu', 'node-stream-no-channelz', String(n), String(rounds), String(procs), await writePki(dir), clientKind])) as FloorRounds;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runFloor(argv: string[]): Promise<void> {
  if (argv[0] === 'floor-clients') return connectAll(argv[1] as Layer, Number(argv[2]), Number(argv[3]), JSON.parse(readFileSync(argv[4], 'utf8')) as Pki, argv[5] as ClientKind);
  if (argv[0] === 'floor-measure') return measure(argv[1] as Layer, Number(argv[2]), Number(argv[3]), argv[4], argv[5] as ClientKind);
  if (argv[0] === 'floor-cpu') return cpuRounds(argv[1] as StreamPath, Number(argv[2]), Number(argv[3]), Number(argv[4]), argv[5], argv[6] as ClientKind);
  const arg = (name: string, def: number) => (argv.includes(`--${name}`) ? Number(argv[argv.indexOf(`--${name}`) + 1]) : def);
  const n = arg('connections', 300);
  const messageBytes = arg('message-bytes', 2_000_000);
  const rounds = arg('rounds', 200);
  const clientProcs = arg('client-procs', 4);
  const clientKind = (argv.includes('--client') ? argv[argv.indexOf('--client') + 1] : 'http2') as ClientKind;
  if (clientKind !== 'http2' && clientKind !== 'grpc-js') throw new Error(`--client must be http2 or grpc-js, not ${String(clientKind)}`);
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1] : undefined;
  if (only !== undefined && only !== 'memory' && only !== 'cpu') throw new Error(`--only must be memory or cpu, not ${only}`);
  const serverOptions = argv.includes('--server-options') ? argv[argv.indexOf('--server-options') + 1] : undefined;
  if (serverOptions !== undefined) process.env[SERVER_OPTIONS_ENV] = JSON.stringify(JSON.parse(serverOptions));
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-floor-'));
  try {
    const pkiFile = await writePki(dir);
    const runs: [Layer, number][] = [...LAYERS.map((l): [Layer, number] => [l, 0]), ['grpc-mtls', messageBytes]];
    // Each step in a fresh process, with this process's environment (allocator tunables included).
    const memory: unknown[] = [];
    if (only !== 'cpu') for (const [layer, bytes] of runs) memory.push(await inFreshProcess(['floor-measure', layer, String(n), String(bytes), pkiFile, clientKind]));
    const cpu: unknown[] = [];
    if (only !== 'memory') for (const path of PATHS) cpu.push(await inFreshProcess(['floor-cpu', path, String(n), String(rounds), String(clientProcs), pkiFile, clientKind]));
    const result = {
      note: 'memory: KiB per idle connection in the server process (after GC); cpu: server CPU per agent per 1,200-byte message + its ACK; each step in a fresh process, clients in a child process on the same host',
      malloc: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MALLOC_'))),
      serverOptions: serverOptions === undefined ? undefined : JSON.parse(serverOptions),
      client: clientKind,
      clientProcesses: clientProcs,
      memory,
      cpu,
    };
    const out = argv.includes('--out') ? argv[argv.indexOf('--out') + 1] : 'bench/results';
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'control-floor.json'), `${JSON.stringify(result, null, 2)}\n`);
    console.table(memory);
    console.table(cpu);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Control-service benchmark: S services × E endpoints in the embedded store, A simulated agents
// across P processes (bench/control/agents.ts, the same bundle run with `agents` first).
// Measures initial sync per agent, change-to-all-ACKed latency for one endpoint change (K changes,
// p50/p99), and control-service memory per idle connected agent (RSS and heap after a forced GC,
// after the agents are idle, minus before they connected but after one warm-up agent synced, over
// A). Every phase has a deadline.
//   node bench/run.mjs control [--agents 1000] [--procs 4] [--services 10000] [--endpoints 10]
//                              [--changes 30] [--warmup-changes 10] [--per-connection 1] [--large-writes 4]
//                              [--profile FILE]  (a V8 CPU profile of this process over the change phase)
//                              [--heap-profile FILE]  (a sampling heap profile of the same phase, collected objects included)
//                              [--no-anchor]  (skip the bare grpc-js fan-out measured after the service stops)
//   node bench/run.mjs control --floor [--connections 300] [--message-bytes 2000000]   (floor.ts)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { runAgents } from './agents.ts';
import { floorRounds, runFloor, type ClientKind } from './floor.ts';
import { createControlServer } from '../../mesh-control/server.ts';
import { createEmbeddedStore } from '../../mesh-control/store/index.ts';
import type { ClusterObject } from '../../mesh-control/model/types.ts';

const TARGETS = { changeToAllAckedP99Ms: 100, memoryPerIdleAgentKiB: 64 };

const flag = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const arg = (name: string, def: number) => Number(flag(name) ?? def);

const ip = (n: number) => `10.${100 + ((n >> 16) & 0xff)}.${(n >> 8) & 0xff}.${n & 0xff}`;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
/** CPU time of this process's main (JavaScript) thread; the rest of its CPU is V8's garbage collector and compiler threads (and libuv's pool). */
const mainThreadCpuMs = () => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
const deadline = (ms: number, what: string) => new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`bench phase "${what}" exceeded ${ms} ms`)), ms).unref());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function endpointSlice(s: number, endpoints: number, change?: number): ClusterObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `s${s}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s${s}` } },
    addressType: 'IPv4',
    endpoints: Array.from({ length: endpoints }, (_, e) => ({
      addresses: [ip(s * endpoints + e + 65536 + (e === 0 && change !== undefined ? 1_000_000 + change : 0))],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: `bench-${e}`,
    })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

async function main(): Promise<void> {
  const AGENTS = arg('agents', 1000);
  const PROCS = arg('procs', 4);
  const SERVICES = arg('services', 10_000);
  const ENDPOINTS = arg('endpoints', 10);
  const CHANGES = arg('changes', 30);
  // Changes applied before the measured ones: the first changes after the initial sync run while V8
  // still compiles the change path (and collects what the sync left); reported apart, as cold.
  const WARMUP_CHANGES = arg('warmup-changes', 10);
  const PER_CONNECTION = arg('per-connection', 1);
  const LARGE_WRITES = arg('large-writes', 4);
  const AGENT_CLIENT = (flag('agent-client') ?? 'http2') as ClientKind;
  if (AGENT_CLIENT !== 'http2' && AGENT_CLIENT !== 'grpc-js') throw new Error(`--agent-client must be http2 or grpc-js, not ${AGENT_CLIENT}`);
  if (AGENT_CLIENT === 'http2' && PER_CONNECTION !== 1) throw new Error('--per-connection needs --agent-client grpc-js (the HTTP/2 client opens one connection per agent)');
  const FRONT = (flag('front') ?? 'none') as 'none' | 'haproxy';
  const FRONT_THREADS = flag('front-threads') === undefined ? undefined : arg('front-threads', 0);
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-control-'));
  const children: ChildProcess[] = [];
  const onSignal = () => {
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // Load the store directly (the benchmark is of pushing, not of applying).
    const load = createEmbeddedStore({ dir: join(dir, 'data'), compactEvery: 1e9 });
    await load.start();
    const t0 = performance.now();
    const writes: Promise<unknown>[] = [];
    for (let s = 0; s < SERVICES; s++) {
      writes.push(load.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: `s${s}`, namespace: 'default' }, spec: { type: 'ClusterIP', clusterIP: ip(s), clusterIPs: [ip(s)], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] } }));
      writes.push(load.put(endpointSlice(s, ENDPOINTS)));
    }
    await Promise.all(writes);
    await load.stop();
    const loadMs = performance.now() - t0;

    const server = createControlServer({ listen: '127.0.0.1:0', dataDir: join(dir, 'data'), adminConfigPath: join(dir, 'admin.json'), largeWrites: LARGE_WRITES, front: FRONT, frontThreads: FRONT_THREADS, log: () => {} });
    await server.start();
    // With a front, the control service is this process and HAProxy: memory and CPU count both.
    const frontPid = server.frontPid();
    const frontRss = () => (frontPid === undefined ? 0 : Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${frontPid}/status`, 'utf8'))![1]) * 1024);
    const frontCpuMs = () => {
      if (frontPid === undefined) return 0;
      const f = readFileSync(`/proc/${frontPid}/stat`, 'utf8').split(') ')[1].split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
    };

    const { createControlClient, unary } = await import('../../mesh-control/client.ts');
    const { readClientConfig } = await import('../../mesh-control/client-config.ts');
    const admin = createControlClient(server.address(), readClientConfig(join(dir, 'admin.json')));
    const change = async (c: number) =>
      unary<{ results: { json: Buffer }[] }>(admin, 'Apply', { items: [{ json: Buffer.from(JSON.stringify(endpointSlice(c % Math.max(1, SERVICES), ENDPOINTS, c))), source: 'bench' }] }, 'apply');
    const perProc = Math.ceil(AGENTS / PROCS);
    // The agent processes' CPU time (they share the cores with the control service).
    const agentCpu = new Map<ChildProcess, (ms: number) => void>();
    const cpuOf = (c: ChildProcess) =>
      new Promise<number>((resolve) => {
        agentCpu.set(c, resolve);
        c.stdin!.write(`${JSON.stringify({ cpu: true })}\n`);
      });
    const agentCpuMs = async () => (await Promise.all(children.map(cpuOf))).reduce((a, b) => a + b, 0);
    const syncMs: number[] = [];
    // Per written version: called with each agent process's time of its last agent's ACK.
    const reached = new Map<number, (at: number) => void>();
    const agentProcessRssMiB: number[] = [];
    /** Starts a process of `n` simulated agents from bench-<first>; resolves when all have their first update. */
    const startAgents = (first: number, n: number, measured: boolean) => {
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1], 'agents', server.address(), join(dir, 'admin.json'), String(first), String(n), String(PER_CONNECTION), '1800', AGENT_CLIENT], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      children.push(child);
      return new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`bench agent process for bench-${first}… exited with ${code}`)));
        createInterface({ input: child.stdout! }).on('line', (line) => {
          const m = JSON.parse(line) as { synced?: string; ms?: number; ready?: boolean; rssMiB?: number; reached?: number; at?: number; cpuMs?: number };
          if (m.cpuMs !== undefined) agentCpu.get(child)?.(m.cpuMs);
          if (m.synced && measured) syncMs.push(m.ms!);
          if (m.ready) {
            if (measured) agentProcessRssMiB.push(m.rssMiB!);
            resolve();
          }
          if (m.reached !== undefined) reached.get(m.reached)?.(m.at!);
        });
      });
    };
    // One agent first: what does not depend on the number of agents (each stored object encoded
    // once, the shared snapshot) is built for it and belongs in the baseline, not in the per-agent figure.
    const memory = () => {
      const m = process.memoryUsage();
      const front = frontRss();
      return { ...m, rss: m.rss + front, front };
    };
    const beforeWarmup = (gc(), memory());
    await Promise.race([deadline(300_000, 'warm-up agent'), startAgents(AGENTS, 1, false)]);
    gc();
    const before = memory();

    // grpc-js keeps the chunks of a stream's last received message until the next one arrives:
    // a small change every second lets synced simulated agents drop their snapshot (a cluster
    // under sync sees changes anyway); without it 1,000 idle agents would hold 1,000 snapshots.
    let tickles = 0;
    const tickle = setInterval(() => void change(WARMUP_CHANGES + CHANGES + ++tickles).catch(() => {}), 1000);
    let peakRss = before.rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, memory().rss)), 100);
    const tSync = performance.now();
    await Promise.race([
      deadline(900_000, 'initial sync'),
      Promise.all(Array.from({ length: PROCS }, (_, p) => startAgents(p * perProc, Math.min(perProc, AGENTS - p * perProc), true))),
    ]);
    const allSyncedMs = performance.now() - tSync;
    clearInterval(sampler);
    clearInterval(tickle);
    await sleep(2000);
    gc();
    await sleep(200);
    gc();
    const idle = memory();

    // One endpoint change at a time: latency = Apply sent → the last agent ACKed a version that
    // contains it (clocks: every process's performance.timeOrigin + now(), same host).
    const changeToAllAcked = async (c: number): Promise<number> => {
      const start = performance.timeOrigin + performance.now();
      const res = await change(c);
      const version = Number((JSON.parse(res.results[0].json.toString()) as ClusterObject).metadata.resourceVersion);
      const ats: number[] = [];
      // Resolved by the agents' reports (no polling: this process's CPU is what is measured).
      const all = new Promise<void>((resolve) =>
        reached.set(version, (at) => {
          if (ats.push(at) === children.length) resolve();
        }),
      );
      for (const child of children) child.stdin!.write(`${JSON.stringify({ wait: version })}\n`);
      await Promise.race([deadline(30_000, 'change propagation'), all]);
      await sleep(50);
      return Math.max(...ats) - start;
    };
    const cold: number[] = [];
    for (let c = 0; c < WARMUP_CHANGES; c++) cold.push(await changeToAllAcked(c));
    const latencies: number[] = [];
    const profileFile = flag('profile');
    const profiler = profileFile ? new Session() : undefined;
    if (profiler) {
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
      await profiler.post('Profiler.start');
    }
    const heapProfileFile = flag('heap-profile');
    const heapProfiler = heapProfileFile ? new Session() : undefined;
    if (heapProfiler) {
      heapProfiler.connect();
      await heapProfiler.post('HeapProfiler.enable');
      // Every allocation counts, not only what survives: garbage per change is what the collector pays for.
      await heapProfiler.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    const agentCpuBefore = await agentCpuMs();
    const cpuBefore = process.cpuUsage();
    const mainCpuBefore = mainThreadCpuMs();
    const frontCpuBefore = frontCpuMs();
    for (let c = 0; c < CHANGES; c++) latencies.push(await changeToAllAcked(WARMUP_CHANGES + c));
    // The control service's own CPU per change (user + system), pauses between changes included.
    const cpu = process.cpuUsage(cpuBefore);
    const mainCpu = mainThreadCpuMs() - mainCpuBefore;
    const frontCpu = frontCpuMs() - frontCpuBefore;
    const agentCpuPerChange = ((await agentCpuMs()) - agentCpuBefore) / CHANGES;
    if (heapProfiler) {
      const { profile } = await heapProfiler.post('HeapProfiler.stopSampling');
      writeFileSync(heapProfileFile!, JSON.stringify(profile));
      heapProfiler.disconnect();
    }
    if (profiler) {
      const { profile } = await profiler.post('Profiler.stop');
      writeFileSync(profileFile!, JSON.stringify(profile));
      profiler.disconnect();
    }
    admin.close();

    // The anchor, in this run with the service and its agents gone: the same fan-out and ACKs over
    // bare grpc-js mTLS streams, no weft code (floor.ts), as many rounds as measured changes.
    for (const c of children) {
      c.removeAllListeners('exit');
      c.kill('SIGTERM');
    }
    await server.stop();
    const anchor = process.argv.includes('--no-anchor') ? undefined : await floorRounds(AGENTS, CHANGES, PROCS, AGENT_CLIENT);

    const result = {
      config: { agents: AGENTS, procs: PROCS, front: FRONT, frontThreads: FRONT_THREADS, agentClient: AGENT_CLIENT, agentsPerConnection: PER_CONNECTION, services: SERVICES, endpointsPerService: ENDPOINTS, changes: CHANGES, warmupChanges: WARMUP_CHANGES, debounceMs: 10, largeWrites: LARGE_WRITES, changesDuringSync: tickles },
      targets: TARGETS,
      storeLoadMs: Math.round(loadMs),
      initialSyncMsPerAgent: { p50: Math.round(pct(syncMs, 50)), p99: Math.round(pct(syncMs, 99)), max: Math.round(Math.max(...syncMs)) },
      allAgentsSyncedMs: Math.round(allSyncedMs),
      changeToAllAckedMs: { p50: +pct(latencies, 50).toFixed(1), p99: +pct(latencies, 99).toFixed(1), max: +Math.max(...latencies).toFixed(1) },
      coldChangeToAllAckedMs: cold.length ? { p50: +pct(cold, 50).toFixed(1), max: +Math.max(...cold).toFixed(1) } : undefined,
      serverCpuMsPerChange: +(((cpu.user + cpu.system) / 1000 + frontCpu) / CHANGES).toFixed(1),
      frontCpuMsPerChange: frontPid === undefined ? undefined : +(frontCpu / CHANGES).toFixed(1),
      serverMainThreadCpuMsPerChange: +(mainCpu / CHANGES).toFixed(1),
      agentProcessesCpuMsPerChange: +agentCpuPerChange.toFixed(1),
      memoryPerIdleAgentKiB: {
        rss: +((idle.rss - before.rss) / 1024 / AGENTS).toFixed(1),
        heapUsed: +((idle.heapUsed - before.heapUsed) / 1024 / AGENTS).toFixed(1),
        // As measured before the warm-up agent (the state-sized caches counted as if per agent).
        rssFromEmpty: +((idle.rss - beforeWarmup.rss) / 1024 / AGENTS).toFixed(1),
        // Of rss: HAProxy's share (front 'haproxy').
        front: frontPid === undefined ? undefined : +((idle.front - before.front) / 1024 / AGENTS).toFixed(1),
      },
      serverMiB: Object.fromEntries(
        Object.entries({ rssBeforeWarmup: beforeWarmup.rss, externalBeforeWarmup: beforeWarmup.external, rssBefore: before.rss, rssPeakDuringSync: peakRss, rssIdle: idle.rss, heapTotalBefore: before.heapTotal, heapTotalIdle: idle.heapTotal, externalBefore: before.external, externalIdle: idle.external }).map(([k, v]) => [k, Math.round(v / 2 ** 20)]),
      ),
      agentProcessRssMiB,
      anchor,
      p99VsAnchor: anchor ? +(pct(latencies, 99) / anchor.roundP99Ms).toFixed(2) : undefined,
      note: 'anchor: one 1,200-byte message to as many bare grpc-js mTLS streams and all ACKs, no weft code, clients as the agents, after the measurement in the same run; latency: Apply sent (admin gRPC, embedded store fsync) → last agent ACK at or above the stored revision, agent clocks; one server process, agents in separate processes on the same 2 cores',
    };
    // --out DIR keeps trial runs away from the committed results.
    const out = flag('out') ?? 'bench/results';
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, FRONT === 'none' ? 'control.json' : `control-front-${FRONT}.json`), `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result, null, 2));
    const ok = (v: number, t: number) => (v <= t ? 'ok' : 'MISSED');
    console.table([
      { figure: 'initial sync per agent p50 / p99 (ms)', value: `${result.initialSyncMsPerAgent.p50} / ${result.initialSyncMsPerAgent.p99}`, target: '—' },
      { figure: 'all agents synced (ms)', value: result.allAgentsSyncedMs, target: '—' },
      { figure: 'change → all ACKed p50 (ms)', value: result.changeToAllAckedMs.p50, target: '—' },
      { figure: 'change → all ACKed p99 (ms)', value: result.changeToAllAckedMs.p99, target: `≤ ${TARGETS.changeToAllAckedP99Ms} ${ok(result.changeToAllAckedMs.p99, TARGETS.changeToAllAckedP99Ms)}` },
      ...(anchor ? [{ figure: 'anchor: bare grpc-js fan-out + ACKs p50 / p99 (ms)', value: `${anchor.roundP50Ms} / ${anchor.roundP99Ms}`, target: '—' }, { figure: 'change → all ACKed p99 / anchor p99', value: result.p99VsAnchor, target: '—' }] : []),
      { figure: 'first changes after the sync p50 / max (ms)', value: result.coldChangeToAllAckedMs ? `${result.coldChangeToAllAckedMs.p50} / ${result.coldChangeToAllAckedMs.max}` : '—', target: '—' },
      { figure: 'control service CPU per change (ms)', value: result.serverCpuMsPerChange, target: '—' },
      { figure: '… of it on the main thread (ms)', value: result.serverMainThreadCpuMsPerChange, target: '—' },
      ...(result.frontCpuMsPerChange === undefined ? [] : [{ figure: '… of it in HAProxy (ms)', value: result.frontCpuMsPerChange, target: '—' }]),
      { figure: 'agent processes CPU per change (ms)', value: result.agentProcessesCpuMsPerChange, target: '—' },
      { figure: 'RSS per idle agent (KiB)', value: result.memoryPerIdleAgentKiB.rss, target: `≤ ${TARGETS.memoryPerIdleAgentKiB} ${ok(result.memoryPerIdleAgentKiB.rss, TARGETS.memoryPerIdleAgentKiB)}` },
      ...(result.memoryPerIdleAgentKiB.front === undefined ? [] : [{ figure: '… of it in HAProxy (KiB)', value: result.memoryPerIdleAgentKiB.front, target: '—' }]),
      { figure: 'heap per idle agent (KiB)', value: result.memoryPerIdleAgentKiB.heapUsed, target: '—' },
      { figure: 'server RSS peak during sync (MiB)', value: result.serverMiB.rssPeakDuringSync, target: '—' },
    ]);
  } finally {
    for (const c of children) {
      c.removeAllListeners('exit');
      c.kill('SIGTERM');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'agents') runAgents(process.argv.slice(3));
else if (process.argv[2]?.startsWith('floor') || process.argv.includes('--floor'))
  runFloor(process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exit(1);
  });
else
  main().catch((err) => {
    console.error(err);
    // The control service and the timers of a failed phase would keep the process alive.
    process.exit(1);
  });

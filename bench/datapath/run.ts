// Data path through a ClusterIP, iptables vs nftables mode, in a one-node lab run by `weft agent`:
//   - connection latency (TCP connect, p50/p99 in integer µs) to a ClusterIP while 100, 10k and 30k
//     Services are programmed (synthetic Services with one endpoint each, written into the lab's
//     state), beside the same connection straight to the pod IP, interleaved in one run;
//   - throughput (wrk, keep-alive, inside the client pod) through the ClusterIP vs straight to the
//     pod IP: the server is the lab's pod server (Node http, single thread), the bottleneck of both.
//   sudo node bench/run.mjs datapath [--services 100,10000,30000] [--modes nftables,iptables]
//        [--connections 2000] [--wrk-seconds 5] [--wrk-rounds 3] [--out FILE]
// Everything runs in the lab's namespaces (lab directory /run/weft/bench-datapath), removed at the
// end, also on failure or Ctrl-C; a killed run is cleaned up by the next one (lab up cleans first).
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';
import { parseArgs, intFlag, UsageError } from '../../cli/args.ts';
import { projectRoot } from '../../cni/shim/paths.ts';
import type { DialResult } from '../../lab/dial.ts';
import { applyObjects, applyServices, checkServices, deleteObjects } from '../../lab/control.ts';
import { labDown, labUp } from '../../lab/lab.ts';
import { labLayout } from '../../lab/layout.ts';
import { requestFrom } from '../../lab/probe.ts';
import type { LabState, ProxyMode } from '../../lab/state.ts';
import { objectKey } from '../../mesh-control/model/objects.ts';
import { parseManifests } from '../../mesh-control/model/parse.ts';
import type { EndpointSlice, Service } from '../../mesh-control/model/types.ts';
import { linePlotSVG } from '../lib/plot.ts';
import type { LatencyRequest, LatencyResult } from './connect-latency.ts';

const root = projectRoot();
const args = parseArgs(process.argv.slice(2), { values: ['services', 'modes', 'connections', 'wrk-seconds', 'wrk-rounds', 'out'] });
const counts = (args.flags.get('services') ?? '100,10000,30000').split(',').map(Number);
if (counts.some((n) => !Number.isInteger(n) || n < 3 || n > 40_000)) throw new UsageError('flag --services: a list of counts 3-40000');
const modes = (args.flags.get('modes') ?? 'nftables,iptables').split(',') as ProxyMode[];
if (modes.some((m) => m !== 'nftables' && m !== 'iptables')) throw new UsageError('flag --modes: nftables and/or iptables');
const params = {
  services: counts,
  modes,
  connections: intFlag(args, 'connections', 2000, 10, 20_000),
  wrkSeconds: intFlag(args, 'wrk-seconds', 5, 1, 60),
  wrkRounds: intFlag(args, 'wrk-rounds', 3, 1, 10),
};
const outFile = args.flags.get('out') ?? join(root, 'bench', 'results', 'datapath.json');
const LAB_DIR = '/run/weft/bench-datapath';
/** A sync of 30k Services (file parse, render, apply) must land within this, or the mode stops there. */
const SYNC_TIMEOUT_MS = 180_000;

const manifests = `
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: default, labels: { app: server } }
spec:
  nodeName: node1
  containers: [{ name: c, ports: [{ name: http, containerPort: 8080 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: default }
spec:
  nodeName: node1
  containers: [{ name: c, ports: [{ containerPort: 8080 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: server }
  ports: [{ port: 80, targetPort: http }]
`;

/** Objects per Apply call: keeps each request far below the gRPC message limit. */
const APPLY_CHUNK = 2000;

interface Stats { n: number; p50Us: number; p99Us: number }

function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const rank = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? 0;
  return { n: s.length, p50Us: rank(50), p99Us: rank(99) };
}

function exec(cmd: string, argv: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { maxBuffer: 64 << 20, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${argv.slice(0, 6).join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** `count` Services without selector, one endpoint each (an address nothing answers on). */
function syntheticObjects(count: number, tag: string): { services: Service[]; slices: EndpointSlice[] } {
  const services: Service[] = [];
  const slices: EndpointSlice[] = [];
  for (let i = 0; i < count; i++) {
    const name = `syn-${tag}-${i}`;
    services.push({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'bench' }, spec: { ports: [{ port: 80 }] } });
    slices.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${name}-1`, namespace: 'bench', labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4', endpoints: [{ addresses: [`10.250.${(i >> 8) & 255}.${i & 255}`], conditions: { ready: true } }],
      ports: [{ name: '', protocol: 'TCP', port: 80 }],
    });
  }
  return { services, slices };
}

/** Waits until the canary Service answers from the client: the agent has applied this sync. */
async function waitForSync(state: LabState, canaryIP: string): Promise<number | undefined> {
  const client = state.pods.find((p) => p.name === 'client') as LabState['pods'][number];
  const start = Date.now();
  while (Date.now() - start < SYNC_TIMEOUT_MS) {
    const [r] = await requestFrom<DialResult[]>({ key: 'default/client', ip: client.ip, netns: client.netns, control: client.control }, [{ ip: canaryIP, port: 80, protocol: 'TCP', timeoutMs: 300 }], 5_000);
    if (r.ok) return Date.now() - start;
    await new Promise((res) => setTimeout(res, 200));
  }
  return undefined;
}

async function wrk(netns: string, url: string): Promise<number> {
  const out = await exec('ip', ['netns', 'exec', netns, 'wrk', '-t1', '-c32', `-d${params.wrkSeconds}s`, url], (params.wrkSeconds + 30) * 1000);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`unexpected wrk output: ${out.slice(0, 200)}`);
  return Math.round(Number(m[1]));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface LatencyRow { mode: ProxyMode; services: number; syncWaitMs: number; clusterIP: Stats; podIP: Stats; failures: Record<string, number> }
/** A step whose rules the agent did not program in time (the mode's larger steps are skipped). */
interface SkippedRow { mode: ProxyMode; services: number; error: string }
interface ThroughputRow { mode: ProxyMode; services: number; clusterIPRps: number; podIPRps: number; ratio: number; roundsRps: { clusterIP: number[]; podIP: number[] } }

async function runMode(mode: ProxyMode, latencyScript: string, latency: LatencyRow[], throughput: ThroughputRow[], skipped: SkippedRow[]): Promise<void> {
  const objects = parseManifests(manifests, 'bench');
  const state = await labUp({ dir: LAB_DIR, nodes: 1, clusterCIDR: '10.244.0.0/16', nodeMask: 24, underlay: 'l2', proxyMode: mode, objects });
  const layout = labLayout(LAB_DIR);
  const client = state.pods.find((p) => p.name === 'client') as LabState['pods'][number];
  const server = state.pods.find((p) => p.name === 'server') as LabState['pods'][number];
  const web = state.services[0].spec.clusterIP as string;
  // Each step replaces the previous step's synthetic objects in mesh-control, which allocates
  // their clusterIPs and pushes them to the node's agent.
  let previous: string[] = [];
  for (const n of params.services) {
    // n Services in all: web, the canary of this step, and n-2 synthetic ones.
    const syn = syntheticObjects(n - 2, String(n));
    const canary: Service = { apiVersion: 'v1', kind: 'Service', metadata: { name: `canary-${n}`, namespace: 'default' }, spec: { selector: { app: 'server' }, ports: [{ port: 80, targetPort: 'http' }] } };
    const services = [...syn.services, canary];
    await deleteObjects(layout, previous);
    for (let i = 0; i < services.length; i += APPLY_CHUNK) await applyServices(layout, state, checkServices(state, services.slice(i, i + APPLY_CHUNK)));
    for (let i = 0; i < syn.slices.length; i += APPLY_CHUNK) await applyObjects(layout, syn.slices.slice(i, i + APPLY_CHUNK));
    previous = [...services, ...syn.slices].map(objectKey);
    const canaryIP = state.services.find((s) => s.metadata.name === canary.metadata.name)?.spec.clusterIP as string;
    const syncWaitMs = await waitForSync(state, canaryIP);
    if (syncWaitMs === undefined) {
      const last = readFileSync(join(layout.logDir, 'node-node1.log'), 'utf8').trim().split('\n').at(-1) ?? '';
      const error = `the agent did not program ${n} Services within ${SYNC_TIMEOUT_MS} ms; its last log line: ${last.slice(0, 300)}`;
      skipped.push({ mode, services: n, error });
      process.stderr.write(`${mode}: ${error}; skipping larger counts\n`);
      break;
    }
    const req: LatencyRequest = { targets: [{ key: 'clusterIP', ip: web, port: 80 }, { key: 'podIP', ip: server.ip, port: 8080 }], count: params.connections };
    const budget = params.connections * 2 * 50 + 30_000;
    const r = JSON.parse(await exec('ip', ['netns', 'exec', client.netns, process.execPath, latencyScript, JSON.stringify(req)], budget)) as LatencyResult;
    const row = { mode, services: n, syncWaitMs, clusterIP: stats(r.samplesUs.clusterIP), podIP: stats(r.samplesUs.podIP), failures: r.failures };
    latency.push(row);
    process.stderr.write(`${mode} ${n} services: ClusterIP p50 ${row.clusterIP.p50Us} µs p99 ${row.clusterIP.p99Us} µs; pod IP p50 ${row.podIP.p50Us} µs p99 ${row.podIP.p99Us} µs (sync seen after ${syncWaitMs} ms)\n`);
    if (n !== params.services[0]) continue;
    const rounds = { clusterIP: [] as number[], podIP: [] as number[] };
    for (let i = 0; i < params.wrkRounds; i++) {
      rounds.clusterIP.push(await wrk(client.netns, `http://${web}:80/`));
      rounds.podIP.push(await wrk(client.netns, `http://${server.ip}:8080/`));
    }
    const clusterIPRps = median(rounds.clusterIP);
    const podIPRps = median(rounds.podIP);
    throughput.push({ mode, services: n, clusterIPRps, podIPRps, ratio: Math.round((clusterIPRps / podIPRps) * 1000) / 1000, roundsRps: rounds });
    process.stderr.write(`${mode} throughput: ClusterIP ${clusterIPRps} req/s, pod IP ${podIPRps} req/s\n`);
  }
  await labDown(LAB_DIR);
}

function pad(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()).join('\n') + '\n';
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench datapath: needs root (network namespaces)\n');
    return 1;
  }
  // The lab starts dist/weft.mjs (agents) and dist/pod-server.mjs: they live in the checkout's dist/.
  process.env.WEFT_DIST_DIR = join(root, 'dist');
  const latencyScript = join(root, 'node_modules', '.cache', 'weft-bench', 'datapath-connect-latency.mjs');
  await build({ entryPoints: [join(root, 'bench', 'datapath', 'connect-latency.ts')], outfile: latencyScript, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' });
  const onSignal = () => { void labDown(LAB_DIR).finally(() => process.exit(130)); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const latency: LatencyRow[] = [];
  const throughput: ThroughputRow[] = [];
  const skipped: SkippedRow[] = [];
  try {
    for (const mode of params.modes) await runMode(mode, latencyScript, latency, throughput, skipped);
  } finally {
    await labDown(LAB_DIR).catch(() => undefined);
  }

  const result = {
    benchmark: 'datapath',
    date: new Date().toISOString(),
    host: { kernel: release(), cpus: cpus().length, node: process.version },
    params,
    server: 'lab pod server (Node http, one thread): the bottleneck of both paths in the throughput runs',
    latency,
    throughput,
    skipped,
  };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(`${outFile}.tmp`, JSON.stringify(result, null, 2) + '\n');
  renameSync(`${outFile}.tmp`, outFile);
  // p50 only: p99 on a shared 2-core machine is scheduling noise of another scale.
  const series = params.modes.flatMap((mode) => {
    const rows = latency.filter((r) => r.mode === mode);
    return [
      { name: `${mode}: ClusterIP p50`, points: rows.map((r) => [r.services, r.clusterIP.p50Us] as [number, number]) },
      { name: `${mode}: pod IP p50`, points: rows.map((r) => [r.services, r.podIP.p50Us] as [number, number]) },
    ];
  });
  const svgFile = outFile.replace(/\.json$/, '') + '-latency.svg';
  writeFileSync(svgFile, linePlotSVG({ title: 'TCP connect latency through a ClusterIP vs Services programmed', xLabel: 'services programmed', yLabel: 'connect latency (µs)', logX: true, series }));

  // Against the pod IP (same run, interleaved) and against the mode's smallest count: in iptables
  // mode every new connection, to a Service or not, walks the services chain, so both grow.
  const lat = [['MODE', 'SERVICES', 'CLUSTERIP P50 µs', 'P99 µs', 'POD IP P50 µs', 'P99 µs', 'P50 VS POD IP', `P50 VS ${params.services[0]} SVCS`]];
  for (const r of latency) {
    const first = latency.find((x) => x.mode === r.mode) as LatencyRow;
    lat.push([r.mode, String(r.services), String(r.clusterIP.p50Us), String(r.clusterIP.p99Us), String(r.podIP.p50Us), String(r.podIP.p99Us),
      (r.clusterIP.p50Us / Math.max(1, r.podIP.p50Us)).toFixed(2), (r.clusterIP.p50Us / Math.max(1, first.clusterIP.p50Us)).toFixed(2)]);
  }
  const thr = [['MODE', 'CLUSTERIP req/s', 'POD IP req/s', 'RATIO (target ≥ 0.95)']];
  for (const t of throughput) thr.push([t.mode, String(t.clusterIPRps), String(t.podIPRps), t.ratio.toFixed(3)]);
  const skips = skipped.map((r) => `not measured: ${r.mode} ${r.services} services: ${r.error}\n`).join('');
  process.stdout.write(`connection latency (${params.connections} connections per target, interleaved)\n${pad(lat)}${skips}\nthroughput (wrk -t1 -c32, ${params.wrkSeconds} s × ${params.wrkRounds} rounds, median; ${result.server})\n${pad(thr)}\nresults: ${outFile}\nplot: ${svgFile}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench datapath: ${err.message}\n`);
    process.exit(1);
  },
);

// Sync scale of the node agent's dataplanes: full-sync time and one-service-change time at
// services × 10 endpoints, for weft's nftables and iptables modes through the agent's sync code
// (render + diff + apply into a `wt-` namespace), beside the floor: the identical text applied by
// plain `nft -f` / `iptables-restore` into a fresh namespace (iptables: the same restore mode as
// weft's, i.e. flushing for full syncs and --noflush for one change).
//   sudo node bench/run.mjs proxy-sync [--sizes 1000,5000,10000] [--endpoints 10] [--changes 15] [--modes nftables,iptables] [--iptables-max 1000] [--timeout 120]
// A restore that outlives --timeout (seconds) is killed and its row says "did not finish in N s".
// Output: bench/results/proxy-sync.json, proxy-sync.md (table with ratios), proxy-sync.svg; with one
// mode in --modes, proxy-sync-<mode>.{json,md,svg} (so a one-mode run keeps the last complete run).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { intFlag, parseArgs } from '../../cli/args.ts';
import { createProxyStateBuilder } from '../../proxy/model/build-proxy-state.ts';
import type { ApplyText, Dataplane } from '../../proxy/agent/dataplane.ts';
import { createIptablesDataplane } from '../../proxy/agent/iptables-dataplane.ts';
import { createNftablesDataplane } from '../../proxy/agent/nftables-dataplane.ts';
import { nftApply } from '../../proxy/nftables/apply.ts';
import { nftFullScript, renderNftables } from '../../proxy/nftables/render.ts';
import { buildNftBatchHelper, sendNftBatches } from '../../proxy/nftables/netlink/send.ts';
import { iptablesRestore } from '../../proxy/iptables/apply.ts';
import { linePlotSVG } from '../lib/plot.ts';
import { BENCH_CLUSTER_CIDR, benchNode, changedService, syntheticView } from './cluster.ts';

const args = parseArgs(process.argv.slice(2), { values: ['sizes', 'endpoints', 'changes', 'modes', 'timeout', 'out', 'iptables-max', 'one'] });
const sizes = (args.flags.get('sizes') ?? '1000,5000,10000').split(',').map(Number);
const endpoints = intFlag(args, 'endpoints', 10, 1, 100);
// The first changes after a full sync can meet the collection of its garbage (and of the floor's script): a median of 15 is robust to that.
const changes = intFlag(args, 'changes', 15, 1, 50);
const modes = (args.flags.get('modes') ?? 'nftables,iptables').split(',') as ('nftables' | 'iptables')[];
const timeoutMs = intFlag(args, 'timeout', 120, 5, 1800) * 1000;
// iptables-restore (nf_tables backend) takes seconds at 1k services and minutes beyond: bounded by default.
const iptablesMax = intFlag(args, 'iptables-max', 1000, 0, 100_000);
const outDir = args.flags.get('out') ?? join(process.cwd(), 'bench', 'results');
const prefix = `wt-bps-${process.pid}`;
const created: string[] = [];

function newNs(label: string): string {
  const name = `${prefix}-${label}`;
  execFileSync('ip', ['netns', 'add', name]);
  created.push(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}
function cleanup(): void {
  for (const ns of created.splice(0)) { try { execFileSync('ip', ['netns', 'del', ns]); } catch { /* already gone */ } }
}
let current: ChildProcess | undefined;
// The measuring child cleans its own namespaces on the signal; wait for it before leaving.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup();
    if (!current) process.exit(130);
    current.kill(sig);
    current.on('close', () => process.exit(130));
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number): number => Math.round(x * 10) / 10;

interface Row { mode: string; services: number; endpoints: number; load: number; fullMs: number; fullApplyMs: number; fullElementsMs?: number; fullSteps?: Record<string, number>; resyncSteps?: Record<string, number>; fullCpuMs: number; changeCpuMs: number; fullFloorMs: number; resyncMs: number; resyncApplyMs: number; changeMs: number; changeFloorMs: number; changeApplyMs: number; lines: number; error?: string }

async function measure(mode: 'nftables' | 'iptables', services: number): Promise<Row> {
  const ns = newNs(`${mode.slice(0, 3)}${services}`);
  const floorNs = newNs(`${mode.slice(0, 3)}${services}f`);
  const texts: string[] = [];
  const flushes: boolean[] = [];
  // apply ms: every nft/iptables-restore (and netlink helper) run of one sync, summed.
  let applyMs = 0;
  const apply: ApplyText = async (text, o) => {
    texts.push(text);
    flushes.push(o?.flush ?? false);
    const t = performance.now();
    await (mode === 'nftables' ? nftApply(text, { netns: ns, timeoutMs }) : iptablesRestore(text, { netns: ns, timeoutMs, flush: o?.flush }));
    applyMs += performance.now() - t;
  };
  const helper = mode === 'nftables' ? await buildNftBatchHelper() : '';
  let elementsMs = NaN;
  const floor = async (i: number): Promise<number> => {
    const t = performance.now();
    await (mode === 'nftables' ? nftApply(texts[i], { netns: floorNs, timeoutMs }) : iptablesRestore(texts[i], { netns: floorNs, timeoutMs, flush: flushes[i] }));
    return performance.now() - t;
  };
  // Wall ms of each step of the current sync (state build, then the dataplane's own steps).
  let steps: Record<string, number> = {};
  const dp: Dataplane = mode === 'nftables'
    ? createNftablesDataplane({ netns: ns }, {
      apply,
      step: (name, ms) => { steps[name] = ms; },
      sendBatches: async (batches) => {
        const t = performance.now();
        await sendNftBatches(helper, batches, { netns: ns, timeoutMs });
        elementsMs = performance.now() - t;
        applyMs += elementsMs;
      },
    })
    : createIptablesDataplane({ netns: ns }, { apply });
  const builder = createProxyStateBuilder();
  const view = syntheticView(services, endpoints);
  const build = () => {
    const t = performance.now();
    const state = builder.build({ services: view.services, endpointSlices: view.endpointSlices, node: benchNode(), clusterCIDR: BENCH_CLUSTER_CIDR });
    steps = { build: performance.now() - t };
    return state;
  };
  const rounded = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]));
  const row: Row = { mode, services, endpoints, load: Math.round(loadavg()[0] * 100) / 100, fullMs: NaN, fullApplyMs: NaN, fullCpuMs: NaN, changeCpuMs: NaN, fullFloorMs: NaN, resyncMs: NaN, resyncApplyMs: NaN, changeMs: NaN, changeFloorMs: NaN, changeApplyMs: NaN, lines: 0 };
  try {
    // CPU time of weft's own process (build, render, diff, GC): load on the shared cores inflates it less than wall time.
    const cpuMs = (since: NodeJS.CpuUsage): number => { const u = process.cpuUsage(since); return (u.user + u.system) / 1000; };
    let t = performance.now();
    let cpu = process.cpuUsage();
    applyMs = 0;
    await dp.sync(build(), true);
    row.fullMs = ms(performance.now() - t);
    row.fullCpuMs = ms(cpuMs(cpu));
    // The helper's run includes encoding each batch before it is written: that part is weft's, not the kernel's.
    const encodeMs = (): number => steps.encode ?? 0;
    row.fullApplyMs = ms(applyMs - encodeMs());
    row.fullElementsMs = ms(elementsMs - encodeMs());
    row.fullSteps = rounded(steps);
    // The floor of an nftables full sync is the whole table as one `nft -f` (what the text path applies).
    // Generation a: the one weft's first full sync loads, so the floor namespace takes the same incremental scripts.
    if (mode === 'nftables') texts.push(nftFullScript(renderNftables(build(), { generation: 'a' })));
    row.lines = texts.at(-1)?.split('\n').length ?? 0;
    row.fullFloorMs = ms(await floor(mode === 'nftables' ? texts.length - 1 : 0));
    const took: number[] = [], floors: number[] = [], applies: number[] = [], cpus: number[] = [];
    for (let c = 0; c < changes; c++) {
      // One service changes (new port, shifted endpoints), as a source delivering a new object for it.
      const i = Math.floor((services * (c + 1)) / (changes + 1));
      const changed = changedService(i, endpoints);
      view.services[i] = changed.service;
      view.endpointSlices[i] = changed.slice;
      const before = texts.length;
      t = performance.now();
      cpu = process.cpuUsage();
      applyMs = 0;
      await dp.sync(build(), false);
      if (texts.length === before) throw new Error('a change produced no transaction');
      took.push(performance.now() - t);
      cpus.push(cpuMs(cpu));
      applies.push(applyMs);
      floors.push(await floor(texts.length - 1));
    }
    row.changeMs = ms(median(took));
    row.changeApplyMs = ms(median(applies));
    row.changeCpuMs = ms(median(cpus));
    row.changeFloorMs = ms(median(floors));
    // A full sync over the rules already there (canary gone, failed apply): it also reads them back.
    t = performance.now();
    applyMs = 0;
    await dp.sync(build(), true);
    row.resyncMs = ms(performance.now() - t);
    row.resyncSteps = rounded(steps);
    row.resyncApplyMs = ms(applyMs - encodeMs());
  } catch (err) {
    const message = (err as Error).message;
    if (texts.length > 0) row.lines = texts[0].split('\n').length;
    row.error = /killed by SIGTERM/.test(message) ? `did not finish in ${timeoutMs / 1000} s` : message.slice(0, 300);
  } finally {
    for (const n of [ns, floorNs]) { try { execFileSync('ip', ['netns', 'del', n]); } catch { /* gone */ } created.splice(created.indexOf(n), 1); }
  }
  return row;
}

/**
 * Each measurement runs in a fresh process (this script with --one MODE:SIZE): a run must not pay
 * for the heap and garbage an earlier size or mode left behind.
 */
function measureInChild(mode: 'nftables' | 'iptables', services: number): Promise<Row> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [process.argv[1], ...process.argv.slice(2), '--one', `${mode}:${services}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    current = child;
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString('utf8'); });
    child.on('close', (code) => {
      current = undefined;
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as Row);
      } catch {
        resolve({ mode, services, endpoints, load: NaN, fullMs: NaN, fullApplyMs: NaN, fullCpuMs: NaN, changeCpuMs: NaN, fullFloorMs: NaN, resyncMs: NaN, resyncApplyMs: NaN, changeMs: NaN, changeFloorMs: NaN, changeApplyMs: NaN, lines: 0, error: `measurement process exited with ${code}` });
      }
    });
  });
}

const one = args.flags.get('one');
if (one !== undefined) {
  const [mode, size] = one.split(':');
  try {
    process.stdout.write(`${JSON.stringify(await measure(mode as 'nftables' | 'iptables', Number(size)))}\n`);
  } finally {
    cleanup();
  }
  process.exit(0);
}

const rows: Row[] = [];
for (const services of sizes) {
  for (const mode of modes) {
    if (mode === 'iptables' && services > iptablesMax) continue;
    const row = await measureInChild(mode, services);
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
}
mkdirSync(outDir, { recursive: true });
const base = join(outDir, modes.length === 1 ? `proxy-sync-${modes[0]}` : 'proxy-sync');
const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
writeFileSync(`${base}.json`, `${JSON.stringify({ date: new Date().toISOString(), kernel, endpointsPerService: endpoints, changes, rows }, null, 2)}\n`);
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const f = (x: number): string => (Number.isFinite(x) ? String(x) : '—');
const split = (s: Record<string, number> | undefined): string => (s ? Object.entries(s).map(([k, v]) => `${k} ${v}`).join(' · ') : '—');
const table = ['| mode | services × endpoints | load (1 min) | full sync ms (apply ms; netlink elements ms) | floor ms | ratio | full re-sync ms (apply ms) | one change ms (apply ms) | floor ms | ratio | weft CPU ms full / change | lines (full) |', '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.mode} | ${r.services} × ${r.endpoints} | ${r.load} | ${f(r.fullMs)} (${f(r.fullApplyMs)}${r.fullElementsMs !== undefined && Number.isFinite(r.fullElementsMs) ? `; ${r.fullElementsMs}` : ''}) | ${f(r.fullFloorMs)} | ${ratio(r.fullMs, r.fullFloorMs)} | ${f(r.resyncMs)} (${f(r.resyncApplyMs)}) | ${f(r.changeMs)} (${f(r.changeApplyMs)}) | ${f(r.changeFloorMs)} | ${ratio(r.changeMs, r.changeFloorMs)} | ${f(r.fullCpuMs)} / ${f(r.changeCpuMs)} | ${r.lines}${r.error ? ` — error: ${r.error}` : ''} |`)].join('\n');
// Where a full sync's wall time goes, step by step (nftables: see SyncStep in proxy/agent/nftables-dataplane.ts).
const splits = rows.filter((r) => r.fullSteps).map((r) => `| ${r.mode} | ${r.services} × ${r.endpoints} | ${split(r.fullSteps)} | ${split(r.resyncSteps)} |`);
const splitTable = splits.length > 0 ? ['', '| mode | services × endpoints | first full sync, ms per step | full re-sync, ms per step |', '|---|---|---|---|', ...splits].join('\n') : '';
writeFileSync(`${base}.md`, `# proxy sync scale (kernel ${kernel})\n\nfloor = plain nft -f / iptables-restore into a fresh namespace: for an nftables full sync the whole table as one nft -f script (what the text path applies; weft loads its elements over netlink), otherwise the identical text (iptables: flushing restore for full syncs, --noflush for one change, as weft applies them); netlink elements ms = the netlink helper loading the elements (without the encoding between batches); apply ms = the nft/iptables-restore (and netlink helper) part of weft's sync (the rest is build, render, encode, diff); full re-sync = a second full sync over the applied rules (reads them back first); one change = median of ${changes}; load = 1-minute load average when the row started (2 cores); weft CPU = user+system CPU of the benchmark process during the sync (build, render, diff, GC; not nft/iptables-restore); load inflates it less than wall time, but not to nothing (2 vCPUs shared). Steps (wall ms): build = the proxy state, render, stage / switch = the two nft -f transactions before and after the elements (stage includes counting the shared elements, done while nft runs), elements = encoding the netlink messages (encode, also shown alone) and the helper loading them, script / apply = the nft -f path; a first sync lists the table's chains while rendering (not a step).\n\n${table}\n${splitTable}\n`);
const series = modes.flatMap((mode) => [
  { name: `${mode} full`, points: rows.filter((r) => r.mode === mode).map((r): [number, number] => [r.services, r.fullMs]) },
  { name: `${mode} full floor`, points: rows.filter((r) => r.mode === mode).map((r): [number, number] => [r.services, r.fullFloorMs]) },
  { name: `${mode} one change`, points: rows.filter((r) => r.mode === mode).map((r): [number, number] => [r.services, r.changeMs]) },
]);
writeFileSync(`${base}.svg`, linePlotSVG({ title: `Sync time vs services (× ${endpoints} endpoints)`, xLabel: 'services', yLabel: 'ms (log)', series, logY: true }));
process.stdout.write(`${table}\n${splitTable}\n`);

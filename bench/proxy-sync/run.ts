// Sync scale of the node agent's dataplanes: full-sync time and one-service-change time at
// services × 10 endpoints, for weft's nftables and iptables modes through the agent's sync code
// (render + diff + apply into a `wt-` namespace), beside the floor: the identical text applied by
// plain `nft -f` / `iptables-restore` into a fresh namespace.
//   sudo node bench/run.mjs proxy-sync [--sizes 1000,5000,10000] [--endpoints 10] [--changes 5] [--modes nftables,iptables] [--iptables-max 1000] [--timeout 120]
// Output: bench/results/proxy-sync.json, proxy-sync.md (table with ratios), proxy-sync.svg.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { intFlag, parseArgs } from '../../cli/args.ts';
import { createProxyStateBuilder } from '../../proxy/model/build-proxy-state.ts';
import type { ApplyText, Dataplane } from '../../proxy/agent/dataplane.ts';
import { createIptablesDataplane } from '../../proxy/agent/iptables-dataplane.ts';
import { createNftablesDataplane } from '../../proxy/agent/nftables-dataplane.ts';
import { nftApply } from '../../proxy/nftables/apply.ts';
import { iptablesRestore } from '../../proxy/iptables/apply.ts';
import { linePlotSVG } from '../lib/plot.ts';
import { BENCH_CLUSTER_CIDR, benchNode, syntheticView } from './cluster.ts';

const args = parseArgs(process.argv.slice(2), { values: ['sizes', 'endpoints', 'changes', 'modes', 'timeout', 'out', 'iptables-max'] });
const sizes = (args.flags.get('sizes') ?? '1000,5000,10000').split(',').map(Number);
const endpoints = intFlag(args, 'endpoints', 10, 1, 100);
const changes = intFlag(args, 'changes', 5, 1, 50);
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
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { cleanup(); process.exit(130); });

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number): number => Math.round(x * 10) / 10;

interface Row { mode: string; services: number; endpoints: number; fullMs: number; fullFloorMs: number; changeMs: number; changeFloorMs: number; changeApplyMs: number; lines: number; error?: string }

async function measure(mode: 'nftables' | 'iptables', services: number): Promise<Row> {
  const ns = newNs(`${mode.slice(0, 3)}${services}`);
  const floorNs = newNs(`${mode.slice(0, 3)}${services}f`);
  const texts: string[] = [];
  let applyMs = 0;
  const apply: ApplyText = async (text) => {
    texts.push(text);
    const t = performance.now();
    await (mode === 'nftables' ? nftApply(text, { netns: ns, timeoutMs }) : iptablesRestore(text, { netns: ns, timeoutMs }));
    applyMs = performance.now() - t;
  };
  const floor = async (text: string): Promise<number> => {
    const t = performance.now();
    await (mode === 'nftables' ? nftApply(text, { netns: floorNs, timeoutMs }) : iptablesRestore(text, { netns: floorNs, timeoutMs }));
    return performance.now() - t;
  };
  const dp: Dataplane = mode === 'nftables' ? createNftablesDataplane({ netns: ns }, { apply }) : createIptablesDataplane({ netns: ns }, { apply });
  const builder = createProxyStateBuilder();
  const view = syntheticView(services, endpoints);
  const build = () => builder.build({ services: view.services, endpointSlices: view.endpointSlices, node: benchNode(), clusterCIDR: BENCH_CLUSTER_CIDR });
  const row: Row = { mode, services, endpoints, fullMs: NaN, fullFloorMs: NaN, changeMs: NaN, changeFloorMs: NaN, changeApplyMs: NaN, lines: 0 };
  try {
    let t = performance.now();
    await dp.sync(build(), true);
    row.fullMs = ms(performance.now() - t);
    row.lines = texts[0].split('\n').length;
    row.fullFloorMs = ms(await floor(texts[0]));
    const took: number[] = [], floors: number[] = [], applies: number[] = [];
    for (let c = 0; c < changes; c++) {
      // One service changes (new port, shifted endpoints), as a source delivering a new object for it.
      const i = Math.floor((services * (c + 1)) / (changes + 1));
      const changed = syntheticView(i + 1, endpoints, new Set([i]));
      view.services[i] = changed.services[i];
      view.endpointSlices[i] = changed.endpointSlices[i];
      const before = texts.length;
      t = performance.now();
      await dp.sync(build(), false);
      if (texts.length === before) throw new Error('a change produced no transaction');
      took.push(performance.now() - t);
      applies.push(applyMs);
      floors.push(await floor(texts.at(-1) as string));
    }
    row.changeMs = ms(median(took));
    row.changeApplyMs = ms(median(applies));
    row.changeFloorMs = ms(median(floors));
  } catch (err) {
    row.error = (err as Error).message.slice(0, 300);
  } finally {
    for (const n of [ns, floorNs]) { try { execFileSync('ip', ['netns', 'del', n]); } catch { /* gone */ } created.splice(created.indexOf(n), 1); }
  }
  return row;
}

const rows: Row[] = [];
try {
  for (const services of sizes) {
    for (const mode of modes) {
      if (mode === 'iptables' && services > iptablesMax) continue;
      const row = await measure(mode, services);
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  }
} finally {
  cleanup();
}
mkdirSync(outDir, { recursive: true });
const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
writeFileSync(join(outDir, 'proxy-sync.json'), `${JSON.stringify({ date: new Date().toISOString(), kernel, endpointsPerService: endpoints, changes, rows }, null, 2)}\n`);
const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
const f = (x: number): string => (Number.isFinite(x) ? String(x) : '—');
const table = ['| mode | services × endpoints | full sync ms | floor ms | ratio | one change ms (apply ms) | floor ms | ratio | lines (full) |', '|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.mode} | ${r.services} × ${r.endpoints} | ${f(r.fullMs)} | ${f(r.fullFloorMs)} | ${ratio(r.fullMs, r.fullFloorMs)} | ${f(r.changeMs)} (${f(r.changeApplyMs)}) | ${f(r.changeFloorMs)} | ${ratio(r.changeMs, r.changeFloorMs)} | ${r.lines}${r.error ? ` — error: ${r.error}` : ''} |`)].join('\n');
writeFileSync(join(outDir, 'proxy-sync.md'), `# proxy sync scale (kernel ${kernel})\n\nfloor = the identical text applied by plain nft -f / iptables-restore into a fresh namespace; one change = median of ${changes}.\n\n${table}\n`);
const series = modes.flatMap((mode) => [
  { name: `${mode} full`, points: rows.filter((r) => r.mode === mode).map((r): [number, number] => [r.services, r.fullMs]) },
  { name: `${mode} full floor`, points: rows.filter((r) => r.mode === mode).map((r): [number, number] => [r.services, r.fullFloorMs]) },
  { name: `${mode} one change`, points: rows.filter((r) => r.mode === mode).map((r): [number, number] => [r.services, r.changeMs]) },
]);
writeFileSync(join(outDir, 'proxy-sync.svg'), linePlotSVG({ title: `Sync time vs services (× ${endpoints} endpoints)`, xLabel: 'services', yLabel: 'ms (log)', series, logY: true }));
process.stdout.write(`${table}\n`);

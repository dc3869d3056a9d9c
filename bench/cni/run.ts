// CNI ADD/DEL latency: weft (C shim → daemon, and the Node fallback with the daemon down) beside
// the reference bridge + host-local plugins from /usr/lib/cni, in one run, on the same pods.
//   sudo node bench/run.mjs cni [--pods 100] [--rounds 4] [--concurrency 50] [--fallback-pods 20] [--out FILE]
// Everything happens in network namespaces this run creates (wt-bcni-<pid>-*), removed at the end,
// also on failure or Ctrl-C; a run that was killed is cleaned up by the next one.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { intFlag, parseArgs } from '../../cli/args.ts';
import { installCni } from '../../cni/install.ts';
import { projectRoot } from '../../cni/shim/paths.ts';
import type { CycleCommand, CycleResult, PluginSpec } from './driver.ts';

const args = parseArgs(process.argv.slice(2), { values: ['pods', 'rounds', 'concurrency', 'fallback-pods', 'out'] });
const params = {
  pods: intFlag(args, 'pods', 100, 10, 500),
  rounds: intFlag(args, 'rounds', 4, 1, 20),
  concurrency: intFlag(args, 'concurrency', 50, 1, 200),
  fallbackPods: intFlag(args, 'fallback-pods', 20, 0, 100),
};
const root = projectRoot();
const outFile = args.flags.get('out') ?? join(root, 'bench', 'results', 'cni.json');
const REFERENCE_DIR = '/usr/lib/cni';
const WEFT_SUBNET = '10.244.7.0/24';
const REFERENCE_SUBNET = '10.250.7.0/24';
const prefix = `wt-bcni-${process.pid}`;
const nodeNs = `${prefix}-node`;

function ip(...argv: string[]): string {
  return execFileSync('ip', argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Namespaces of earlier runs whose process is gone (killed before its own cleanup). */
function removeLeftovers(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const m = /^(wt-bcni-(\d+)-\S+)/.exec(line);
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[2]), 0);
    } catch {
      alive = false;
    }
    if (!alive) ip('netns', 'del', m[1]);
  }
}

interface Stats { n: number; p50Ms: number; p99Ms: number; meanMs: number }

function stats(us: number[]): Stats {
  const sorted = [...us].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  const ms = (v: number) => Math.round(v / 10) / 100;
  return { n: sorted.length, p50Ms: ms(rank(50)), p99Ms: ms(rank(99)), meanMs: ms(sorted.reduce((a, b) => a + b, 0) / sorted.length) };
}

/** The driver: one long-lived process in the node namespace that execs plugins and times them. */
function startDriver(script: string): { run(cmd: CycleCommand): Promise<CycleResult>; child: ChildProcess } {
  const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<{ resolve: (r: CycleResult) => void; reject: (e: Error) => void }> = [];
  lines.on('line', (line) => waiting.shift()?.resolve(JSON.parse(line) as CycleResult));
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`benchmark driver exited with code ${code}`));
  });
  return {
    child,
    run(cmd) {
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        child.stdin!.write(JSON.stringify(cmd) + '\n');
      });
    },
  };
}

function startDaemon(socket: string): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, join(root, 'dist', 'weft.mjs'), 'cni', 'serve', '--socket', socket, '--subnet', WEFT_SUBNET], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`weft cni serve did not become ready within 15 s: ${log}`)), 15_000);
    child.stderr!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('listening on')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`weft cni serve exited with code ${code}: ${log}`)));
  });
}

function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench/cni: needs root (it creates network namespaces); rerun with sudo\n');
    return 2;
  }
  if (!existsSync(join(REFERENCE_DIR, 'bridge'))) {
    process.stderr.write(`bench/cni: ${REFERENCE_DIR}/bridge is missing (install containernetworking-plugins: scripts/ensure-deps.sh bench)\n`);
    return 2;
  }
  removeLeftovers();
  execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  const driverScript = join(root, 'node_modules', '.cache', 'weft-bench', 'cni-driver.mjs');
  await build({ entryPoints: [join(root, 'bench', 'cni', 'driver.ts')], outfile: driverScript, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' });

  const tmp = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const podCount = Math.max(Math.ceil(params.pods / params.rounds), params.concurrency, params.fallbackPods);
  const pods = Array.from({ length: podCount }, (_, i) => `${prefix}-p${i}`);
  let driver: ReturnType<typeof startDriver> | undefined;
  let daemon: ChildProcess | undefined;
  const created: string[] = [];
  const cleanup = async () => {
    await Promise.all([stopChild(driver?.child), stopChild(daemon)]);
    for (const ns of created.reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`bench/cni: ${sig}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    for (const ns of [nodeNs, ...pods]) {
      ip('netns', 'add', ns);
      created.push(ns);
    }
    ip('-n', nodeNs, 'link', 'set', 'lo', 'up');

    const socket = join(tmp, 'cni.sock');
    const installed = await installCni({ binDir: join(tmp, 'bin'), confDir: join(tmp, 'net.d'), subnet: WEFT_SUBNET, daemonSocket: socket, dataDir: join(tmp, 'weft-ipam'), bridge: 'wtbench0' });
    const weftPlugin = JSON.parse(readFileSync(installed.conflist, 'utf8')).plugins[0] as Record<string, unknown>;
    const weft: PluginSpec = { binary: installed.binary, conf: { cniVersion: '1.0.0', name: 'weft', ...weftPlugin }, env: { CNI_PATH: join(tmp, 'bin') } };
    const reference: PluginSpec = {
      binary: join(REFERENCE_DIR, 'bridge'),
      conf: {
        cniVersion: '1.0.0', name: 'cnibench', type: 'bridge', bridge: 'cnibench0', isGateway: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: REFERENCE_SUBNET }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(tmp, 'host-local') },
      },
      env: { CNI_PATH: REFERENCE_DIR },
    };

    daemon = await startDaemon(socket);
    driver = startDriver(driverScript);
    const failures: string[] = [];
    let seq = 0;
    const cycle = async (plugin: PluginSpec, n: number, concurrency: number) => {
      const r = await driver!.run({ plugin, pods: pods.slice(0, n).map((p) => `/run/netns/${p}`), concurrency, containerPrefix: `bench${seq++}` });
      failures.push(...r.failures);
      return r;
    };

    // Warm-up, not recorded: the first ADD creates the bridge, and the daemon's code gets hot.
    await cycle(weft, 3, 1);
    await cycle(reference, 3, 1);

    const perRound = Math.ceil(params.pods / params.rounds);
    const seqRuns: Record<'weft' | 'reference', CycleResult[]> = { weft: [], reference: [] };
    for (let round = 0; round < params.rounds; round++) {
      // Alternate who goes first so neither side always runs on a warmer (or busier) machine.
      const order = round % 2 === 0 ? (['weft', 'reference'] as const) : (['reference', 'weft'] as const);
      for (const who of order) seqRuns[who].push(await cycle(who === 'weft' ? weft : reference, perRound, 1));
    }
    const concWeft = await cycle(weft, params.concurrency, params.concurrency);
    const concReference = await cycle(reference, params.concurrency, params.concurrency);

    await stopChild(daemon);
    daemon = undefined;
    const fallback = params.fallbackPods > 0 ? await cycle(weft, params.fallbackPods, 1) : undefined;

    const flat = (runs: CycleResult[], k: 'addUs' | 'delUs') => runs.flatMap((r) => r[k]);
    const result = {
      benchmark: 'cni',
      date: new Date().toISOString(),
      host: { cpus: cpus().length, kernel: release(), node: process.version },
      params,
      weft: { add: stats(flat(seqRuns.weft, 'addUs')), del: stats(flat(seqRuns.weft, 'delUs')) },
      reference: { add: stats(flat(seqRuns.reference, 'addUs')), del: stats(flat(seqRuns.reference, 'delUs')) },
      weftFallback: fallback && { add: stats(fallback.addUs), del: stats(fallback.delUs) },
      concurrent: {
        pods: params.concurrency,
        weft: { addWallMs: Math.round(concWeft.addWallUs / 1000), delWallMs: Math.round(concWeft.delWallUs / 1000) },
        reference: { addWallMs: Math.round(concReference.addWallUs / 1000), delWallMs: Math.round(concReference.delWallUs / 1000) },
      },
      failures,
    };
    const ratios = {
      addP50: ratio(result.weft.add.p50Ms, result.reference.add.p50Ms),
      delP50: ratio(result.weft.del.p50Ms, result.reference.del.p50Ms),
      addP99: ratio(result.weft.add.p99Ms, result.reference.add.p99Ms),
      delP99: ratio(result.weft.del.p99Ms, result.reference.del.p99Ms),
      concurrentAddWall: ratio(result.concurrent.weft.addWallMs, result.concurrent.reference.addWallMs),
      concurrentDelWall: ratio(result.concurrent.weft.delWallMs, result.concurrent.reference.delWallMs),
    };
    const report = { ...result, ratios, goalMet: failures.length === 0 && ratios.addP50 <= 1 && ratios.delP50 <= 1 };
    mkdirSync(join(outFile, '..'), { recursive: true });
    writeFileSync(`${outFile}.tmp`, JSON.stringify(report, null, 2) + '\n');
    renameSync(`${outFile}.tmp`, outFile);

    const row = (name: string, s: { add: Stats; del: Stats } | undefined) =>
      s ? `${name.padEnd(30)}${s.add.p50Ms.toFixed(2).padStart(9)}${s.add.p99Ms.toFixed(2).padStart(9)}${s.del.p50Ms.toFixed(2).padStart(9)}${s.del.p99Ms.toFixed(2).padStart(9)}${String(s.add.n).padStart(6)}` : '';
    const lines = [
      `CNI ADD/DEL latency, ms (${cpus().length} CPUs, ${process.version}, kernel ${release()})`,
      `${''.padEnd(30)}${'ADD p50'.padStart(9)}${'ADD p99'.padStart(9)}${'DEL p50'.padStart(9)}${'DEL p99'.padStart(9)}${'n'.padStart(6)}`,
      row('weft (shim + daemon)', result.weft),
      row('bridge + host-local', result.reference),
      `${'ratio weft / reference'.padEnd(30)}${ratios.addP50.toFixed(2).padStart(9)}${ratios.addP99.toFixed(2).padStart(9)}${ratios.delP50.toFixed(2).padStart(9)}${ratios.delP99.toFixed(2).padStart(9)}`,
      row('weft fallback (no daemon)', result.weftFallback),
      '',
      `${params.concurrency} concurrent, wall ms            ADD      DEL`,
      `${'weft'.padEnd(30)}${String(result.concurrent.weft.addWallMs).padStart(9)}${String(result.concurrent.weft.delWallMs).padStart(9)}`,
      `${'bridge + host-local'.padEnd(30)}${String(result.concurrent.reference.addWallMs).padStart(9)}${String(result.concurrent.reference.delWallMs).padStart(9)}`,
      `${'ratio weft / reference'.padEnd(30)}${ratios.concurrentAddWall.toFixed(2).padStart(9)}${ratios.concurrentDelWall.toFixed(2).padStart(9)}`,
      '',
      failures.length ? `FAILURES (${failures.length}):\n  ${failures.slice(0, 10).join('\n  ')}` : 'every ADD returned an address and every DEL succeeded',
      `goal (weft ADD p50 and DEL p50 <= reference): ${report.goalMet ? 'met' : 'NOT met'}; results in ${outFile}`,
    ];
    process.stdout.write(lines.filter((l) => l !== undefined).join('\n') + '\n');
    return failures.length ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench/cni: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);

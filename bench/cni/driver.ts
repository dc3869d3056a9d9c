// The benchmark's stand-in for a container runtime. It runs inside the node's network namespace
// (started once with `ip netns exec`), so each plugin is exec'd exactly as containerd execs it:
// env + config on stdin, from a process already in the right namespace, with no `ip` in between.
// Commands arrive as JSON lines on stdin; each answer is one JSON line on stdout.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface PluginSpec {
  binary: string;
  /** The plugin config the runtime would pass: cniVersion and name included. */
  conf: Record<string, unknown>;
  env: Record<string, string>;
}

export interface CycleCommand {
  plugin: PluginSpec;
  /** Pod network namespace paths; one ADD then one DEL each. */
  pods: string[];
  concurrency: number;
  containerPrefix: string;
}

export interface CycleResult {
  /** Per-call latency, integer microseconds. */
  addUs: number[];
  delUs: number[];
  addWallUs: number;
  delWallUs: number;
  failures: string[];
}

const EXEC_TIMEOUT_MS = 30_000;

interface Exec { code: number | null; stdout: string; stderr: string; us: number }

function execPlugin(spec: PluginSpec, env: Record<string, string>, stdin: string): Promise<Exec> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const child = spawn(spec.binary, [], { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...spec.env, ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), EXEC_TIMEOUT_MS);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {});
    child.on('error', (e) => err.push(Buffer.from(e.message)));
    child.on('close', (code) => {
      clearTimeout(timer);
      const us = Number((process.hrtime.bigint() - start) / 1000n);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), us });
    });
    child.stdin.end(stdin);
  });
}

async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

async function cycle(cmd: CycleCommand): Promise<CycleResult> {
  const failures: string[] = [];
  const envOf = (command: string, i: number) => ({
    CNI_COMMAND: command, CNI_CONTAINERID: `${cmd.containerPrefix}-${i}`, CNI_NETNS: cmd.pods[i], CNI_IFNAME: 'eth0',
  });
  const check = (what: string, i: number, r: Exec) => {
    if (r.code !== 0) failures.push(`${what} ${cmd.containerPrefix}-${i}: exit ${r.code}: ${r.stdout.trim()} ${r.stderr.trim()}`);
  };

  const confText = JSON.stringify(cmd.plugin.conf);
  let t0 = process.hrtime.bigint();
  const adds = await pool(cmd.pods.length, cmd.concurrency, (i) => execPlugin(cmd.plugin, envOf('ADD', i), confText));
  const addWallUs = Number((process.hrtime.bigint() - t0) / 1000n);
  adds.forEach((r, i) => {
    check('ADD', i, r);
    if (r.code === 0 && !/"address"\s*:/.test(r.stdout)) failures.push(`ADD ${cmd.containerPrefix}-${i}: no address in result ${r.stdout}`);
  });

  // DEL gets the ADD result as prevResult, as a runtime passes its cached result.
  const delConf = (i: number) => {
    let prevResult: unknown;
    try {
      prevResult = JSON.parse(adds[i].stdout);
    } catch {
      prevResult = undefined;
    }
    return JSON.stringify(prevResult === undefined ? cmd.plugin.conf : { ...cmd.plugin.conf, prevResult });
  };
  t0 = process.hrtime.bigint();
  const dels = await pool(cmd.pods.length, cmd.concurrency, (i) => execPlugin(cmd.plugin, envOf('DEL', i), delConf(i)));
  const delWallUs = Number((process.hrtime.bigint() - t0) / 1000n);
  dels.forEach((r, i) => check('DEL', i, r));

  return { addUs: adds.map((r) => r.us), delUs: dels.map((r) => r.us), addWallUs, delWallUs, failures };
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() === '') continue;
  const result = await cycle(JSON.parse(line) as CycleCommand);
  process.stdout.write(JSON.stringify(result) + '\n');
}

// Thin wrappers over iproute2 for the lab: every command names the namespace it runs in, and the
// root namespace is never the target of a change.
import { execFile } from 'node:child_process';
import { LabError } from './errors.ts';

/** Runs a command (stdin optional) and resolves to stdout; failures name the verb and the cause. */
export function run(verb: string, cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { maxBuffer: 16 << 20, env: env ?? process.env }, (err, stdout, stderr) => {
      if (err) reject(new LabError('WEFT_LAB_COMMAND', `failed to ${verb}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
    // A command that exits without reading stdin must not turn into an EPIPE crash.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

/** `ip -n NETNS -b -`: one exec for many changes inside one namespace. */
export function ipBatch(netns: string, lines: string[], verb: string): Promise<string> {
  return run(verb, 'ip', ['-n', netns, '-b', '-'], lines.join('\n') + '\n');
}

export async function addNetns(name: string): Promise<void> {
  await run(`create network namespace ${name}`, 'ip', ['netns', 'add', name]);
  await ipBatch(name, ['link set lo up'], `bring up lo in ${name}`);
}

export async function deleteNetns(name: string): Promise<void> {
  await run(`delete network namespace ${name}`, 'ip', ['netns', 'delete', name]).catch((err: LabError) => {
    if (!/No such file|not found/i.test(err.message)) throw err;
  });
}

export async function listNetns(prefix: string): Promise<string[]> {
  const out = await run('list network namespaces', 'ip', ['netns', 'list']);
  return out.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(prefix));
}

/** Processes whose network namespace is NETNS (leftovers of a crashed lab are found this way). */
export async function netnsPids(name: string): Promise<number[]> {
  const out = await run(`list processes in ${name}`, 'ip', ['netns', 'pids', name]).catch(() => '');
  return out.split('\n').filter(Boolean).map(Number);
}

/** Writes a sysctl of the namespace (each namespace has its own /proc/sys/net). */
export function netnsSysctl(netns: string, key: string, value: string): Promise<string> {
  return run(`set ${key}=${value} in ${netns}`, 'ip', ['netns', 'exec', netns, 'sysctl', '-qw', `${key}=${value}`]);
}

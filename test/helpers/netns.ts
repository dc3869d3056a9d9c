// Throwaway network namespaces for kernel tests: uniquely named `wt-...`, removed by the test
// (also on failure). Every command runs inside a namespace, never in the host's.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Why kernel tests cannot run here, or undefined when they can (root and `ip netns` work). */
export function netnsSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  const probe = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'iproute2 (`ip`) is not installed';
  return undefined;
}

export interface Netns {
  name: string;
  /** The bind-mount path, as a runtime passes it in CNI_NETNS. */
  path: string;
  /** Runs `ip -n NAME ...args`; rejects with stderr on failure. */
  ip(...args: string[]): Promise<string>;
  /** Runs any command inside the namespace (`ip netns exec NAME cmd ...args`). */
  exec(cmd: string, args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  remove(): Promise<void>;
}

/** Creates `wt-<label>-<random>` with loopback up. */
export async function createNetns(label = 'ns'): Promise<Netns> {
  const name = `wt-${label}-${randomBytes(4).toString('hex')}`.slice(0, 40);
  await execFileP('ip', ['netns', 'add', name]);
  const ns: Netns = {
    name,
    path: `/var/run/netns/${name}`,
    async ip(...args) {
      try {
        const { stdout } = await execFileP('ip', ['-n', name, ...args]);
        return stdout;
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`ip -n ${name} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
      }
    },
    exec(cmd, args, opts = {}) {
      return runIn(name, cmd, args, opts);
    },
    async remove() {
      await execFileP('ip', ['netns', 'del', name]).catch(() => undefined);
    },
  };
  try {
    await ns.ip('link', 'set', 'lo', 'up');
  } catch (err) {
    await ns.remove();
    throw err;
  }
  return ns;
}

function runIn(name: string, cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['netns', 'exec', name, cmd, ...args], {
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs ?? 30_000,
      maxBuffer: 16 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      if (err && code === -1 && !stdout && !stderr) reject(err);
      else resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

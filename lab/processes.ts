// The lab's long-lived processes: node agents and pod servers started inside a namespace with
// `ip netns exec` (which execs, so the pid is the process itself), the control service and the lab
// kubelet in the host's namespaces (they must share its mount namespace: `ip netns exec` gives a
// process a private one, where the pod namespaces it creates would not be seen by others) with a
// pid file each. All are detached from the CLI, log to a file, and are considered started once
// they print "ready" (or once `started()` says so).
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LabError } from './errors.ts';

/** dist/: the bundled entries sit beside the running weft.mjs (override: WEFT_DIST_DIR). */
export function distDir(): string {
  return process.env.WEFT_DIST_DIR || dirname(fileURLToPath(import.meta.url));
}

export function distEntry(name: string): string {
  return join(distDir(), name);
}

const READY_TIMEOUT_MS = 15_000;

export function startInNetns(netns: string, argv: string[], logFile: string, what: string): Promise<number> {
  return startDetached('ip', ['netns', 'exec', netns, ...argv], logFile, what);
}

/** Starts a host-namespace lab process; its pid goes to `pidFile`, for stopByPidFile. */
export async function startHostProcess(argv: string[], logFile: string, pidFile: string, what: string): Promise<number> {
  const pid = await startDetached(argv[0], argv.slice(1), logFile, what);
  writeFileSync(pidFile, `${pid}\n`);
  return pid;
}

/** Stops the process a pid file names, only if its command line still contains `mark` (pids are reused). */
export async function stopByPidFile(pidFile: string, mark: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mark)) return;
  } catch {
    return;
  }
  await stopProcesses([pid]);
}

function startDetached(cmd: string, args: string[], logFile: string, what: string): Promise<number> {
  const log = openSync(logFile, 'a');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', log] });
  closeSync(log);
  const stdout = child.stdout as Readable;
  return new Promise((resolve, reject) => {
    let out = '';
    const fail = (cause: string) => {
      clearTimeout(timer);
      if (child.pid) try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
      reject(new LabError('WEFT_LAB_PROCESS', `failed to start ${what}: ${cause} (log: ${logFile})`));
    };
    const timer = setTimeout(() => fail(`not ready after ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
    child.on('error', (err) => fail(err.message));
    child.on('exit', (code, signal) => fail(`exited with ${signal ?? code}`));
    stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!out.includes('ready\n')) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      stdout.destroy();
      child.unref();
      resolve(child.pid as number);
    });
  });
}

/** Running, not merely unreaped: the lab's detached processes belong to init, which may reap late. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL whatever is still alive after `graceMs`. */
export async function stopProcesses(pids: number[], graceMs = 2_000): Promise<void> {
  const live = pids.filter((p) => p > 0 && alive(p));
  for (const p of live) try { process.kill(p, 'SIGTERM'); } catch { /* gone */ }
  const deadline = Date.now() + graceMs;
  while (live.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const p of live.filter(alive)) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
}

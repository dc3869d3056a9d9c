// Long-lived `ip -force -b -` processes for the daemon's node-namespace batches. Spawning `ip`
// from Node costs ~2-3 ms on a loaded 2-core node (fork of a large process, exec, dynamic
// linking); a warm session runs the same batch in well under 1 ms. Measured: node-side ADD batch
// 3.3 ms cold vs 0.8 ms warm; veth delete 21 ms cold vs 18 ms warm (bench/cni/README.md).
//
// A session reads batch lines from a pipe and never exits. After each batch it is sent a marker
// command that always fails (`link show dev <unused name>`); ip reports every failed line as
// "Command failed -:N" on unbuffered stderr, so the marker's report marks the end of the batch,
// and any earlier report names the failed line. With -force ip runs every line of a batch even
// after one fails (a plain `ip -b` stops there); the result still names the first failed line,
// with N renumbered from 1 per batch, exactly as `ip -b -` would print it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { runCommand, type CommandResult } from '../exec.ts';

export interface IpRunner {
  /** Runs the lines as one batch in this process's network namespace; same result as `ip -b -`. */
  run(lines: string[]): Promise<CommandResult>;
}

export interface IpSessionPool extends IpRunner {
  close(): Promise<void>;
}

const MARKER_PREFIX = 'wtmark';
const BATCH_TIMEOUT_MS = 30_000;

interface Session {
  child: ChildProcessWithoutNullStreams;
  busy: boolean;
  alive: boolean;
  /** Lines written so far: ip numbers batch lines from 1 for the life of the process. */
  lineNo: number;
  stderr: string;
  onStderr?: () => void;
}

function spawnSession(command: string, globalArgs: string[]): Session {
  const child = spawn(command, [...globalArgs, '-force', '-b', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const session: Session = { child, busy: false, alive: true, lineNo: 0, stderr: '' };
  child.stdout.resume();
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    session.stderr += d;
    session.onStderr?.();
  });
  child.stdin.on('error', () => {});
  const die = () => {
    session.alive = false;
    session.onStderr?.();
  };
  child.on('error', die);
  child.on('exit', die);
  return session;
}

/** Runs one batch on an idle session; resolves when ip has reported the batch's marker. */
function runOn(session: Session, lines: string[]): Promise<CommandResult> {
  session.busy = true;
  const first = session.lineNo + 1;
  const marker = first + lines.length;
  session.lineNo = marker;
  session.stderr = '';
  const done = new RegExp(`^Command failed -:${marker}\\n`, 'm');
  return new Promise<CommandResult>((resolve) => {
    const finish = (result: CommandResult) => {
      clearTimeout(timer);
      session.onStderr = undefined;
      session.busy = false;
      resolve(result);
    };
    const timer = setTimeout(() => {
      session.alive = false;
      session.child.kill('SIGKILL');
      finish({ code: 1, stdout: '', stderr: `ip session: no answer within ${BATCH_TIMEOUT_MS} ms\n` });
    }, BATCH_TIMEOUT_MS);
    session.onStderr = () => {
      const end = done.exec(session.stderr);
      if (!end) {
        if (!session.alive) finish({ code: 1, stdout: '', stderr: `${session.stderr}ip session exited during the batch\n` });
        return;
      }
      // Everything before the marker's own error line belongs to the batch.
      const before = session.stderr.slice(0, end.index);
      const markerError = before.lastIndexOf(`"${MARKER_PREFIX}${marker}"`);
      const own = (markerError === -1 ? before : before.slice(0, before.lastIndexOf('\n', markerError) + 1));
      const stderr = own.replace(/^Command failed -:(\d+)$/gm, (_, n: string) => `Command failed -:${Number(n) - first + 1}`);
      finish({ code: /^Command failed -:/m.test(stderr) ? 1 : 0, stdout: '', stderr });
    };
    session.child.stdin.write(`${lines.join('\n')}\nlink show dev ${MARKER_PREFIX}${marker}\n`);
  });
}

/**
 * `size` warm sessions; a batch that finds them all busy runs as a plain `ip -b -` exec, so
 * concurrency is never limited by the pool. A session that dies is replaced on next use.
 */
export function createIpSessionPool(opts: { size?: number; command?: string; globalArgs?: string[] } = {}): IpSessionPool {
  const command = opts.command ?? 'ip';
  const globalArgs = opts.globalArgs ?? [];
  const sessions: Session[] = Array.from({ length: opts.size ?? 2 }, () => spawnSession(command, globalArgs));
  return {
    async run(lines) {
      const i = sessions.findIndex((s) => !s.busy);
      if (i === -1) return runCommand(command, [...globalArgs, '-b', '-'], `${lines.join('\n')}\n`);
      if (!sessions[i].alive) sessions[i] = spawnSession(command, globalArgs);
      return runOn(sessions[i], lines);
    },
    async close() {
      await Promise.all(sessions.map((s) => new Promise<void>((resolve) => {
        if (!s.alive) return resolve();
        s.child.once('exit', () => resolve());
        s.child.stdin.end();
      })));
    },
  };
}

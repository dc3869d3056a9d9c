// Runs one kernel-facing command, optionally inside a network namespace (`ip netns exec NS ...`),
// with stdin, a time limit and captured output. The only place the appliers spawn processes.
import { spawn } from 'node:child_process';

/**
 * The bound for writing or reading a whole ruleset. Large rulesets take tens of seconds (a 10k x 10
 * iptables restore ~20 s here); killing one half-way only makes the retry start over, so this bound
 * is for a wedged command, not a slow one.
 */
export const RULESET_TIMEOUT_MS = 600_000;

export interface CommandOptions {
  /** Network namespace name; absent means the current namespace. */
  netns?: string;
  input?: string;
  /** Default 30 s. */
  timeoutMs?: number;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCommand(cmd: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, cmd, ...args] : [cmd, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 30_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString('utf8') + (signal ? `killed by ${signal}` : '');
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr });
    });
    // A command that exits before reading stdin must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** "line N: <text>" for the input line a tool reported, to point at the rule it rejected. */
export function describeFailedLine(input: string, lineNumber: number | undefined): string {
  if (lineNumber === undefined) return '';
  const line = input.split('\n')[lineNumber - 1];
  return line === undefined ? '' : ` (line ${lineNumber}: ${line})`;
}

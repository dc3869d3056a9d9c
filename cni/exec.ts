// Runs one external command (ip, nft) with optional stdin. Never throws on a non-zero exit:
// callers read the code and stderr, because the failure text is what tells them what went wrong.
import { spawn } from 'node:child_process';

export interface CommandResult { code: number; stdout: string; stderr: string }

export function runCommand(file: string, args: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: `${stderr}${file}: ${err.message}` }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** The first meaningful line of a failed command's stderr, for error messages. */
export function failureText(r: CommandResult): string {
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Command failed'));
  return lines[0] ?? `exit code ${r.code}`;
}

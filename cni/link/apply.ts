// Thin appliers: run batch scripts with as few `ip` execs as possible, in the current (node)
// namespace or in a pod namespace given as a path.
import { existsSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { failureText, runCommand, type CommandResult } from '../exec.ts';

/** Runs batch lines in the current (node) namespace; the daemon passes warm `ip -b -` sessions. */
export interface IpRunner {
  run(lines: string[]): Promise<CommandResult>;
}

/** Plain `ip -b -` per batch: what the exec'd plugin uses. */
export const execIpRunner: IpRunner = {
  run: (lines) => runCommand('ip', ['-b', '-'], `${lines.join('\n')}\n`),
};

export interface BatchFailure {
  /** 0-based index of the failed line, or -1 when ip failed before running any line. */
  line: number;
  command: string;
  cause: string;
}

/** ip's argv prefix for a namespace path: `-n NAME` under /run/netns (no extra exec), else nsenter. */
export function podIpCommand(netnsPath: string): { file: string; args: string[] } {
  const dir = dirname(netnsPath);
  if (dir === '/run/netns' || dir === '/var/run/netns') return { file: 'ip', args: ['-n', basename(netnsPath)] };
  return { file: 'nsenter', args: [`--net=${netnsPath}`, 'ip'] };
}

/** Runs `lines` as one batch, in the node namespace (through `ip`) or in a pod's; undefined on success. */
export async function runIpBatch(lines: string[], netnsPath?: string, ip: IpRunner = execIpRunner): Promise<BatchFailure | undefined> {
  let r: CommandResult;
  if (netnsPath) {
    const cmd = podIpCommand(netnsPath);
    r = await runCommand(cmd.file, [...cmd.args, '-b', '-'], lines.join('\n') + '\n');
  } else {
    r = await ip.run(lines);
  }
  if (r.code === 0) return undefined;
  return batchFailure(r, lines);
}

function batchFailure(r: CommandResult, lines: string[]): BatchFailure {
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  const line = m ? Number(m[1]) - 1 : -1;
  return { line, command: lines[line] ?? lines.join('; '), cause: failureText(r) };
}

/** Whether a link exists in the current netns, without an exec: /proc/sys/net follows the caller's netns. */
export function linkExists(name: string): boolean {
  return existsSync(`/proc/sys/net/ipv4/conf/${name}`);
}

/** Deletes a link in the current netns; a link that is already gone is success. */
export async function deleteLink(name: string, ip: IpRunner = execIpRunner): Promise<void> {
  if (!linkExists(name)) return;
  const r = await ip.run([`link del ${name}`]);
  if (r.code !== 0 && linkExists(name)) throw new Error(`failed to delete link ${name}: ${failureText(r)}`);
}

/** Writes a sysctl of the current netns (e.g. net/ipv4/ip_forward). */
export function writeSysctl(key: string, value: string): void {
  writeFileSync(`/proc/sys/${key}`, value);
}

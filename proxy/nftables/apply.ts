// Thin nftables applier: one `nft -f -` transaction per sync, and a read-back for tests and
// debugging. Everything else is in render.ts.
import { ProxyError } from '../errors.ts';
import { describeFailedLine, RULESET_TIMEOUT_MS, runCommand, type CommandOptions } from '../run-command.ts';

export type NftApplyOptions = Pick<CommandOptions, 'netns' | 'timeoutMs'>;

/** Applies a script atomically (nft runs a file as one transaction); names the rejected line on failure. */
export async function nftApply(script: string, opts: NftApplyOptions = {}): Promise<void> {
  const r = await runCommand('nft', ['-f', '-'], { timeoutMs: RULESET_TIMEOUT_MS, ...opts, input: script });
  if (r.code === 0) return;
  const m = /^[^:\n]*:(\d+):\d+/m.exec(r.stderr);
  const where = describeFailedLine(script, m ? Number(m[1]) : undefined);
  const first = r.stderr.split('\n').find((l) => l.includes('Error')) ?? r.stderr.trim();
  throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to apply nftables transaction${opts.netns ? ` in netns ${opts.netns}` : ''}: ${first || `exit ${r.code}`}${where}`);
}

/** `nft list table ip TABLE`, or undefined when the table does not exist. */
export async function nftListTable(table = 'weft', opts: NftApplyOptions = {}): Promise<string | undefined> {
  const r = await runCommand('nft', ['list', 'table', 'ip', table], { timeoutMs: RULESET_TIMEOUT_MS, ...opts });
  return r.code === 0 ? r.stdout : undefined;
}

// Thin iptables applier: one `iptables-restore --noflush` per sync, plus the few reads a sync
// needs (existing chains for stale-chain cleanup, the canary). Everything else is in render.ts.
import { ProxyError } from '../errors.ts';
import { describeFailedLine, runCommand, type CommandOptions } from '../run-command.ts';
import { iptablesJumpRules } from './render.ts';
import { topLevelChains } from './chain-names.ts';

export type IptablesApplyOptions = Pick<CommandOptions, 'netns' | 'timeoutMs'>;

/** Applies restore text atomically; on failure throws WEFT_PROXY_APPLY_FAILED naming the rejected line. */
export async function iptablesRestore(text: string, opts: IptablesApplyOptions = {}): Promise<void> {
  const r = await runCommand('iptables-restore', ['--noflush', '-w', '5'], { ...opts, input: text });
  if (r.code === 0) return;
  // The legacy backend names the failing rule's line; the nf_tables backend names the table's COMMIT
  // line and gives the cause in the message.
  const m = /line:? (\d+)/.exec(r.stderr);
  const where = describeFailedLine(text, m ? Number(m[1]) : undefined);
  const cause = r.stderr.split('\n').filter((l) => l && !l.startsWith('Error occurred at line') && !l.startsWith('Try `')).map((l) => l.replace(/^iptables-restore[^:]*: /, '')).join('; ');
  throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to apply iptables rules${opts.netns ? ` in netns ${opts.netns}` : ''}: ${cause || `exit ${r.code}`}${where}`);
}

export async function iptablesSave(table: 'nat' | 'filter' | 'mangle', opts: IptablesApplyOptions = {}): Promise<string> {
  const r = await runCommand('iptables-save', ['-t', table], opts);
  if (r.code !== 0) throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to read iptables table ${table}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Names of the chains in the nat table (for iptablesRestoreFull's stale-chain cleanup). */
export async function iptablesNatChains(opts: IptablesApplyOptions = {}): Promise<string[]> {
  const text = await iptablesSave('nat', opts);
  return text.split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]);
}

/** False when someone flushed the proxy's tables since the last full sync: the next sync must be full. */
export async function iptablesCanaryPresent(prefix = 'WEFT', opts: IptablesApplyOptions = {}): Promise<boolean> {
  const r = await runCommand('iptables', ['-w', '5', '-t', 'mangle', '-S', topLevelChains(prefix).canary], opts);
  return r.code === 0;
}

/** Inserts each jump from a built-in chain unless it is already there (full syncs only). */
export async function ensureIptablesJumps(prefix = 'WEFT', opts: IptablesApplyOptions = {}): Promise<void> {
  for (const j of iptablesJumpRules(prefix)) {
    const check = await runCommand('iptables', ['-w', '5', '-t', j.table, '-C', j.chain, ...j.args], opts);
    if (check.code === 0) continue;
    const add = await runCommand('iptables', ['-w', '5', '-t', j.table, '-I', j.chain, ...j.args], opts);
    if (add.code !== 0) throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to insert jump to ${j.args.at(-1)} in ${j.table} ${j.chain}: ${add.stderr.trim()}`);
  }
}

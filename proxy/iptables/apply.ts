// Thin iptables applier: one `iptables-restore` per sync (flushing for full syncs, --noflush for
// partial ones), plus the few reads a sync needs (the tables to preserve, the canary). Everything
// else is in render.ts and preserve.ts.
import { ProxyError } from '../errors.ts';
import { describeFailedLine, RULESET_TIMEOUT_MS, runCommand, type CommandOptions } from '../run-command.ts';
import { iptablesJumpRules } from './render.ts';
import { topLevelChains } from './chain-names.ts';
import { IPTABLES_TABLES, parseIptablesSave, type IptablesTable, type SavedTable } from './preserve.ts';

export type IptablesApplyOptions = Pick<CommandOptions, 'netns' | 'timeoutMs'>;

/**
 * Applies restore text atomically; on failure throws WEFT_PROXY_APPLY_FAILED naming the rejected line.
 * `flush`: replace every table the text names (see preserve.ts) instead of only the chains it names.
 */
export async function iptablesRestore(text: string, opts: IptablesApplyOptions & { flush?: boolean } = {}): Promise<void> {
  const { flush, ...run } = opts;
  const r = await runCommand('iptables-restore', [...(flush ? [] : ['--noflush']), '-w', '5'], { timeoutMs: RULESET_TIMEOUT_MS, ...run, input: text });
  if (r.code === 0) return;
  // The legacy backend names the failing rule's line; the nf_tables backend names the table's COMMIT
  // line and gives the cause in the message.
  const m = /line:? (\d+)/.exec(r.stderr);
  const where = describeFailedLine(text, m ? Number(m[1]) : undefined);
  const cause = r.stderr.split('\n').filter((l) => l && !l.startsWith('Error occurred at line') && !l.startsWith('Try `')).map((l) => l.replace(/^iptables-restore[^:]*: /, '')).join('; ');
  throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to apply iptables rules${opts.netns ? ` in netns ${opts.netns}` : ''}: ${cause || `exit ${r.code}`}${where}`);
}

export async function iptablesSave(table: 'nat' | 'filter' | 'mangle', opts: IptablesApplyOptions = {}): Promise<string> {
  const r = await runCommand('iptables-save', ['-t', table], { timeoutMs: RULESET_TIMEOUT_MS, ...opts });
  if (r.code !== 0) throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to read iptables table ${table}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** The tables a full sync rewrites, as they are now, without the rules of `prefix`'s chains. */
export async function iptablesSaveTables(prefix: string, opts: IptablesApplyOptions = {}): Promise<Map<IptablesTable, SavedTable>> {
  const saved = new Map<IptablesTable, SavedTable>();
  for (const table of IPTABLES_TABLES) saved.set(table, parseIptablesSave(await iptablesSave(table, opts), prefix));
  return saved;
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

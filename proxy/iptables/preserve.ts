// A full sync as ONE flushing iptables-restore that keeps everything that is not weft's. Pure.
//
// Why: with the nf_tables backend, `iptables-restore --noflush` spends seconds per thousand rules
// that jump to user chains (10 s for weft's 1k-service nat table, minutes at 5k), while a flushing
// restore of the same text takes under a second. A flushing restore rewrites whole tables, so the
// other programs' chains and rules, read with `iptables-save -t <table>`, are written back verbatim.
import type { IptablesRuleset } from './render.ts';
import { iptablesJumpRules, iptablesRestoreFull } from './render.ts';

/** The tables a full sync writes (iptablesRestoreFull's sections). */
export const IPTABLES_TABLES = ['mangle', 'filter', 'nat'] as const;
export type IptablesTable = (typeof IPTABLES_TABLES)[number];

export interface SavedTable {
  /** `:NAME POLICY [p:b]` lines in saved order; POLICY is `-` for user chains. */
  chains: { name: string; line: string; builtin: boolean }[];
  /** `-A CHAIN ...` lines in saved order. */
  rules: { chain: string; target: string | undefined; line: string }[];
  /**
   * Why the table cannot be written back verbatim (iptables-save warned about rules or chains it
   * cannot express, e.g. ones added with `nft`), or undefined.
   */
  unrestorable?: string;
}

/**
 * Parses the output of `iptables-save -t <table>` (one table). Rules of chains named `skipPrefix-…`
 * are left out unparsed: a re-sync reads back weft's whole ruleset only to drop it.
 */
export function parseIptablesSave(text: string, skipPrefix?: string): SavedTable {
  const skip = skipPrefix === undefined ? undefined : `-A ${skipPrefix}-`;
  const saved: SavedTable = { chains: [], rules: [] };
  for (const line of text.split('\n')) {
    if (line === '' || line === 'COMMIT' || line.startsWith('*') || /^# (Generated|Completed) /.test(line)) continue;
    if (line.startsWith('#') || line.includes('[unsupported revision]')) {
      saved.unrestorable ??= line.replace(/^#\s*/, '');
    } else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(' ');
      saved.chains.push({ name, line, builtin: policy !== '-' });
    } else if (line.startsWith('-A ')) {
      if (skip !== undefined && line.startsWith(skip)) continue;
      const words = splitRule(line);
      saved.rules.push({ chain: words[1], target: targetOf(words), line });
    } else {
      saved.unrestorable ??= `unexpected line: ${line}`;
    }
  }
  return saved;
}

/** Words of a saved rule; iptables-save double-quotes words with spaces and escapes `"` inside. */
function splitRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:\\.|[^"\\])*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2]);
  return out;
}

function targetOf(words: string[]): string | undefined {
  for (let i = words.length - 2; i >= 2; i--) if (words[i] === '-j' || words[i] === '-g') return words[i + 1];
  return undefined;
}

function quoteWord(word: string): string {
  return /[\s"]/.test(word) ? `"${word.replace(/"/g, '\\"')}"` : word;
}

/** Weft's jumps from built-in chains as restore lines, per table, in the order ensureIptablesJumps' inserts leave them. */
export function iptablesJumpLines(prefix: string): Map<IptablesTable, string[]> {
  const out = new Map<IptablesTable, string[]>();
  for (const j of [...iptablesJumpRules(prefix)].reverse()) {
    const lines = out.get(j.table) ?? [];
    lines.push(`-A ${j.chain} ${j.args.map(quoteWord).join(' ')}`);
    out.set(j.table, lines);
  }
  return out;
}

/**
 * Restore text (for a restore WITHOUT --noflush) of every table weft uses: per table the foreign
 * chains (built-in ones with their policies) and rules as saved, weft's jumps at the head of the
 * built-in chains, and weft's full ruleset. Dropped from the saved text: weft's chains (its old
 * chains vanish with the flush), rules in built-in chains that jump into weft's chains (stale or
 * current jumps; the current ones are re-emitted), and rules of foreign chains that jump to a weft
 * chain the new ruleset does not define (the restore would reject them).
 */
export function iptablesRestoreFlushing(ruleset: IptablesRuleset, saved: ReadonlyMap<IptablesTable, SavedTable>): string {
  const own = (chain: string): boolean => chain.startsWith(`${ruleset.prefix}-`);
  const jumps = iptablesJumpLines(ruleset.prefix);
  const sections = iptablesRestoreFull(ruleset).split(/^COMMIT\n/m);
  const out: string[] = [];
  for (const section of sections) {
    if (section === '') continue;
    const header = section.indexOf('\n');
    const table = section.slice(1, header) as IptablesTable;
    const body = section.slice(header + 1);
    const defined = new Set(body.split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]));
    const t = saved.get(table) ?? { chains: [], rules: [] };
    const builtin = new Set(t.chains.filter((c) => c.builtin).map((c) => c.name));
    const foreignRules = t.rules.filter((r) => {
      if (own(r.chain)) return false;
      if (r.target === undefined || !own(r.target)) return true;
      return !builtin.has(r.chain) && defined.has(r.target);
    });
    out.push(
      `*${table}`,
      ...t.chains.filter((c) => !own(c.name)).map((c) => c.line),
      body.replace(/\n$/, ''),
      ...(jumps.get(table) ?? []),
      ...foreignRules.map((r) => r.line),
      'COMMIT',
    );
  }
  out.push('');
  return out.join('\n');
}

// iptables backend of the agent: one `iptables-restore` per sync. Partial syncs: --noflush, the
// top-level chains (long ones edited rule by rule) and only the chains of changed service ports
// (KEP-3453), rendered only for changed ones. Full syncs: one flushing restore of mangle, filter and nat that writes back the
// other programs' chains and rules as iptables-save showed them (preserve.ts), weft's jumps from the
// built-in chains, the canary chain and weft's whole ruleset; weft's stale chains vanish with the flush.
import { runCommand } from '../run-command.ts';
import { ProxyError } from '../errors.ts';
import { ensureIptablesJumps, iptablesCanaryPresent, iptablesRestore, iptablesSave, iptablesSaveTables } from '../iptables/apply.ts';
import { iptablesRestoreFlushing } from '../iptables/preserve.ts';
import {
  createIptablesRenderCache, iptablesJumpRules, iptablesRestoreFull, iptablesRestorePartial, renderIptables, type IptablesRenderOptions, type IptablesRuleset,
} from '../iptables/render.ts';
import { countLines, type ApplyText, type Dataplane } from './dataplane.ts';

export interface IptablesDataplaneConfig extends IptablesRenderOptions {
  netns?: string;
}

export function createIptablesDataplane(config: IptablesDataplaneConfig, deps: { apply?: ApplyText } = {}): Dataplane {
  const prefix = config.chainPrefix ?? 'WEFT';
  const opts = { netns: config.netns };
  const apply = deps.apply ?? ((text: string, o?: { flush: boolean }) => iptablesRestore(text, { ...opts, flush: o?.flush }));
  const cache = createIptablesRenderCache();
  let previous: IptablesRuleset | undefined;

  function written(text: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const part of text.split('COMMIT')) {
      const table = /\*(\w+)/.exec(part)?.[1];
      if (table) out[table] = countLines(part.slice(part.indexOf('\n') + 1), '-A ');
    }
    return out;
  }

  return {
    mode: 'iptables',
    async sync(state, full) {
      const ruleset = renderIptables(state, config, cache);
      const doFull = full || previous === undefined;
      const before = previous;
      previous = undefined;
      let text: string;
      if (!doFull) {
        text = iptablesRestorePartial(ruleset, before as IptablesRuleset);
        await apply(text);
      } else {
        const saved = await iptablesSaveTables(prefix, opts);
        if ([...saved.values()].every((t) => t.unrestorable === undefined)) {
          text = iptablesRestoreFlushing(ruleset, saved);
          await apply(text, { flush: true });
        } else {
          // Tables iptables-save cannot print faithfully (rules added with nft) must not be flushed:
          // the slow --noflush path, which leaves foreign rules alone.
          text = iptablesRestoreFull(ruleset, (saved.get('nat')?.chains ?? []).map((c) => c.name));
          await apply(text);
          await ensureIptablesJumps(prefix, opts);
        }
      }
      previous = ruleset;
      return { full: doFull, written: written(text) };
    },
    rulesPresent() {
      return iptablesCanaryPresent(prefix, opts);
    },
    async cleanup() {
      // Jumps first (a chain cannot be deleted while referenced), each as often as it appears.
      for (const j of iptablesJumpRules(prefix)) {
        for (let i = 0; i < 10; i++) {
          const r = await runCommand('iptables', ['-w', '5', '-t', j.table, '-D', j.chain, ...j.args], opts);
          if (r.code !== 0) break;
        }
      }
      const sections: string[] = [];
      for (const table of ['mangle', 'filter', 'nat'] as const) {
        const chains = (await iptablesSave(table, opts)).split('\n').filter((l) => l.startsWith(`:${prefix}-`)).map((l) => l.slice(1).split(' ')[0]);
        if (chains.length === 0) continue;
        sections.push(`*${table}`, ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT');
      }
      if (sections.length > 0) {
        try {
          await iptablesRestore(`${sections.join('\n')}\n`, opts);
        } catch (err) {
          throw new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to remove ${prefix} chains: ${(err as Error).message}`);
        }
      }
      previous = undefined;
    },
  };
}

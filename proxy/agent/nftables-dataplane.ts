// nftables backend of the agent: renders with per-service-port fragments cached across syncs and
// sends `nft -f` a full replacement of weft's table, or only the changed elements and chains.
import { runCommand } from '../run-command.ts';
import { nftApply } from '../nftables/apply.ts';
import {
  countElements, createNftRenderCache, nftFullScript, nftIncrementalScript, renderNftables,
  type NftablesRenderOptions, type NftElementCounts, type NftRuleset,
} from '../nftables/render.ts';
import { countLines, type ApplyText, type Dataplane } from './dataplane.ts';

export interface NftablesDataplaneConfig extends NftablesRenderOptions {
  netns?: string;
}

export function createNftablesDataplane(config: NftablesDataplaneConfig, deps: { apply?: ApplyText } = {}): Dataplane {
  const table = config.table ?? 'weft';
  const apply = deps.apply ?? ((text: string) => nftApply(text, { netns: config.netns }));
  const cache = createNftRenderCache();
  let previous: NftRuleset | undefined;
  let counts: NftElementCounts = new Map();
  return {
    mode: 'nftables',
    async sync(state, full) {
      const ruleset = renderNftables(state, config, cache);
      const doFull = full || previous === undefined;
      const script = doFull ? nftFullScript(ruleset) : nftIncrementalScript(ruleset, previous as NftRuleset, counts);
      previous = undefined;
      if (script.trim() !== '') await apply(script);
      previous = ruleset;
      if (doFull) counts = countElements(ruleset);
      return { full: doFull, written: { [`ip ${table}`]: countLines(script, 'add ') } };
    },
    async rulesPresent() {
      const r = await runCommand('nft', ['list', 'chain', 'ip', table, 'nat-prerouting'], { netns: config.netns });
      return r.code === 0;
    },
    async cleanup() {
      await nftApply(`add table ip ${table}\ndelete table ip ${table}\n`, { netns: config.netns });
      previous = undefined;
    },
  };
}

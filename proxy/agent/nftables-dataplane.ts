// nftables backend of the agent: renders with per-service-port fragments cached across syncs and
// sends `nft -f` only the changed elements and chains. A full sync loads the elements over netlink
// (proxy/nftables/netlink/: nft's text parser costs ~10 µs per element) as a new generation of the
// sets and maps beside the live one, then switches to it in one small `nft -f` transaction; when
// the netlink helper cannot be built or fails, full syncs fall back to one `nft -f` replacing the table.
import { ProxyError } from '../errors.ts';
import { runCommand } from '../run-command.ts';
import { nftApply } from '../nftables/apply.ts';
import { encodeElementBatches, type NftBatches } from '../nftables/netlink/encode.ts';
import { buildNftBatchHelper, sendNftBatches } from '../nftables/netlink/send.ts';
import {
  countElements, createNftRenderCache, nftElementSets, nftFullScript, nftIncrementalScript, nftObjectNames, nftStageScript, nftSwitchScript, renderNftables,
  type NftablesRenderOptions, type NftElementCounts, type NftObjectNames, type NftRuleset,
} from '../nftables/render.ts';
import { countLines, type ApplyText, type Dataplane } from './dataplane.ts';

export interface NftablesDataplaneConfig extends NftablesRenderOptions {
  netns?: string;
  /** Load full syncs' elements over netlink (default true); false keeps every sync on `nft -f`. */
  netlink?: boolean;
}

/** Sends encoded element batches (injectable so tests and benchmarks can observe or fail them). */
export type SendBatches = (batches: NftBatches) => Promise<void>;

/**
 * The steps of a sync and how long each took (ms of wall time), in order: render, then `diff` +
 * `apply` (incremental), `stage` + `elements` + `switch` (full over netlink: `encode` is the part
 * of `elements` spent encoding, while the kernel loads the batch before), or `script` + `apply`
 * (full by nft -f). A first full sync also lists the table's chains, at the same time as it renders.
 */
export type SyncStep = 'render' | 'diff' | 'apply' | 'stage' | 'encode' | 'elements' | 'switch' | 'script';

export interface NftablesDataplaneDeps {
  apply?: ApplyText;
  sendBatches?: SendBatches;
  log?: (message: string) => void;
  /** Called once per step of each sync, for benchmarks and tracing. */
  step?: (step: SyncStep, ms: number) => void;
}

export function createNftablesDataplane(config: NftablesDataplaneConfig, deps: NftablesDataplaneDeps = {}): Dataplane {
  const table = config.table ?? 'weft';
  const apply = deps.apply ?? ((text: string) => nftApply(text, { netns: config.netns }));
  const log = deps.log ?? ((m: string) => process.stderr.write(`weft agent: ${m}\n`));
  let send: SendBatches | undefined = deps.sendBatches;
  let netlink = config.netlink !== false;
  // Compiled (once per install) while the agent gets its first state, not during its first sync.
  const helper = netlink && !send ? buildNftBatchHelper() : undefined;
  helper?.catch(() => undefined);
  const cache = createNftRenderCache();
  let previous: NftRuleset | undefined;
  let counts: NftElementCounts = new Map();
  let stepStart = 0;
  const step = (name: SyncStep): void => {
    const now = performance.now();
    deps.step?.(name, now - stepStart);
    stepStart = now;
  };

  const disableNetlink = (cause: string): void => {
    if (!netlink) return;
    netlink = false;
    log(`nftables netlink loading unavailable (${cause}): full syncs use nft -f`);
  };
  /** What the table holds, when known without reading its elements back: the last ruleset applied, or nothing. */
  const liveObjects = async (applied: NftRuleset | undefined): Promise<NftObjectNames | undefined> => {
    if (applied) return nftObjectNames(applied);
    const r = await runCommand('nft', ['-j', 'list', 'chains', 'ip'], { netns: config.netns });
    if (r.code !== 0) return undefined;
    const listed = JSON.parse(r.stdout) as { nftables?: { chain?: { table?: string } }[] };
    return listed.nftables?.some((o) => o.chain?.table === table) ? undefined : { chains: new Set(), sets: new Map() };
  };
  /**
   * Stage, load the elements, switch: the number of elements loaded, or undefined when the table
   * must be replaced by `nft -f` instead. Until the switch commits, packets see the live generation
   * only; a failure anywhere before it leaves that generation live (the caller then replaces the table).
   * `whileStaging` runs while `nft -f` stages.
   */
  const netlinkFullSync = async (ruleset: NftRuleset, live: NftObjectNames, whileStaging: () => void): Promise<number | undefined> => {
    if (!send) {
      try {
        const binary = await (helper as Promise<string>);
        send = (batches) => sendNftBatches(binary, batches, { netns: config.netns });
      } catch (err) {
        disableNetlink((err as Error).message);
        return undefined;
      }
    }
    const staging = apply(nftStageScript(ruleset));
    try {
      whileStaging();
    } finally {
      await staging;
    }
    step('stage');
    const encoded = encodeElementBatches(table, nftElementSets(ruleset));
    let encodeMs = 0;
    const batches = function* timed(): Generator<Buffer> {
      for (const it = encoded.batches[Symbol.iterator](); ;) {
        const t = performance.now();
        const next = it.next();
        encodeMs += performance.now() - t;
        if (next.done) return;
        yield next.value;
      }
    };
    try {
      await send({ ...encoded, batches: batches() });
    } catch (err) {
      // The kernel refusing elements (a table changed behind the agent's back) costs this sync its
      // fast path; a helper that cannot run costs every later one.
      if (err instanceof ProxyError && err.code === 'WEFT_PROXY_APPLY_FAILED') throw err;
      disableNetlink((err as Error).message);
      return undefined;
    }
    deps.step?.('encode', encodeMs);
    step('elements');
    await apply(nftSwitchScript(ruleset, live));
    step('switch');
    return encoded.elements;
  };

  return {
    mode: 'nftables',
    async sync(state, full) {
      stepStart = performance.now();
      const doFull = full || previous === undefined;
      // A full sync over netlink builds the other generation; other syncs keep the live one.
      const generation = !netlink ? previous?.generation : !doFull ? previous?.generation : previous?.generation === 'a' ? 'b' : 'a';
      // Whether the table exists, asked while rendering when the last sync did not leave it known.
      const listing = doFull && netlink && generation ? liveObjects(previous) : undefined;
      let ruleset: NftRuleset;
      try {
        ruleset = renderNftables(state, { ...config, generation }, cache);
      } catch (err) {
        await listing?.catch(() => undefined);
        throw err;
      }
      step('render');
      const before = previous;
      previous = undefined;
      let written: number;
      let fullCounts: NftElementCounts | undefined;
      if (!doFull) {
        const script = nftIncrementalScript(ruleset, before as NftRuleset, counts);
        step('diff');
        if (script.trim() !== '') await apply(script);
        step('apply');
        written = countLines(script, 'add ');
      } else {
        const live = await listing;
        let loaded: number | undefined;
        if (live) {
          try {
            loaded = await netlinkFullSync(ruleset, live, () => { fullCounts = countElements(ruleset); });
          } catch (err) {
            log(`netlink full sync failed (${(err as Error).message}): replacing the table with nft -f`);
          }
        }
        if (loaded !== undefined) written = ruleset.base.length + loaded;
        else {
          stepStart = performance.now();
          const script = nftFullScript(ruleset);
          step('script');
          await apply(script);
          step('apply');
          written = countLines(script, 'add ');
        }
      }
      previous = ruleset;
      if (doFull) counts = fullCounts ?? countElements(ruleset);
      return { full: doFull, written: { [`ip ${table}`]: written } };
    },
    async rulesPresent() {
      const r = await runCommand('nft', ['list', 'chain', 'ip', table, 'nat-prerouting'], { netns: config.netns });
      return r.code === 0;
    },
    async cleanup() {
      // Deleting the table removes every generation of its sets and maps with it.
      await nftApply(`add table ip ${table}\ndelete table ip ${table}\n`, { netns: config.netns });
      previous = undefined;
    },
  };
}

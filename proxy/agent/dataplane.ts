// The one interface every proxy backend implements for the agent: render the whole desired state
// and apply what differs from the last applied state in one transaction. A backend forgets what
// it applied when an apply fails, so its next sync is a full one.
import type { ProxyState } from '../model/types.ts';

export type ProxyMode = 'iptables' | 'nftables';

export interface SyncOutcome {
  full: boolean;
  /** Lines (rules, chains, elements) written by this sync, by table. */
  written: Record<string, number>;
}

/**
 * Applies one ruleset text atomically; injectable so tests can make applies fail. `flush`: the text
 * replaces whole tables (iptables full syncs, see proxy/iptables/preserve.ts).
 */
export type ApplyText = (text: string, options?: { flush: boolean }) => Promise<void>;

export interface Dataplane {
  readonly mode: ProxyMode;
  /** Full when asked or when nothing is known to be applied; throws WEFT_PROXY_APPLY_FAILED. */
  sync(state: ProxyState, full: boolean): Promise<SyncOutcome>;
  /** False when the rules were removed behind the proxy's back (canary chain gone). */
  rulesPresent(): Promise<boolean>;
  /** Removes every rule, chain and table of the proxy, including the jumps into them. */
  cleanup(): Promise<void>;
}

export function countLines(text: string, prefix: string): number {
  let n = 0;
  for (let i = text.indexOf(prefix); i !== -1; i = text.indexOf(`\n${prefix}`, i + 1)) n++;
  return n;
}

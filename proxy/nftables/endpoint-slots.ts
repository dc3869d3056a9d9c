// Stable slot ranges for nftables endpoint choice. Each dispatch chain picks an endpoint with
// `numgen random mod N offset BASE` looked up in a shared map whose elements BASE..BASE+N-1 name
// the endpoints. A chain keeps its range across syncs (so an unchanged service is not rewritten);
// ranges are SLOT_STRIDE wide, so a chain can have up to SLOT_STRIDE endpoints.
export const SLOT_STRIDE = 1 << 14;
/** Slot ranges are spread over this many maps per protocol (see render.ts for why). */
export const ENDPOINT_MAP_SHARDS = 256;
const MAX_RANGES = Math.floor(2 ** 32 / SLOT_STRIDE);

export function slotMapName(protocol: string, shard: number): string {
  return `endpoints-${protocol}-${shard}`;
}

export interface SlotAllocator {
  /** First slot of the chain's range (allocated on first use). */
  base(chain: string, endpoints: number): number;
  /** Which map of its protocol holds the chain's slots. */
  shard(chain: string): number;
  /** Frees the ranges of chains not in `live`. */
  retain(live: ReadonlySet<string>): void;
}

export function createSlotAllocator(): SlotAllocator {
  const index = new Map<string, number>();
  const free: number[] = [];
  let next = 0;
  const indexOf = (chain: string): number => {
    let i = index.get(chain);
    if (i === undefined) {
      i = free.pop() ?? next++;
      if (i >= MAX_RANGES) throw new Error(`failed to allocate endpoint slots for ${chain}: all ${MAX_RANGES} ranges in use`);
      index.set(chain, i);
    }
    return i;
  };
  return {
    base(chain, endpoints) {
      if (endpoints > SLOT_STRIDE) throw new Error(`failed to allocate endpoint slots for ${chain}: ${endpoints} endpoints exceed ${SLOT_STRIDE}`);
      return indexOf(chain) * SLOT_STRIDE;
    },
    shard(chain) {
      return indexOf(chain) % ENDPOINT_MAP_SHARDS;
    },
    retain(live) {
      for (const [chain, i] of index) {
        if (!live.has(chain)) {
          index.delete(chain);
          free.push(i);
        }
      }
    },
  };
}

// The subnet allocator, written once over LeaseStore: read the leases, decide, then write with
// compare-and-swap; a conflict means another writer won the race, so read again and retry.
// Correctness (never two nodes on one subnet) comes from the store's atomic claims, not from the
// decision, so any number of allocators in any number of processes may run at once. All
// allocators sharing a store must use the same cluster CIDR and node mask.

import { setTimeout as sleep } from 'node:timers/promises';
import { broadcast, containsCidr, formatCidr, overlaps, parseCidr, subnetAt, subnetCount } from '../model/cidr.ts';
import type { Cidr } from '../model/cidr.ts';
import { isLeaseError, leaseError } from './errors.ts';
import { checkNodeName, toLease } from './lease.ts';
import type { Lease, LeaseAttrs, LeaseStore, StoredLease } from './lease.ts';

export const DEFAULT_CLUSTER_CIDR = '10.244.0.0/16';
export const DEFAULT_NODE_MASK = 24;
/** flannel's subnet lease TTL; node agents renew well before it runs out. */
export const DEFAULT_LEASE_TTL_MS = 24 * 60 * 60 * 1000;

export interface AllocatorOptions {
  clusterCIDR: string;
  /** Prefix length of each node's subnet (e.g. 24). */
  nodeMask: number;
  ttlMs?: number;
  now?: () => number;
  /** Compare-and-swap retries before giving up under contention (default 64). */
  maxAttempts?: number;
}

export interface AcquireOptions {
  owner: string;
  /** A pre-set node.spec.podCIDR: used if free, an error if held by another live lease. */
  podCIDR?: string;
  attrs?: LeaseAttrs;
}

export interface SubnetAllocator {
  /** The node's lease: its existing one (renewed) on restart, else a new subnet. */
  acquire(node: string, opts: AcquireOptions): Promise<Lease>;
  /** Extends the node's lease; the owner must match. */
  renew(node: string, owner: string): Promise<Lease>;
  /** Frees the node's subnet; false when it held none (release is idempotent). */
  release(node: string): Promise<boolean>;
  list(): Promise<Lease[]>;
  /** Level-style: the full current list after each change. Returns the unsubscribe function. */
  watch(onChange: (leases: Lease[]) => void): () => void;
}

/** After a lost race, pick randomly among this many free subnets so racers spread out. */
const SPREAD = 16;

export function createSubnetAllocator(store: LeaseStore, opts: AllocatorOptions): SubnetAllocator {
  let cluster: Cidr;
  try {
    cluster = parseCidr(opts.clusterCIDR);
  } catch (err) {
    throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'cluster CIDR', value: String(opts.clusterCIDR), cause: (err as Error).message });
  }
  const mask = opts.nodeMask;
  if (!Number.isInteger(mask) || mask < cluster.prefix || mask > 30) {
    throw leaseError('WEFT_LEASE_INVALID_CONFIG', {
      what: 'node mask',
      value: String(mask),
      cause: `must be an integer from ${cluster.prefix} (the cluster CIDR prefix) to 30`,
    });
  }
  const ttlMs = opts.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  if (!(ttlMs > 0)) throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'TTL', value: String(ttlMs), cause: 'must be positive' });
  const now = opts.now ?? Date.now;
  const maxAttempts = opts.maxAttempts ?? 64;
  const count = subnetCount(cluster, mask);
  const slot = 2 ** (32 - mask);
  const clusterText = formatCidr(cluster);

  /** The subnet's index when it is one of the cluster's /mask subnets, else undefined. */
  function indexOf(subnet: string): number | undefined {
    try {
      const c = parseCidr(subnet);
      return c.prefix === mask && containsCidr(cluster, c) ? (c.network - cluster.network) / slot : undefined;
    } catch {
      return undefined;
    }
  }

  function checkPodCIDR(node: string, podCIDR: string): number {
    let c: Cidr;
    try {
      c = parseCidr(podCIDR);
    } catch (err) {
      throw leaseError('WEFT_LEASE_POD_CIDR_INVALID', { node, podCIDR, cause: (err as Error).message });
    }
    if (!containsCidr(cluster, c)) {
      throw leaseError('WEFT_LEASE_POD_CIDR_INVALID', { node, podCIDR, cause: `outside the cluster CIDR ${clusterText}` });
    }
    if (c.prefix !== mask) {
      throw leaseError('WEFT_LEASE_POD_CIDR_INVALID', { node, podCIDR, cause: `node subnets are /${mask}, not /${c.prefix}` });
    }
    return (c.network - cluster.network) / slot;
  }

  /** Which lease holds each subnet index (a lease of another size marks every index it overlaps). */
  function occupancy(leases: StoredLease[]): Map<number, StoredLease> {
    const held = new Map<number, StoredLease>();
    for (const l of leases) {
      let c: Cidr;
      try {
        c = parseCidr(l.subnet, false);
      } catch {
        continue;
      }
      if (!overlaps(cluster, c)) continue;
      const lo = Math.max(c.network, cluster.network);
      const hi = Math.min(broadcast(c), broadcast(cluster));
      for (let i = Math.floor((lo - cluster.network) / slot); i <= Math.floor((hi - cluster.network) / slot); i++) held.set(i, l);
    }
    return held;
  }

  function pickFree(held: Map<number, StoredLease>, spread: boolean): number | undefined {
    const free: number[] = [];
    for (let i = 0; i < count && free.length < (spread ? SPREAD : 1); i++) if (!held.has(i)) free.push(i);
    return free.length ? free[Math.floor(Math.random() * free.length)] : undefined;
  }

  /** The expired lease to reclaim: the one that expired first. */
  function pickExpired(held: Map<number, StoredLease>, at: number): number | undefined {
    let best: number | undefined;
    for (const [i, l] of held) if (l.expiresAt <= at && (best === undefined || l.expiresAt < held.get(best)!.expiresAt)) best = i;
    return best;
  }

  /** Runs `step` until it returns without a store conflict. */
  async function retrying<T>(verb: string, node: string, step: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      try {
        return await step(attempt);
      } catch (err) {
        if (!isLeaseError(err, 'WEFT_LEASE_CONFLICT')) throw err;
        // Desynchronize racers so the next round has a different winner order.
        await sleep(Math.random() * Math.min(2 + attempt, 20));
      }
    }
    throw leaseError('WEFT_LEASE_CONTENDED', { verb, node, attempts: maxAttempts });
  }

  return {
    async acquire(node, { owner, podCIDR, attrs }) {
      checkNodeName(node);
      if (typeof owner !== 'string' || owner === '') {
        throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'owner', value: String(owner), cause: 'must be a non-empty string' });
      }
      const wanted = podCIDR === undefined ? undefined : checkPodCIDR(node, podCIDR);
      return retrying('acquire', node, async (attempt) => {
        const leases = await store.list();
        const at = now();
        const mine = leases.find((l) => l.node === node);
        const fresh = (subnet: string): Lease => ({ node, subnet, owner, expiresAt: at + ttlMs, attrs: { ...(attrs ?? mine?.attrs) } });
        const mineIndex = mine && indexOf(mine.subnet);
        if (mine && mineIndex !== undefined) {
          if (podCIDR !== undefined && mineIndex !== wanted) {
            throw leaseError('WEFT_LEASE_SUBNET_MISMATCH', { node, subnet: mine.subnet, podCIDR });
          }
          return toLease(await store.update(fresh(mine.subnet), mine));
        }
        // A lease from an older cluster CIDR or mask cannot be kept: free it and allocate anew.
        if (mine) await store.delete(mine);
        const held = occupancy(leases.filter((l) => l !== mine));
        let index = wanted;
        if (index !== undefined) {
          const holder = held.get(index);
          if (holder && holder.expiresAt > at) {
            throw leaseError('WEFT_LEASE_SUBNET_TAKEN', { node, subnet: formatCidr(subnetAt(cluster, mask, index)), holder: holder.node });
          }
        } else {
          // Never-leased subnets first, so an expired node coming back still finds its own.
          index = pickFree(held, attempt > 0) ?? pickExpired(held, at);
          if (index === undefined) throw leaseError('WEFT_LEASE_EXHAUSTED', { node, clusterCIDR: clusterText, nodeMask: mask, count });
        }
        return toLease(await store.create(fresh(formatCidr(subnetAt(cluster, mask, index))), held.get(index)));
      });
    },

    async renew(node, owner) {
      checkNodeName(node);
      return retrying('renew', node, async () => {
        const cur = await store.get(node);
        if (!cur) throw leaseError('WEFT_LEASE_NOT_FOUND', { verb: 'renew', node });
        if (cur.owner !== owner) throw leaseError('WEFT_LEASE_OWNER_MISMATCH', { verb: 'renew', node, owner, holder: cur.owner });
        return toLease(await store.update({ ...toLease(cur), expiresAt: now() + ttlMs }, cur));
      });
    },

    async release(node) {
      checkNodeName(node);
      return retrying('release', node, async () => {
        const cur = await store.get(node);
        if (!cur) return false;
        await store.delete(cur);
        return true;
      });
    },

    async list() {
      return (await store.list()).map(toLease);
    },

    watch(onChange) {
      return store.watch((leases) => onChange(leases.map(toLease)));
    },
  };
}

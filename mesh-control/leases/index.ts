// Node subnet leases: the cluster CIDR split into one subnet per node, held by leases in an
// embedded file store (one node, or nodes sharing a directory) or in etcd (many nodes).

import { leaseError } from './errors.ts';
import { checkNodeName } from './lease.ts';
import type { LeaseStore } from './lease.ts';
import { createFileLeaseStore, readNodeSubnet } from './file-store.ts';
import { createEtcdLeaseStore, DEFAULT_ETCD_PREFIX } from './etcd-store.ts';

export { createSubnetAllocator, DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_MASK, DEFAULT_LEASE_TTL_MS } from './allocator.ts';
export type { SubnetAllocator, AllocatorOptions, AcquireOptions } from './allocator.ts';
export type { Lease, LeaseAttrs, LeaseStore, StoredLease } from './lease.ts';
export { LeaseError, isLeaseError } from './errors.ts';
export type { LeaseErrorCode } from './errors.ts';
export { createFileLeaseStore, createEtcdLeaseStore, DEFAULT_ETCD_PREFIX };

export const DEFAULT_LEASE_DIR = '/var/lib/weft/leases';

export interface LeaseSource {
  /** File store directory (default /var/lib/weft/leases when no etcd endpoints are given). */
  dir?: string;
  /** etcd client URLs, tried in order; the first reachable one serves. */
  etcdEndpoints?: string[];
  /** Key prefix in etcd (default "/weft/leases/"), so clusters or tests can share one etcd. */
  etcdPrefix?: string;
}

function pick(source: LeaseSource): { kind: 'file'; dir: string } | { kind: 'etcd'; endpoints: string[]; prefix: string } {
  const endpoints = source.etcdEndpoints ?? [];
  if (endpoints.length > 0 && source.dir !== undefined) {
    throw leaseError('WEFT_LEASE_INVALID_CONFIG', {
      what: 'source',
      value: `dir=${source.dir} etcdEndpoints=${endpoints.join(',')}`,
      cause: 'give either a lease directory or etcd endpoints, not both',
    });
  }
  if (endpoints.length > 0) return { kind: 'etcd', endpoints, prefix: source.etcdPrefix ?? DEFAULT_ETCD_PREFIX };
  return { kind: 'file', dir: source.dir ?? DEFAULT_LEASE_DIR };
}

export function openLeaseStore(source: LeaseSource): LeaseStore {
  const s = pick(source);
  return s.kind === 'file' ? createFileLeaseStore({ dir: s.dir }) : createEtcdLeaseStore({ endpoints: s.endpoints, prefix: s.prefix });
}

/** The subnet (CIDR text) the node currently holds, or undefined. Fast: one small read. */
export async function lookupNodeSubnet(source: LeaseSource, node: string): Promise<string | undefined> {
  checkNodeName(node);
  const s = pick(source);
  if (s.kind === 'file') return readNodeSubnet(s.dir, node);
  const store = createEtcdLeaseStore({ endpoints: s.endpoints, prefix: s.prefix });
  try {
    return (await store.get(node))?.subnet;
  } finally {
    await store.close();
  }
}

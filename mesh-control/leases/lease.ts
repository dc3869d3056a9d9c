// The lease record and the store interface both backends implement. The store knows nothing of
// time or CIDRs: it offers compare-and-swap on (node lease + subnet claim) pairs, which is all the
// allocator needs to stay correct with many writers.

import { leaseError } from './errors.ts';

/** Backend data other nodes need to reach this node's subnet (flannel's PublicIP/BackendData). */
export interface LeaseAttrs {
  underlayIP?: string;
  vtepMAC?: string;
}

export interface Lease {
  node: string;
  /** CIDR text, e.g. "10.244.3.0/24". */
  subnet: string;
  /** Who renews the lease (a node agent instance); informational, checked by renew. */
  owner: string;
  /** Milliseconds since the epoch. An expired lease stays valid until another node reclaims it. */
  expiresAt: number;
  attrs: LeaseAttrs;
}

/** A lease as read from a store; `revision` changes on every write and is never reused. */
export interface StoredLease extends Lease {
  revision: number;
}

export interface LeaseStore {
  get(node: string): Promise<StoredLease | undefined>;
  list(): Promise<StoredLease[]>;
  /**
   * Creates the node's lease and claims its subnet in one atomic step; when `evict` is given the
   * evicted lease (and its claim) is removed in the same step if its revision is unchanged.
   * Throws WEFT_LEASE_CONFLICT when the node already has a lease, the subnet is claimed, or the
   * evicted lease changed.
   */
  create(lease: Lease, evict?: StoredLease): Promise<StoredLease>;
  /**
   * Replaces `prev` (as read) with `lease` if its revision is unchanged, moving the subnet claim
   * when the subnet differs. Throws WEFT_LEASE_CONFLICT otherwise.
   */
  update(lease: Lease, prev: StoredLease): Promise<StoredLease>;
  /** Deletes `prev` (as read) and its subnet claim if its revision is unchanged. */
  delete(prev: StoredLease): Promise<void>;
  /** Level-style: calls back with the full current list soon after subscribing and after each change. */
  watch(onChange: (leases: StoredLease[]) => void): () => void;
  close(): Promise<void>;
}

const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Node names become file names and etcd keys: only Kubernetes DNS-subdomain names are accepted. */
export function checkNodeName(node: string): void {
  if (typeof node !== 'string' || node.length > 253 || !NODE_NAME.test(node)) {
    throw leaseError('WEFT_LEASE_INVALID_NODE', { node: String(node) });
  }
}

/** "10.244.3.0/24" → "10.244.3.0-24": the subnet as a file name or key segment, as flannel does. */
export function subnetKey(subnet: string): string {
  return subnet.replace('/', '-');
}

export function toLease(s: StoredLease): Lease {
  return { node: s.node, subnet: s.subnet, owner: s.owner, expiresAt: s.expiresAt, attrs: { ...s.attrs } };
}

/** Parses a stored record; `where` names the file or key for the error. */
export function decodeLease(text: string, revision: number | undefined, where: string): StoredLease {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw leaseError('WEFT_LEASE_CORRUPT', { path: where, cause: (err as Error).message });
  }
  const r = v as Partial<StoredLease> | null;
  const rev = revision ?? r?.revision;
  if (
    !r || typeof r.node !== 'string' || typeof r.subnet !== 'string' || typeof r.owner !== 'string' ||
    typeof r.expiresAt !== 'number' || typeof rev !== 'number'
  ) {
    throw leaseError('WEFT_LEASE_CORRUPT', { path: where, cause: 'missing node, subnet, owner, expiresAt or revision' });
  }
  return { node: r.node, subnet: r.subnet, owner: r.owner, expiresAt: r.expiresAt, attrs: r.attrs ?? {}, revision: rev };
}

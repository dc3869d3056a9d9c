// The distributed lease store: etcd keys, every write one transaction.
//
//   <prefix>nodes/<node>           the node's lease (JSON); its mod_revision is the lease revision
//   <prefix>subnets/<a.b.c.d-n>    the subnet claim: the holder's node name
//
// A create compares both keys absent (create_revision 0), an update or delete compares the
// node key's mod_revision, and the claim is written in the same transaction, so two nodes can
// never hold one subnet. Expiry lives in the lease value, not in an etcd lease TTL: an expired
// lease stays its node's until another node reclaims it, and a restarting node gets it back.

import { leaseError } from './errors.ts';
import { createEtcdClient } from './etcd-client.ts';
import type { EtcdClient, EtcdCompare, EtcdOp } from './etcd-client.ts';
import { checkNodeName, decodeLease, subnetKey } from './lease.ts';
import type { Lease, LeaseStore, StoredLease } from './lease.ts';

export const DEFAULT_ETCD_PREFIX = '/weft/leases/';

export interface EtcdLeaseStoreOptions {
  endpoints: string[];
  /** Key prefix ending in "/" (default "/weft/leases/"). */
  prefix?: string;
  timeoutMs?: number;
}

export function createEtcdLeaseStore(opts: EtcdLeaseStoreOptions): LeaseStore {
  const prefix = opts.prefix ?? DEFAULT_ETCD_PREFIX;
  if (!prefix.endsWith('/')) {
    throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'etcd prefix', value: prefix, cause: 'must end with "/"' });
  }
  const client: EtcdClient = createEtcdClient({ endpoints: opts.endpoints, timeoutMs: opts.timeoutMs });
  const nodesPrefix = `${prefix}nodes/`;
  const nodeKey = (node: string) => `${nodesPrefix}${node}`;
  const claimKey = (subnet: string) => `${prefix}subnets/${subnetKey(subnet)}`;
  const closers = new Set<() => void>();

  const value = (lease: Lease) =>
    JSON.stringify({ node: lease.node, subnet: lease.subnet, owner: lease.owner, expiresAt: lease.expiresAt, attrs: lease.attrs });

  async function listAt(): Promise<{ revision: number; leases: StoredLease[] }> {
    const { revision, kvs } = await client.range(nodesPrefix, { prefix: true });
    return { revision, leases: kvs.map((kv) => decodeLease(kv.value, kv.modRevision, kv.key)) };
  }

  async function commit(verb: string, node: string, compares: EtcdCompare[], ops: EtcdOp[], cause: string): Promise<number> {
    const res = await client.txn(compares, ops);
    if (!res.succeeded) throw leaseError('WEFT_LEASE_CONFLICT', { verb, node, cause });
    return res.revision;
  }

  return {
    async get(node) {
      checkNodeName(node);
      const { kvs } = await client.range(nodeKey(node));
      return kvs.length ? decodeLease(kvs[0].value, kvs[0].modRevision, kvs[0].key) : undefined;
    },

    async list() {
      return (await listAt()).leases;
    },

    async create(lease, evict) {
      checkNodeName(lease.node);
      const compares: EtcdCompare[] = [{ key: nodeKey(lease.node), target: 'CREATE', revision: 0 }];
      const ops: EtcdOp[] = [];
      if (evict) {
        compares.push({ key: nodeKey(evict.node), target: 'MOD', revision: evict.revision });
        ops.push({ delete: { key: nodeKey(evict.node) } });
        // etcd rejects a transaction that deletes and puts the same key: an inherited claim is overwritten.
        if (evict.subnet !== lease.subnet) ops.push({ delete: { key: claimKey(evict.subnet) } });
      }
      if (evict?.subnet !== lease.subnet) compares.push({ key: claimKey(lease.subnet), target: 'CREATE', revision: 0 });
      ops.push({ put: { key: nodeKey(lease.node), value: value(lease) } }, { put: { key: claimKey(lease.subnet), value: lease.node } });
      const why = evict
        ? `the node already holds a lease, subnet ${lease.subnet} is claimed, or the lease of node ${evict.node} changed since revision ${evict.revision}`
        : `the node already holds a lease or subnet ${lease.subnet} is claimed`;
      const revision = await commit('create', lease.node, compares, ops, why);
      return { ...lease, attrs: { ...lease.attrs }, revision };
    },

    async update(lease, prev) {
      checkNodeName(lease.node);
      const compares: EtcdCompare[] = [{ key: nodeKey(prev.node), target: 'MOD', revision: prev.revision }];
      const ops: EtcdOp[] = [{ put: { key: nodeKey(lease.node), value: value(lease) } }];
      if (prev.subnet !== lease.subnet) {
        compares.push({ key: claimKey(lease.subnet), target: 'CREATE', revision: 0 });
        ops.push({ delete: { key: claimKey(prev.subnet) } }, { put: { key: claimKey(lease.subnet), value: lease.node } });
      }
      const why = `revision ${prev.revision} is stale${prev.subnet !== lease.subnet ? ` or subnet ${lease.subnet} is claimed` : ''}`;
      const revision = await commit('update', lease.node, compares, ops, why);
      return { ...lease, attrs: { ...lease.attrs }, revision };
    },

    async delete(prev) {
      checkNodeName(prev.node);
      await commit(
        'delete',
        prev.node,
        [{ key: nodeKey(prev.node), target: 'MOD', revision: prev.revision }],
        [{ delete: { key: nodeKey(prev.node) } }, { delete: { key: claimKey(prev.subnet) } }],
        `revision ${prev.revision} is stale`,
      );
    },

    watch(onChange) {
      let stopped = false;
      let last: string | undefined;
      let cancel: (() => void) | undefined;
      let pending: NodeJS.Timeout | undefined;
      let retry: NodeJS.Timeout | undefined;
      let backoff = 100;
      let syncing: Promise<number> | undefined;

      const deliver = (leases: StoredLease[]) => {
        const key = JSON.stringify(leases);
        if (!stopped && key !== last) {
          last = key;
          onChange(leases);
        }
      };
      // One list at a time; events during a list schedule another.
      const sync = (): Promise<number> =>
        (syncing ??= listAt()
          .then(({ revision, leases }) => (deliver(leases), revision))
          .finally(() => (syncing = undefined)));
      const schedule = () => {
        if (!pending) pending = setTimeout(() => ((pending = undefined), void sync().catch(() => {})), 10);
      };
      // Level-triggered: every (re)connect starts from a full list, then streams from its revision.
      const connect = () => {
        if (stopped) return;
        sync().then(
          (revision) => {
            if (stopped) return;
            backoff = 100;
            cancel = client.watchPrefix(nodesPrefix, revision + 1, schedule, () => {
              cancel = undefined;
              if (!stopped) retry = setTimeout(connect, backoff);
            });
          },
          () => {
            backoff = Math.min(backoff * 2, 5000);
            if (!stopped) retry = setTimeout(connect, backoff);
          },
        );
      };
      connect();
      const stop = () => {
        stopped = true;
        if (pending) clearTimeout(pending);
        if (retry) clearTimeout(retry);
        cancel?.();
        closers.delete(stop);
      };
      closers.add(stop);
      return stop;
    },

    async close() {
      for (const stop of [...closers]) stop();
      client.close();
    },
  };
}

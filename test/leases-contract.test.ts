// One behavioural contract for every LeaseStore, and the allocator's behaviours over each store.

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createSubnetAllocator, isLeaseError, lookupNodeSubnet, openLeaseStore } from '../mesh-control/leases/index.ts';
import type { Lease, LeaseErrorCode, LeaseSource, LeaseStore, StoredLease, SubnetAllocator } from '../mesh-control/leases/index.ts';
import { overlaps, parseCidr } from '../mesh-control/model/cidr.ts';
import { etcdSkipReason, startEtcd } from './helpers/etcd.ts';
import type { EtcdServer } from './helpers/etcd.ts';

interface StoreFixture {
  source: LeaseSource;
  cleanup(): Promise<void>;
}

function lease(node: string, subnet: string, owner = `agent-${node}`): Lease {
  return { node, subnet, owner, expiresAt: 2_000_000, attrs: { underlayIP: '192.0.2.1' } };
}

async function expectCode(p: Promise<unknown>, code: LeaseErrorCode, ...fragments: string[]): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isLeaseError(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
  for (const f of fragments) expect((err as Error).message).toContain(f);
  return err as Error;
}

async function eventually(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function leaseStoreContract(name: string, makeFixture: () => Promise<StoreFixture>): void {
  describe(`lease store contract: ${name}`, () => {
    let fx: StoreFixture;
    const opened: LeaseStore[] = [];
    let t: number;
    /** A new client of the same backing store (another process, another node agent). */
    const open = () => {
      const s = openLeaseStore(fx.source);
      opened.push(s);
      return s;
    };
    const allocator = (store = open(), clusterCIDR = '10.244.0.0/16', nodeMask = 24): SubnetAllocator =>
      createSubnetAllocator(store, { clusterCIDR, nodeMask, ttlMs: 1000, now: () => t });

    beforeEach(async () => {
      fx = await makeFixture();
      t = 1_000_000;
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
      await fx.cleanup();
    });

    describe('store', () => {
      it('creates a lease and claims its subnet atomically', async () => {
        const store = open();
        const a = await store.create(lease('node-a', '10.244.1.0/24'));
        expect(a).toMatchObject({ ...lease('node-a', '10.244.1.0/24') });
        expect(await store.get('node-a')).toEqual(a);
        expect(await store.list()).toEqual([a]);
        expect(await store.get('node-b')).toBeUndefined();
        await expectCode(store.create(lease('node-a', '10.244.2.0/24')), 'WEFT_LEASE_CONFLICT', 'create', 'node-a');
        await expectCode(store.create(lease('node-b', '10.244.1.0/24')), 'WEFT_LEASE_CONFLICT', 'node-b', '10.244.1.0/24');
        expect(await open().list()).toEqual([a]);
      });

      it('updates only at the current revision and moves the subnet claim', async () => {
        const store = open();
        const a1 = await store.create(lease('node-a', '10.244.1.0/24'));
        const a2 = await store.update({ ...lease('node-a', '10.244.1.0/24'), expiresAt: 3_000_000 }, a1);
        expect(a2.revision).toBeGreaterThan(a1.revision);
        expect((await store.get('node-a'))?.expiresAt).toBe(3_000_000);
        await expectCode(store.update(lease('node-a', '10.244.1.0/24'), a1), 'WEFT_LEASE_CONFLICT', 'update', 'node-a');

        await store.create(lease('node-b', '10.244.2.0/24'));
        await expectCode(store.update(lease('node-a', '10.244.2.0/24'), a2), 'WEFT_LEASE_CONFLICT', 'node-a');
        const a3 = await store.update(lease('node-a', '10.244.3.0/24'), a2);
        expect(a3.subnet).toBe('10.244.3.0/24');
        // The old claim is gone, the new one holds.
        await store.create(lease('node-c', '10.244.1.0/24'));
        await expectCode(store.create(lease('node-d', '10.244.3.0/24')), 'WEFT_LEASE_CONFLICT');
      });

      it('deletes only at the current revision and frees the subnet', async () => {
        const store = open();
        const a1 = await store.create(lease('node-a', '10.244.1.0/24'));
        const a2 = await store.update(lease('node-a', '10.244.1.0/24'), a1);
        await expectCode(store.delete(a1), 'WEFT_LEASE_CONFLICT', 'delete', 'node-a');
        await store.delete(a2);
        expect(await store.get('node-a')).toBeUndefined();
        await expectCode(store.delete(a2), 'WEFT_LEASE_CONFLICT');
        await store.create(lease('node-b', '10.244.1.0/24'));
      });

      it('never reuses a revision, so a deleted and recreated lease is not mistaken for the old one', async () => {
        const store = open();
        const old = await store.create(lease('node-a', '10.244.1.0/24'));
        await store.delete(old);
        const again = await store.create(lease('node-a', '10.244.1.0/24'));
        expect(again.revision).not.toBe(old.revision);
        await expectCode(store.update(lease('node-a', '10.244.1.0/24'), old), 'WEFT_LEASE_CONFLICT');
      });

      it('evicts a lease and takes its subnet in one step, only if it is unchanged', async () => {
        const store = open();
        const a1 = await store.create(lease('node-a', '10.244.1.0/24'));
        const a2 = await store.update(lease('node-a', '10.244.1.0/24'), a1);
        await expectCode(store.create(lease('node-b', '10.244.1.0/24'), a1), 'WEFT_LEASE_CONFLICT', 'node-b');
        expect((await store.list()).map((l) => l.node)).toEqual(['node-a']);
        const b = await store.create(lease('node-b', '10.244.1.0/24'), a2);
        expect((await store.list()).map((l) => [l.node, l.subnet])).toEqual([['node-b', '10.244.1.0/24']]);
        // Evicting into a different subnet frees the evicted one.
        await store.create(lease('node-c', '10.244.2.0/24'), b);
        await store.create(lease('node-d', '10.244.1.0/24'));
        expect((await store.list()).map((l) => l.node).sort()).toEqual(['node-c', 'node-d']);
      });

      it('rejects node names that are not DNS subdomains', async () => {
        const store = open();
        await expectCode(store.create(lease('../etc', '10.244.1.0/24')), 'WEFT_LEASE_INVALID_NODE', '../etc');
        await expectCode(store.get('Node_A'), 'WEFT_LEASE_INVALID_NODE');
      });

      it('watch delivers the full list after each change', async () => {
        const store = open();
        const seen: StoredLease[][] = [];
        const stop = store.watch((leases) => seen.push(leases));
        await eventually(() => seen.length === 1, 'the initial list');
        expect(seen[0]).toEqual([]);
        const a = await open().create(lease('node-a', '10.244.1.0/24'));
        await eventually(() => seen.at(-1)?.length === 1, 'the created lease');
        await open().create(lease('node-b', '10.244.2.0/24'));
        await eventually(() => seen.at(-1)?.length === 2, 'the second lease');
        await open().delete(a);
        await eventually(() => seen.at(-1)?.map((l) => l.node).join() === 'node-b', 'the deletion');
        stop();
        const count = seen.length;
        await open().create(lease('node-c', '10.244.3.0/24'));
        await new Promise((r) => setTimeout(r, 100));
        expect(seen.length).toBe(count);
      });
    });

    describe('allocator', () => {
      it('hands out subnets in order and looks them up in one read', async () => {
        const alloc = allocator();
        const a = await alloc.acquire('node-a', { owner: 'agent-1', attrs: { underlayIP: '192.0.2.10' } });
        expect(a).toEqual({ node: 'node-a', subnet: '10.244.0.0/24', owner: 'agent-1', expiresAt: t + 1000, attrs: { underlayIP: '192.0.2.10' } });
        expect((await alloc.acquire('node-b', { owner: 'agent-2' })).subnet).toBe('10.244.1.0/24');
        expect(await lookupNodeSubnet(fx.source, 'node-a')).toBe('10.244.0.0/24');
        expect(await lookupNodeSubnet(fx.source, 'node-b')).toBe('10.244.1.0/24');
        expect(await lookupNodeSubnet(fx.source, 'node-z')).toBeUndefined();
        expect((await alloc.list()).map((l) => l.node)).toEqual(['node-a', 'node-b']);
      });

      it('honors a free pre-set podCIDR and names the holder when it is taken', async () => {
        const alloc = allocator();
        expect((await alloc.acquire('node-a', { owner: 'o', podCIDR: '10.244.7.0/24' })).subnet).toBe('10.244.7.0/24');
        await expectCode(alloc.acquire('node-b', { owner: 'o', podCIDR: '10.244.7.0/24' }), 'WEFT_LEASE_SUBNET_TAKEN', 'node-b', 'node-a', '10.244.7.0/24');
        await expectCode(alloc.acquire('node-b', { owner: 'o', podCIDR: '10.245.0.0/24' }), 'WEFT_LEASE_POD_CIDR_INVALID', 'node-b', 'outside the cluster CIDR 10.244.0.0/16');
        await expectCode(alloc.acquire('node-b', { owner: 'o', podCIDR: '10.244.8.0/25' }), 'WEFT_LEASE_POD_CIDR_INVALID', 'node-b', '/24');
        await expectCode(alloc.acquire('node-b', { owner: 'o', podCIDR: '10.244.8.1/24' }), 'WEFT_LEASE_POD_CIDR_INVALID', 'host bits');
        await expectCode(alloc.acquire('node-a', { owner: 'o', podCIDR: '10.244.9.0/24' }), 'WEFT_LEASE_SUBNET_MISMATCH', 'node-a', '10.244.7.0/24');
        // The next automatic subnet skips nothing but what is held.
        expect((await alloc.acquire('node-b', { owner: 'o' })).subnet).toBe('10.244.0.0/24');
      });

      it('gives a restarting node its own subnet back, also after its lease expired', async () => {
        const alloc = allocator();
        const first = await alloc.acquire('node-a', { owner: 'agent-1', attrs: { vtepMAC: '02:00:00:00:00:01' } });
        await alloc.acquire('node-b', { owner: 'agent-2' });
        const again = await allocator().acquire('node-a', { owner: 'agent-1b' });
        expect(again).toMatchObject({ subnet: first.subnet, owner: 'agent-1b', attrs: { vtepMAC: '02:00:00:00:00:01' } });
        t += 5000; // both leases expired; nobody took them
        const late = await allocator().acquire('node-a', { owner: 'agent-1c', podCIDR: first.subnet });
        expect(late).toMatchObject({ subnet: first.subnet, expiresAt: t + 1000 });
      });

      it('renews for the owner only', async () => {
        const alloc = allocator();
        await alloc.acquire('node-a', { owner: 'agent-1' });
        t += 600;
        expect((await alloc.renew('node-a', 'agent-1')).expiresAt).toBe(t + 1000);
        await expectCode(alloc.renew('node-a', 'agent-2'), 'WEFT_LEASE_OWNER_MISMATCH', 'node-a', 'agent-2', 'agent-1');
        await expectCode(alloc.renew('node-x', 'agent-1'), 'WEFT_LEASE_NOT_FOUND', 'renew', 'node-x');
      });

      it('frees a released subnet; release is idempotent', async () => {
        const alloc = allocator(open(), '10.244.0.0/23', 24);
        await alloc.acquire('node-a', { owner: 'o' });
        await alloc.acquire('node-b', { owner: 'o' });
        expect(await alloc.release('node-a')).toBe(true);
        expect(await alloc.release('node-a')).toBe(false);
        expect(await lookupNodeSubnet(fx.source, 'node-a')).toBeUndefined();
        expect((await alloc.acquire('node-c', { owner: 'o' })).subnet).toBe('10.244.0.0/24');
      });

      it('reports exhaustion, then reclaims the first expired lease', async () => {
        const alloc = allocator(open(), '10.244.0.0/23', 24);
        await alloc.acquire('node-a', { owner: 'o' });
        t += 10;
        await alloc.acquire('node-b', { owner: 'o' });
        await expectCode(alloc.acquire('node-c', { owner: 'o' }), 'WEFT_LEASE_EXHAUSTED', 'node-c', '10.244.0.0/23', 'all 2 /24 subnets');
        t += 995; // node-a expired, node-b has 5 ms left
        expect((await alloc.acquire('node-c', { owner: 'o' })).subnet).toBe('10.244.0.0/24');
        expect((await alloc.list()).map((l) => l.node)).toEqual(['node-b', 'node-c']);
        await expectCode(alloc.acquire('node-a', { owner: 'o' }), 'WEFT_LEASE_EXHAUSTED', 'node-a');
        await expectCode(alloc.renew('node-a', 'o'), 'WEFT_LEASE_NOT_FOUND');
      });

      it('never hands overlapping subnets to nodes joining at once', async () => {
        const nodes = Array.from({ length: 24 }, (_, i) => `node-${i}`);
        const got = await Promise.all(nodes.map((n) => allocator().acquire(n, { owner: `agent-${n}` })));
        const subnets = got.map((l) => parseCidr(l.subnet));
        for (let i = 0; i < subnets.length; i++) {
          for (let j = i + 1; j < subnets.length; j++) expect(overlaps(subnets[i], subnets[j]), `${got[i].subnet} vs ${got[j].subnet}`).toBe(false);
        }
        const listed = await open().list();
        expect(listed.map((l) => `${l.node}=${l.subnet}`).sort()).toEqual(got.map((l) => `${l.node}=${l.subnet}`).sort());
      });

      it('never overlaps when many nodes race for the last subnets', async () => {
        const nodes = Array.from({ length: 12 }, (_, i) => `node-${i}`);
        const results = await Promise.allSettled(nodes.map((n) => allocator(undefined, '10.244.0.0/22', 24).acquire(n, { owner: 'o' })));
        const won = results.filter((r): r is PromiseFulfilledResult<Lease> => r.status === 'fulfilled').map((r) => r.value.subnet);
        expect(won.sort()).toEqual(['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']);
        for (const r of results) if (r.status === 'rejected') expect(isLeaseError(r.reason, 'WEFT_LEASE_EXHAUSTED'), String(r.reason)).toBe(true);
      });

      it('watch maps store changes to leases', async () => {
        const alloc = allocator();
        const seen: Lease[][] = [];
        const stop = alloc.watch((leases) => seen.push(leases));
        await alloc.acquire('node-a', { owner: 'o' });
        await eventually(() => seen.at(-1)?.[0]?.subnet === '10.244.0.0/24', 'the acquired lease');
        expect(seen.at(-1)?.[0]).not.toHaveProperty('revision');
        await alloc.release('node-a');
        await eventually(() => seen.at(-1)?.length === 0, 'the release');
        stop();
      });
    });
  });
}

leaseStoreContract('file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-leases-'));
  return { source: { dir }, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe.skipIf(etcdSkipReason !== undefined)(`etcd${etcdSkipReason ? ` (skipped: ${etcdSkipReason})` : ''}`, () => {
  let server: EtcdServer | undefined;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.stop();
  });
  // Each test gets its own key prefix on the one server.
  leaseStoreContract('etcd', async () => ({
    source: { etcdEndpoints: [server!.endpoint], etcdPrefix: `/weft-test/${randomUUID()}/` },
    cleanup: async () => {},
  }));
});

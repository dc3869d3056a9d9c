// One contract for both stores: revisions, optimistic concurrency, ordered watch from a revision,
// expired history, watch history and identity across a restart. Plus the embedded store's
// durability, etcd with a member lost, and etcd history compacted away.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createEmbeddedStore, createEtcdStore, type ObjectStore, type WatchEvent } from '../mesh-control/store/index.ts';
import { isControlError } from '../mesh-control/errors.ts';
import { etcdSkipReason, startEtcd, type EtcdServer } from './helpers/etcd.ts';
import { createEtcdClient, type EtcdWatchBatch } from '../mesh-control/leases/etcd-client.ts';
import { node, pod, service, startEtcdCluster, strip, tempDir, waitFor } from './helpers/control.ts';

interface Backend {
  name: string;
  skip?: string;
  open(opts?: { historySize?: number }): Promise<ObjectStore>;
  /** A new process on the same stored state (data dir, etcd prefix) as `store`, which is stopped first. */
  reopen(store: ObjectStore): Promise<ObjectStore>;
  cleanup(): Promise<void>;
}

/** How each opened store was made, for reopen(). */
const makers = new Map<ObjectStore, () => ObjectStore>();

async function started(make: () => ObjectStore): Promise<ObjectStore> {
  const s = make();
  makers.set(s, make);
  await s.start();
  opened.push(s);
  return s;
}

async function reopen(store: ObjectStore): Promise<ObjectStore> {
  await store.stop();
  return started(makers.get(store)!);
}

let etcd: EtcdServer | undefined;
let prefixSeq = 0;
const dirs: (() => Promise<void>)[] = [];
const opened: ObjectStore[] = [];

const backends: Backend[] = [
  {
    name: 'embedded',
    async open(opts) {
      const t = await tempDir();
      dirs.push(t.remove);
      return started(() => createEmbeddedStore({ dir: t.dir, historySize: opts?.historySize }));
    },
    reopen,
    async cleanup() {},
  },
  {
    name: 'etcd',
    skip: etcdSkipReason,
    async open(opts) {
      etcd ??= await startEtcd();
      const prefix = `/test-${process.pid}-${++prefixSeq}/`;
      return started(() => createEtcdStore({ endpoints: [etcd!.endpoint], prefix, historySize: opts?.historySize }));
    },
    reopen,
    async cleanup() {
      await etcd?.stop();
    },
  },
];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  for (const b of backends) await b.cleanup();
  for (const d of dirs) await d();
});

for (const backend of backends) {
  describe.skipIf(backend.skip !== undefined)(`object store contract: ${backend.name}`, () => {
    it('stamps a store-wide increasing revision as resourceVersion and keeps uid on update', async () => {
      const s = await backend.open();
      const a = await s.put(service('a'));
      const b = await s.put(service('b'));
      expect(Number(b.metadata.resourceVersion)).toBeGreaterThan(Number(a.metadata.resourceVersion));
      const a2 = await s.put({ ...service('a'), spec: { ...service('a').spec, ports: [{ port: 81, targetPort: 81, protocol: 'TCP' }] } });
      expect(Number(a2.metadata.resourceVersion)).toBeGreaterThan(Number(b.metadata.resourceVersion));
      expect(a2.metadata.uid).toBe(a.metadata.uid);
      expect(s.get('Service/default/a')?.metadata.resourceVersion).toBe(a2.metadata.resourceVersion);
      expect(s.revision()).toBe(Number(a2.metadata.resourceVersion));
    });

    it('lists by kind and namespace in key order', async () => {
      const s = await backend.open();
      await s.put(service('b'));
      await s.put(service('a', { namespace: 'other' }));
      await s.put(node('n1'));
      expect(s.list('Service').map((o) => o.metadata.name)).toEqual(['b', 'a']);
      expect(s.list('Service', 'other').map((o) => o.metadata.name)).toEqual(['a']);
      expect(s.list('Node').map((o) => o.metadata.name)).toEqual(['n1']);
      expect(s.list()).toHaveLength(3);
    });

    it('rejects stale writes (optimistic concurrency) and create of an existing object', async () => {
      const s = await backend.open();
      const a = await s.put(service('a'), { expectRevision: 0 });
      await expect(s.put(service('a'), { expectRevision: 0 })).rejects.toMatchObject({ code: 'WEFT_CONTROL_CONFLICT' });
      const rv = Number(a.metadata.resourceVersion);
      await s.put(service('a'), { expectRevision: rv });
      const err = await s.put(service('a'), { expectRevision: rv }).catch((e: unknown) => e);
      expect(isControlError(err, 'WEFT_CONTROL_CONFLICT')).toBe(true);
      expect((err as Error).message).toMatch(/failed to update Service\/default\/a: the object has been modified/);
      await expect(s.delete('Service/default/a', { expectRevision: rv })).rejects.toMatchObject({ code: 'WEFT_CONTROL_CONFLICT' });
    });

    it('deletes, returning the old object, and deleting twice is a no-op', async () => {
      const s = await backend.open();
      await s.put(node('n1'));
      expect((await s.delete('Node/n1'))?.metadata.name).toBe('n1');
      expect(await s.delete('Node/n1')).toBeUndefined();
      expect(s.get('Node/n1')).toBeUndefined();
    });

    it('watches from a revision: replays history then streams live changes in order', async () => {
      const s = await backend.open();
      const start = s.revision();
      await s.put(pod('p1'));
      await s.put(pod('p2'));
      const mid = s.revision();
      await s.delete('Pod/default/p1');
      const seen: WatchEvent[] = [];
      const stop = s.watch(start, (evs) => seen.push(...evs));
      await s.put(pod('p3'));
      await waitFor('4 events', () => seen.length >= 4);
      stop();
      expect(seen.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED p1', 'ADDED p2', 'DELETED p1', 'ADDED p3']);
      const revs = seen.map((e) => e.revision);
      expect([...revs].sort((x, y) => x - y)).toEqual(revs);
      const fromMid: WatchEvent[] = [];
      s.watch(mid, (evs) => fromMid.push(...evs))();
      expect(fromMid.map((e) => e.type)).toEqual(['DELETED', 'ADDED']);
    });

    it('reports an expired revision when history no longer reaches it', async () => {
      const s = await backend.open({ historySize: 3 });
      const start = s.revision();
      for (let i = 0; i < 6; i++) await s.put(pod(`p${i}`));
      expect(() => s.watch(start, () => {})).toThrow(/too old/);
      try {
        s.watch(start, () => {});
      } catch (err) {
        expect(isControlError(err, 'WEFT_CONTROL_WATCH_EXPIRED')).toBe(true);
      }
      expect(() => s.watch(s.revision(), () => {})()).not.toThrow();
    });

    it('keeps its identity across a restart; another store has another', async () => {
      const s = await backend.open();
      await s.put(pod('p'));
      const id = s.id();
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      const again = await backend.reopen(s);
      expect(again.id()).toBe(id);
      const other = await backend.open();
      expect(other.id()).not.toBe(id);
    });

    it('replays the changes made before a restart to a watch from an older revision', async () => {
      const s = await backend.open();
      const start = (await s.put(pod('p0'))).metadata.resourceVersion;
      await s.put(pod('p1'));
      await s.delete('Pod/default/p0');
      await s.put({ ...pod('p1'), metadata: { ...pod('p1').metadata, labels: { app: 'other' } } });
      const r = await backend.reopen(s);
      expect(r.historyStart()).toBeLessThanOrEqual(Number(start));
      const seen: WatchEvent[] = [];
      r.watch(Number(start), (evs) => seen.push(...evs))();
      const base = Number(start);
      expect(seen.map((e) => `${e.type} ${e.object.metadata.name} ${e.revision - base}`)).toEqual(['ADDED p1 1', 'DELETED p0 2', 'MODIFIED p1 3']);
      // A deletion carries the object as it was last stored.
      expect(seen[1].object.metadata.labels).toEqual({ app: 'web' });
      expect(seen[2].object.metadata.labels).toEqual({ app: 'other' });
    });

    it('serializes concurrent writers: every write gets its own revision', async () => {
      const s = await backend.open();
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => s.put(pod(`c${i}`))));
      expect(new Set(results.map((r) => r.metadata.resourceVersion)).size).toBe(20);
      expect(s.list('Pod')).toHaveLength(20);
    });
  });
}

describe('embedded store durability', () => {
  it('reloads every acknowledged write after a restart, across snapshots', async () => {
    const t = await tempDir();
    dirs.push(t.remove);
    const s = createEmbeddedStore({ dir: t.dir, compactEvery: 5 });
    await s.start();
    for (let i = 0; i < 12; i++) await s.put(pod(`p${i}`));
    await s.delete('Pod/default/p3');
    const rev = s.revision();
    const before = s.list().map(strip);
    await s.stop();
    expect(readdirSync(t.dir)).toContain('snapshot.json');
    const r = createEmbeddedStore({ dir: t.dir, compactEvery: 5 });
    await r.start();
    expect(r.revision()).toBe(rev);
    expect(r.list().map(strip)).toEqual(before);
    expect((await r.put(pod('after'))).metadata.resourceVersion).toBe(String(rev + 1));
    await r.stop();
  });

  it('keeps the log since the last snapshot as watch history across a restart', async () => {
    const t = await tempDir();
    dirs.push(t.remove);
    const s = createEmbeddedStore({ dir: t.dir, compactEvery: 4 });
    await s.start();
    for (let i = 0; i < 6; i++) await s.put(pod(`p${i}`));
    await s.delete('Pod/default/p5');
    await s.stop();
    const r = createEmbeddedStore({ dir: t.dir, compactEvery: 4 });
    await r.start();
    // The snapshot was written at revision 4: history starts there, deletions keep their revision.
    expect(r.historyStart()).toBe(4);
    const seen: WatchEvent[] = [];
    r.watch(r.historyStart(), (evs) => seen.push(...evs))();
    expect(seen.map((e) => `${e.type} ${e.object.metadata.name} ${e.revision}`)).toEqual(['ADDED p4 5', 'ADDED p5 6', 'DELETED p5 7']);
    expect(() => r.watch(3, () => {})).toThrow(/too old/);
    await r.stop();
  });

  it('drops a torn final log line (a write that was never acknowledged)', async () => {
    const t = await tempDir();
    dirs.push(t.remove);
    const s = createEmbeddedStore({ dir: t.dir });
    await s.start();
    await s.put(pod('kept'));
    await s.stop();
    const log = readdirSync(t.dir).find((n) => n.startsWith('log-'))!;
    appendFileSync(join(t.dir, log), '{"r":2,"k":"Pod/default/torn","o":{"kin');
    const r = createEmbeddedStore({ dir: t.dir });
    await r.start();
    expect(r.list().map((o) => o.metadata.name)).toEqual(['kept']);
    await r.stop();
  });
});

describe.skipIf(etcdSkipReason !== undefined)('etcd watch events', () => {
  it('carry the value of a PUT and the own revision of a DELETE', async () => {
    etcd ??= await startEtcd();
    const client = createEtcdClient({ endpoints: [etcd.endpoint] });
    const prefix = `/watch-${process.pid}/`;
    const batches: EtcdWatchBatch[] = [];
    try {
      const start = (await client.range(prefix, { prefix: true })).revision;
      const put = await client.txn([], [{ put: { key: `${prefix}a`, value: 'one' } }]);
      const del = await client.txn([], [{ delete: { key: `${prefix}a` } }]);
      await client.txn([], [{ put: { key: `/elsewhere-${process.pid}`, value: 'x' } }]);
      const cancel = client.watchEvents(prefix, start + 1, (b) => batches.push(b), () => {});
      await waitFor('two events', () => batches.flatMap((b) => b.events).length >= 2);
      cancel();
      expect(batches.flatMap((b) => b.events).map((e) => [e.type, e.kv.key, e.kv.value, e.kv.modRevision])).toEqual([
        ['PUT', `${prefix}a`, 'one', put.revision],
        ['DELETE', `${prefix}a`, '', del.revision],
      ]);
    } finally {
      client.close();
    }
  });

  it('give a replica each deletion at its own revision, not at the revision it learnt of it', async () => {
    etcd ??= await startEtcd();
    const prefix = `/replicas-${process.pid}/`;
    const a = createEtcdStore({ endpoints: [etcd.endpoint], prefix });
    const b = createEtcdStore({ endpoints: [etcd.endpoint], prefix });
    opened.push(a, b);
    await a.start();
    await b.start();
    await a.put(pod('gone'));
    // b learns of writes through its own watch; start from a revision that already includes the put.
    const putAt = a.revision();
    await waitFor('b sees the put', () => b.revision() >= putAt);
    const seen: WatchEvent[] = [];
    b.watch(b.revision(), (evs) => seen.push(...evs));
    await a.delete('Pod/default/gone');
    const deletedAt = a.revision();
    await a.put(pod('later'));
    await waitFor('b sees both', () => seen.length >= 2);
    expect(seen.map((e) => [e.type, e.object.metadata.name, e.revision])).toEqual([
      ['DELETED', 'gone', deletedAt],
      ['ADDED', 'later', deletedAt + 1],
    ]);
  });
});

describe.skipIf(etcdSkipReason !== undefined)('etcd history compacted away', () => {
  it('serves the history etcd still has after a restart, and expires what it compacted', async () => {
    etcd ??= await startEtcd();
    const prefix = `/compacted-${process.pid}/`;
    const make = () => createEtcdStore({ endpoints: [etcd!.endpoint], prefix });
    const s = await started(make);
    const first = Number((await s.put(pod('a'))).metadata.resourceVersion);
    await s.put(pod('b'));
    const kept = Number((await s.put(pod('c'))).metadata.resourceVersion);
    await s.put(pod('d'));
    const res = await fetch(`${etcd.endpoint}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: String(kept), physical: true }) });
    expect(res.status).toBe(200);
    const r = await reopen(s);
    // etcd keeps revisions from `kept` on: the history starts just before it.
    expect(r.historyStart()).toBe(kept - 1);
    const seen: WatchEvent[] = [];
    r.watch(kept - 1, (evs) => seen.push(...evs))();
    expect(seen.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED c', 'ADDED d']);
    expect(() => r.watch(first, () => {})).toThrow(/too old/);
    expect(r.list().map((o) => o.metadata.name)).toEqual(['a', 'b', 'c', 'd']);
  });
});

describe.skipIf(etcdSkipReason !== undefined)('etcd store with a 3-member cluster', () => {
  let cluster: Awaited<ReturnType<typeof startEtcdCluster>>;
  beforeAll(async () => {
    cluster = await startEtcdCluster(3);
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('keeps reading, writing and watching when one member dies', async () => {
    const a = createEtcdStore({ endpoints: cluster.endpoints, timeoutMs: 2000 });
    const b = createEtcdStore({ endpoints: [...cluster.endpoints].reverse(), timeoutMs: 2000 });
    await a.start();
    await b.start();
    try {
      await a.put(service('before'));
      await waitFor('replica b sees the write', () => b.get('Service/default/before'));
      // Kill the member both replicas talk to first (a uses endpoints[0]).
      await cluster.members[0].kill();
      await a.put(service('after'));
      await waitFor('replica b sees the write made after the member died', () => b.get('Service/default/after'), 15_000);
      await b.put(pod('from-b'));
      await waitFor('replica a sees b', () => a.get('Pod/default/from-b'), 15_000);
      expect(a.list().map(strip)).toEqual(b.list().map(strip));
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 40_000);
});

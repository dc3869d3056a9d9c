// The etcd store: objects as JSON values under `<prefix><objectKey>`, the object's resourceVersion
// being its etcd mod revision. Writes are etcd transactions with a compare on the mod revision
// (optimistic concurrency done by etcd itself, so several mesh-control replicas may write). Reads
// and watches are served from the local cache, kept current by etcd's streaming watch: each event
// (PUT with the value, DELETE with its own revision) is applied as it arrives, O(1) per change. A
// range read diffed against the cache (a relist) is only the fallback: at start, after the watch
// broke (its history may have been compacted meanwhile), and when an own write is not seen soon.
// At start the recent history (up to `historySize` revisions back, as far as etcd has not compacted
// it) is read back into the cache, so watchers, and agents resuming after a restart, get deltas.
// The store's identity is a key under the prefix, created once (create-if-absent transaction).
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createEtcdClient, type EtcdClient, type EtcdWatchBatch } from '../leases/etcd-client.ts';
import { isLeaseError } from '../leases/errors.ts';
import { ControlError, causeText } from '../errors.ts';
import { objectKey } from '../model/objects.ts';
import { API_VERSIONS, type ClusterObject, type Kind } from '../model/types.ts';
import { checkPrecondition, createObjectCache, DEFAULT_HISTORY, stamp, withRevision, type Change } from './cache.ts';
import type { ObjectStore, WatchEvent } from './types.ts';

export const DEFAULT_ETCD_OBJECT_PREFIX = '/weft/objects/';
/** How long a writer waits for the watch to show its write before it relists. */
const CATCH_UP_MS = 1000;
/** The identity key, beside the objects (object keys start with their Kind). */
const STORE_ID_KEY = '.store-id';

export interface EtcdStoreConfig {
  endpoints: string[];
  prefix?: string;
  historySize?: number;
  /** Per-request timeout (default 5 s). */
  timeoutMs?: number;
  log?: (message: string) => void;
}

/** What a deletion's event carries when the deleted value is older than the history read back. */
function deletedStub(key: string): ClusterObject {
  const [kind, ...rest] = key.split('/');
  const name = rest[rest.length - 1];
  const metadata = rest.length > 1 ? { name, namespace: rest[0] } : { name };
  return { apiVersion: API_VERSIONS[kind as Kind], kind, metadata } as ClusterObject;
}

function storeError(verb: string, err: unknown): ControlError {
  if (err instanceof ControlError) return err;
  const code = (err as { code?: string }).code === 'WEFT_LEASE_ETCD_UNAVAILABLE' ? 'WEFT_CONTROL_STORE_UNAVAILABLE' : 'WEFT_CONTROL_STORE_IO';
  return new ControlError(code, `failed to ${verb} in etcd: ${causeText(err)}`, { cause: err });
}

export function createEtcdStore(config: EtcdStoreConfig): ObjectStore {
  const prefix = config.prefix ?? DEFAULT_ETCD_OBJECT_PREFIX;
  const idKey = prefix + STORE_ID_KEY;
  const log = config.log ?? (() => {});
  const historySize = config.historySize ?? DEFAULT_HISTORY;
  const cache = createObjectCache({ historySize });
  let storeId = '';
  let client: EtcdClient | undefined;
  let cancelWatch: (() => void) | undefined;
  let stopped = false;
  // Refreshes are serialized; a request arriving during one runs once more after it.
  let refreshing: Promise<void> | undefined;
  let again = false;
  // Writers waiting for the watch to deliver their own write.
  const waiters = new Set<{ revision: number; done: () => void }>();

  async function readAll(): Promise<{ revision: number; objects: Map<string, { revision: number; object: ClusterObject }> }> {
    const res = await client!.range(prefix, { prefix: true });
    const objects = new Map<string, { revision: number; object: ClusterObject }>();
    for (const kv of res.kvs) {
      if (kv.key === idKey) continue;
      objects.set(kv.key.slice(prefix.length), { revision: kv.modRevision, object: JSON.parse(kv.value) as ClusterObject });
    }
    return { revision: res.revision, objects };
  }

  async function refreshOnce(): Promise<void> {
    const { revision, objects } = await readAll();
    if (revision <= cache.revision()) return;
    const changes: Change[] = [];
    for (const [key, { revision: r, object }] of objects) {
      if (Number(cache.get(key)?.metadata.resourceVersion ?? 0) !== r) changes.push({ key, revision: r, object });
    }
    // A deletion's own revision is not in a range answer: it happened at or before `revision`.
    for (const o of cache.list()) {
      const key = objectKey(o);
      if (!objects.has(key)) changes.push({ key, revision });
    }
    changes.sort((a, b) => a.revision - b.revision);
    cache.apply(changes, revision);
  }

  function refresh(): Promise<void> {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        do {
          again = false;
          await refreshOnce();
        } while (again);
      } finally {
        refreshing = undefined;
      }
    })();
    return refreshing;
  }

  /** Until the cache has seen `revision` (an own write), so a writer reads what it wrote. */
  async function catchUp(revision: number): Promise<void> {
    if (cache.revision() >= revision) return;
    await new Promise<void>((resolve) => {
      const w = {
        revision,
        done: () => {
          clearTimeout(timer);
          waiters.delete(w);
          resolve();
        },
      };
      // The watch normally delivers it within milliseconds; a relist covers a stalled watch.
      const timer = setTimeout(w.done, CATCH_UP_MS);
      waiters.add(w);
    });
    while (cache.revision() < revision) await refresh();
  }

  function onBatch(batch: EtcdWatchBatch): void {
    const changes: Change[] = [];
    for (const e of batch.events) {
      // A relist may already have brought the cache past these.
      if (e.kv.modRevision <= cache.revision() || !e.kv.key.startsWith(prefix) || e.kv.key === idKey) continue;
      changes.push({ key: e.kv.key.slice(prefix.length), revision: e.kv.modRevision, object: e.type === 'PUT' ? (JSON.parse(e.kv.value) as ClusterObject) : undefined });
    }
    if (changes.length > 0) cache.apply(changes, changes[changes.length - 1].revision);
    for (const w of waiters) if (w.revision <= cache.revision()) w.done();
  }

  /** The identity under the prefix: created by the first replica ever started on it. */
  async function loadStoreId(): Promise<string> {
    const created = randomUUID();
    const res = await client!.txn([{ key: idKey, target: 'CREATE', revision: 0 }], [{ put: { key: idKey, value: created } }]);
    if (res.succeeded) return created;
    const kv = (await client!.range(idKey)).kvs[0];
    if (!kv) throw new Error(`${idKey} exists and then does not (was the prefix wiped meanwhile?)`);
    return kv.value;
  }

  /**
   * The changes under the prefix in (from, to], read with a watch of the whole key space: every
   * revision is some key's change, so the event at `to` says the history is complete. Starts
   * later when etcd has compacted part of it (the watch names the oldest revision it keeps).
   */
  function readHistory(from: number, to: number): Promise<{ historyStart: number; events: WatchEvent[] }> {
    return new Promise((resolve, reject) => {
      const events: WatchEvent[] = [];
      // The latest value of each key seen so far: what a later deletion in the window removed.
      const last = new Map<string, ClusterObject>();
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        cancel();
        if (!err) return resolve({ historyStart: from, events });
        const compacted = isLeaseError(err) ? err.compactRevision : undefined;
        if (compacted !== undefined && compacted - 1 > from) resolve(readHistory(compacted - 1, to));
        else reject(err);
      };
      const timer = setTimeout(() => finish(new Error(`history (${from}, ${to}] not read within ${config.timeoutMs ?? 5000} ms`)), config.timeoutMs ?? 5000);
      const cancel = client!.watchEvents('', from + 1, (batch) => {
        for (const e of batch.events) {
          const r = e.kv.modRevision;
          if (r > to || !e.kv.key.startsWith(prefix) || e.kv.key === idKey) continue;
          const key = e.kv.key.slice(prefix.length);
          if (e.type === 'PUT') {
            const object = withRevision(JSON.parse(e.kv.value) as ClusterObject, r);
            last.set(key, object);
            events.push({ type: e.kv.createRevision === r ? 'ADDED' : 'MODIFIED', revision: r, key, object });
          } else {
            events.push({ type: 'DELETED', revision: r, key, object: last.get(key) ?? deletedStub(key) });
            last.delete(key);
          }
        }
        if (batch.events.some((e) => e.kv.modRevision >= to)) finish();
      }, (err) => finish(err ?? new Error('the watch ended before the history was read')));
    });
  }

  function watchLoop(): void {
    if (stopped) return;
    cancelWatch = client!.watchEvents(prefix, cache.revision() + 1, onBatch, (err) => {
      if (stopped) return;
      if (err) log(`etcd watch ended, reconnecting: ${causeText(err)}`);
      // Relist first: the history since the cache's revision may be compacted by now.
      void (async () => {
        for (let delay = 100; !stopped; delay = Math.min(delay * 2, 2000)) {
          try {
            await refresh();
            break;
          } catch (e) {
            log(`failed to refresh from etcd: ${causeText(e)}`);
            await sleep(delay);
          }
        }
        watchLoop();
      })();
    });
  }

  async function write(verb: string, key: string, build: (current: ClusterObject | undefined) => ClusterObject | undefined, expect: number | undefined): Promise<{ revision: number; object?: ClusterObject; previous?: ClusterObject }> {
    const etcdKey = prefix + key;
    for (let attempt = 0; ; attempt++) {
      const current = cache.get(key);
      checkPrecondition(verb, key, current, expect);
      const object = build(current);
      if (object === undefined && current === undefined) return { revision: cache.revision() };
      const currentRevision = current === undefined ? 0 : Number(current.metadata.resourceVersion);
      let res: { succeeded: boolean; revision: number };
      try {
        res = await client!.txn(
          [current === undefined ? { key: etcdKey, target: 'CREATE', revision: 0 } : { key: etcdKey, target: 'MOD', revision: currentRevision }],
          [object === undefined ? { delete: { key: etcdKey } } : { put: { key: etcdKey, value: JSON.stringify(object) } }],
        );
      } catch (err) {
        throw storeError(`${verb} ${key}`, err);
      }
      if (res.succeeded) {
        await catchUp(res.revision).catch((err) => log(`failed to refresh from etcd after a write: ${causeText(err)}`));
        return { revision: res.revision, object, previous: current };
      }
      // The cache was behind etcd: catch up, then the precondition decides (or we retry).
      await refresh().catch((err) => {
        throw storeError(`${verb} ${key}`, err);
      });
      if (attempt >= 16) throw new ControlError('WEFT_CONTROL_CONFLICT', `failed to ${verb} ${key}: still conflicting with other writers after ${attempt + 1} attempts`);
    }
  }

  return {
    async start() {
      stopped = false;
      client = createEtcdClient({ endpoints: config.endpoints, timeoutMs: config.timeoutMs });
      try {
        storeId = await loadStoreId();
        const { revision, objects } = await readAll();
        const from = Math.max(0, revision - historySize);
        // Without history (read failed, or all of it compacted) watchers older than now relist:
        // agents get a snapshot.
        const history = from >= revision ? undefined : await readHistory(from, revision).catch((err: unknown) => {
          log(`failed to read the recent history from etcd, serving from revision ${revision} on: ${causeText(err)}`);
          return undefined;
        });
        cache.load([...objects].map(([key, v]) => ({ key, ...v })), revision, history);
      } catch (err) {
        client.close();
        throw storeError('load objects', err);
      }
      watchLoop();
    },
    async stop() {
      stopped = true;
      for (const w of waiters) w.done();
      cancelWatch?.();
      client?.close();
    },
    id: () => storeId,
    revision: () => cache.revision(),
    historyStart: () => cache.historyStart(),
    get: (key) => cache.get(key),
    list: (kind, namespace) => cache.list(kind, namespace),
    async put(object, opts) {
      const key = objectKey(object);
      let stored: ClusterObject | undefined;
      const { revision } = await write('update', key, (current) => (stored = stamp(object, current)), opts?.expectRevision);
      return withRevision(stored!, revision);
    },
    async delete(key, opts) {
      const { previous } = await write('delete', key, () => undefined, opts?.expectRevision);
      return previous;
    },
    watch: (from, onEvents) => cache.watch(from, onEvents),
  };
}

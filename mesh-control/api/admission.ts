// Server-side admission for writes from the CLI: every object is validated and defaulted with the
// shared model (all problems of all objects reported at once, naming document and field, before
// anything is written), Services get their clusterIP/nodePorts allocated, then each object is
// created or updated with optimistic concurrency. Writes run one request at a time, so allocation
// and read-compare-write of one replica never interleave.
import { isDeepStrictEqual } from 'node:util';
import { ControlError, isControlError } from '../errors.ts';
import { applyDefaults } from '../model/defaults.ts';
import { formatProblem, type ManifestProblem } from '../model/errors.ts';
import { namespacedName, objectKey } from '../model/objects.ts';
import type { ClusterObject, ObjectMeta, Service } from '../model/types.ts';
import { validate } from '../model/validate.ts';
import { createServiceIPAllocator, type ServiceIPAllocatorConfig } from '../../proxy/service-ip-allocator.ts';
import type { ObjectStore } from '../store/types.ts';
import { deleteGracefully } from '../controllers/pod-termination.ts';

export type Outcome = 'created' | 'configured' | 'unchanged' | 'deleted' | 'not found';

export interface AdmissionResult {
  key: string;
  outcome: Outcome;
  object?: ClusterObject;
}

export interface Admission {
  /** Rebuilds allocations from the stored Services; call once the store is started. */
  start(): void;
  apply(items: { json: string; source: string }[], opts?: { dryRun?: boolean }): Promise<AdmissionResult[]>;
  /**
   * Deletes; a Pod terminates first (controllers/pod-termination.ts) with the grace period given,
   * else its own; 0 removes it at once. Terminating counts as `deleted`, as kubectl reports it.
   */
  remove(keys: string[], opts?: { gracePeriodSeconds?: number }): Promise<AdmissionResult[]>;
}

/** What the user controls: server-set metadata left out, for "unchanged" decisions. */
function userView(o: ClusterObject): unknown {
  const metadata = { ...o.metadata };
  delete metadata.resourceVersion;
  delete metadata.uid;
  delete metadata.creationTimestamp;
  return { ...o, metadata };
}

export function createAdmission(config: ServiceIPAllocatorConfig, deps: { store: ObjectStore; observe?: (verb: string, seconds: number) => void }): Admission {
  const { store } = deps;
  let allocator = createServiceIPAllocator(config);
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn, fn);
    queue = next.catch(() => {});
    return next;
  };
  const timed = async <T>(verb: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      deps.observe?.(verb, (performance.now() - t0) / 1000);
    }
  };

  function decode(items: { json: string; source: string }[]): ClusterObject[] {
    const problems: ManifestProblem[] = [];
    const objects: ClusterObject[] = [];
    items.forEach((item, i) => {
      const [source, doc] = /^(.*) document (\d+)$/.exec(item.source)?.slice(1) ?? [item.source || 'request', String(i + 1)];
      let value: unknown;
      try {
        value = JSON.parse(item.json);
      } catch (err) {
        problems.push({ source, document: Number(doc), path: '', message: `not JSON: ${(err as Error).message}` });
        return;
      }
      const found = validate(value);
      const v = value as { kind?: string; metadata?: { name?: string; namespace?: string } };
      for (const p of found) problems.push({ source, document: Number(doc), kind: v?.kind, name: v?.metadata?.name, path: p.path, message: p.message });
      if (found.length === 0) objects.push(applyDefaults(value as ClusterObject));
    });
    if (problems.length > 0) throw new ControlError('WEFT_CONTROL_INVALID_OBJECT', problems.map(formatProblem).join('\n'));
    return objects;
  }

  /** The object to store: status kept when the manifest has none (status is not the user's). */
  function admit(o: ClusterObject, current: ClusterObject | undefined): ClusterObject {
    let next = o;
    if (current && 'status' in current && current.status !== undefined && !('status' in o && o.status !== undefined)) {
      next = { ...o, status: current.status } as ClusterObject;
    }
    // Deletion is the server's: an apply neither starts, stops nor moves a pod's termination.
    const metadata: ObjectMeta = { ...next.metadata };
    const deleting: ObjectMeta | undefined = current?.metadata;
    delete metadata.deletionTimestamp;
    delete metadata.deletionGracePeriodSeconds;
    if (deleting?.deletionTimestamp !== undefined) metadata.deletionTimestamp = deleting.deletionTimestamp;
    if (deleting?.deletionGracePeriodSeconds !== undefined) metadata.deletionGracePeriodSeconds = deleting.deletionGracePeriodSeconds;
    next = { ...next, metadata } as ClusterObject;
    if (next.kind === 'Service') {
      try {
        next = allocator.allocate(next);
      } catch (err) {
        throw new ControlError('WEFT_CONTROL_ALLOCATION', `failed to admit Service ${namespacedName(next)}: ${(err as Error).message}`);
      }
    }
    return next;
  }

  async function putOne(o: ClusterObject, dryRun: boolean): Promise<AdmissionResult> {
    const key = objectKey(o);
    for (let attempt = 0; ; attempt++) {
      const current = store.get(key);
      const next = admit(o, current);
      if (current && isDeepStrictEqual(userView(current), userView(next))) return { key, outcome: 'unchanged', object: current };
      if (dryRun) return { key, outcome: current ? 'configured' : 'created', object: next };
      // A resourceVersion in the manifest is the user's precondition; else the one just read.
      const expectRevision = o.metadata.resourceVersion ? Number(o.metadata.resourceVersion) : current ? Number(current.metadata.resourceVersion) : 0;
      try {
        const stored = await timed('put', () => store.put(next, { expectRevision }));
        return { key, outcome: current ? 'configured' : 'created', object: stored };
      } catch (err) {
        if (!isControlError(err, 'WEFT_CONTROL_CONFLICT') || o.metadata.resourceVersion || attempt >= 5) {
          if (next.kind === 'Service' && !current) allocator.release(next.metadata.namespace ?? 'default', next.metadata.name);
          throw err;
        }
      }
    }
  }

  return {
    start() {
      allocator = createServiceIPAllocator(config);
      for (const s of store.list('Service') as Service[]) {
        try {
          allocator.allocate(s);
        } catch {
          // A stored conflict (written by another replica): the first holder keeps it.
        }
      }
    },
    apply(items, opts) {
      return serial(async () => {
        const objects = decode(items);
        const results: AdmissionResult[] = [];
        for (const o of objects) results.push(await putOne(o, opts?.dryRun === true));
        return results;
      });
    },
    remove(keys, opts) {
      return serial(async () => {
        const results: AdmissionResult[] = [];
        for (const key of keys) {
          const gone = await timed('delete', () => deleteGracefully(store, key, opts?.gracePeriodSeconds));
          if (gone?.kind === 'Service') allocator.release(gone.metadata.namespace ?? 'default', gone.metadata.name);
          results.push({ key, outcome: gone ? 'deleted' : 'not found', object: gone });
        }
        return results;
      });
    },
  };
}

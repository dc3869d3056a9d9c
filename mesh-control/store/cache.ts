// The in-memory state both stores serve reads and watches from: objects by key, the current
// revision, a bounded history of events for watch(fromRevision), and the live watchers. The
// backends decide what is durable; this decides what readers see.
import { randomUUID } from 'node:crypto';
import { ControlError } from '../errors.ts';
import { isNamespaced } from '../model/objects.ts';
import type { ClusterObject, Kind } from '../model/types.ts';
import type { WatchEvent } from './types.ts';

export const DEFAULT_HISTORY = 10_000;

/** One change as a backend reports it; `object` undefined means deleted. */
export interface Change {
  key: string;
  revision: number;
  object?: ClusterObject;
}

export interface ObjectCache {
  revision(): number;
  historyStart(): number;
  get(key: string): ClusterObject | undefined;
  list(kind?: Kind, namespace?: string): ClusterObject[];
  /**
   * The state loaded at start. `history` (what the backend still holds of the changes that led
   * there, oldest first, ending at `revision`) is kept for watches: they can start no earlier than
   * `historyStart`, or `revision` without history.
   */
  load(objects: Change[], revision: number, history?: { historyStart: number; events: WatchEvent[] }): void;
  /** Applies changes (revisions ascending) at `revision` and notifies watchers once. */
  apply(changes: Change[], revision: number): WatchEvent[];
  watch(fromRevision: number, onEvents: (events: WatchEvent[]) => void): () => void;
}

/** The object as readers see it: resourceVersion is the revision of its last write. */
export function withRevision(object: ClusterObject, revision: number): ClusterObject {
  return { ...object, metadata: { ...object.metadata, resourceVersion: String(revision) } };
}

export function createObjectCache(opts: { historySize?: number } = {}): ObjectCache {
  const historySize = opts.historySize ?? DEFAULT_HISTORY;
  const objects = new Map<string, ClusterObject>();
  // Per kind, so list(kind) does not scan every object of every kind.
  const byKind = new Map<string, Set<string>>();
  const history: WatchEvent[] = [];
  let head = 0; // index of the oldest event in the ring
  let rev = 0;
  // Oldest revision a watcher may start from; advances as history is dropped.
  let floor = 0;
  const watchers = new Set<(events: WatchEvent[]) => void>();

  function put(key: string, object: ClusterObject, revision: number): ClusterObject {
    const stored = withRevision(object, revision);
    objects.set(key, stored);
    const kind = key.slice(0, key.indexOf('/'));
    let set = byKind.get(kind);
    if (!set) byKind.set(kind, (set = new Set()));
    set.add(key);
    return stored;
  }

  function remember(e: WatchEvent): void {
    if (history.length < historySize) {
      history.push(e);
      return;
    }
    floor = history[head].revision;
    history[head] = e;
    head = (head + 1) % historySize;
  }

  function eventsAfter(fromRevision: number): WatchEvent[] {
    const out: WatchEvent[] = [];
    for (let i = 0; i < history.length; i++) {
      const e = history[(head + i) % history.length];
      if (e.revision > fromRevision) out.push(e);
    }
    return out;
  }

  return {
    revision: () => rev,
    historyStart: () => floor,
    get: (key) => objects.get(key),
    list(kind, namespace) {
      const keys = kind === undefined ? [...objects.keys()] : [...(byKind.get(kind) ?? [])];
      keys.sort();
      const out: ClusterObject[] = [];
      for (const k of keys) {
        const o = objects.get(k)!;
        if (namespace !== undefined && isNamespaced(o.kind) && o.metadata.namespace !== namespace) continue;
        out.push(o);
      }
      return out;
    },
    load(changes, revision, past) {
      for (const c of changes) if (c.object) put(c.key, c.object, c.revision);
      rev = floor = revision;
      if (!past) return;
      floor = past.historyStart;
      for (const e of past.events) remember(e);
    },
    apply(changes, revision) {
      const events: WatchEvent[] = [];
      for (const c of changes) {
        const prev = objects.get(c.key);
        if (c.object === undefined) {
          if (prev === undefined) continue;
          objects.delete(c.key);
          byKind.get(c.key.slice(0, c.key.indexOf('/')))?.delete(c.key);
          events.push({ type: 'DELETED', revision: c.revision, key: c.key, object: prev });
        } else {
          const object = put(c.key, c.object, c.revision);
          events.push({ type: prev === undefined ? 'ADDED' : 'MODIFIED', revision: c.revision, key: c.key, object });
        }
      }
      for (const e of events) remember(e);
      rev = Math.max(rev, revision);
      if (events.length > 0) for (const w of watchers) w(events);
      return events;
    },
    watch(fromRevision, onEvents) {
      if (fromRevision < floor) {
        throw new ControlError(
          'WEFT_CONTROL_WATCH_EXPIRED',
          `failed to watch from revision ${fromRevision}: too old, history starts after revision ${floor} (relist and watch from the current revision ${rev})`,
        );
      }
      const backlog = eventsAfter(fromRevision);
      if (backlog.length > 0) onEvents(backlog);
      watchers.add(onEvents);
      return () => void watchers.delete(onEvents);
    },
  };
}

/** What a backend persists: identity kept from the current object, no resourceVersion (it is the revision). */
export function stamp(object: ClusterObject, current: ClusterObject | undefined): ClusterObject {
  const metadata = { ...object.metadata };
  delete metadata.resourceVersion;
  metadata.uid = current?.metadata.uid ?? metadata.uid ?? randomUUID();
  metadata.creationTimestamp = current?.metadata.creationTimestamp ?? metadata.creationTimestamp ?? new Date().toISOString();
  return { ...object, metadata } as ClusterObject;
}

/** Throws WEFT_CONTROL_CONFLICT when `current` is not at the revision the writer read. */
export function checkPrecondition(verb: string, key: string, current: ClusterObject | undefined, expect: number | undefined): void {
  if (expect === undefined) return;
  const have = current === undefined ? 0 : Number(current.metadata.resourceVersion);
  if (have === expect) return;
  const cause =
    expect === 0
      ? 'it already exists'
      : have === 0
        ? 'it no longer exists'
        : `the object has been modified (resourceVersion ${have}, expected ${expect}); read it again and retry`;
  throw new ControlError('WEFT_CONTROL_CONFLICT', `failed to ${verb} ${key}: ${cause}`);
}

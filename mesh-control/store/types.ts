// The object store's interface, implemented by the embedded store and by etcd. Every write gets a
// store-wide revision (as etcd's): an object's metadata.resourceVersion is the revision of its last
// write, and watch(fromRevision) replays every change after it, in order.
import type { ClusterObject, Kind } from '../model/types.ts';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: EventType;
  revision: number;
  /** objectKey: `Service/default/web`, `Node/node-a`. */
  key: string;
  /** The object after the change; for DELETED, the object as it was last stored. */
  object: ClusterObject;
}

export interface WriteOptions {
  /**
   * Optimistic concurrency: the revision the caller read (the object's resourceVersion), or 0 for
   * "must not exist". Absent means unconditional. A mismatch throws WEFT_CONTROL_CONFLICT.
   */
  expectRevision?: number;
}

export interface ObjectStore {
  /** Loads the stored state; reads and writes are valid after it resolves. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * The store's identity, valid after start(): created once with the store (the data directory, or
   * the etcd prefix), so revisions of two stores (a new data dir, a wiped prefix) are never mixed.
   */
  id(): string;
  /** The revision of the newest change this replica has seen. */
  revision(): number;
  /** The oldest revision watch() accepts: the history it replays starts after it. */
  historyStart(): number;
  get(key: string): ClusterObject | undefined;
  /** Objects of a kind (all kinds when absent), optionally of one namespace, in key order. */
  list(kind?: Kind, namespace?: string): ClusterObject[];
  /** Creates or replaces; returns the stored object (with resourceVersion set). */
  put(object: ClusterObject, opts?: WriteOptions): Promise<ClusterObject>;
  /** Deletes; returns the deleted object, or undefined when there was none. */
  delete(key: string, opts?: WriteOptions): Promise<ClusterObject | undefined>;
  /**
   * Calls `onEvents` with every change after `fromRevision` (oldest first, in batches), then with
   * each new change. Throws WEFT_CONTROL_WATCH_EXPIRED when that history is no longer kept: the
   * caller relists (list() + revision()) and watches from there, as after the API server's 410.
   */
  watch(fromRevision: number, onEvents: (events: WatchEvent[]) => void): () => void;
}

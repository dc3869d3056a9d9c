// Opens the store a `weft control` runs on: embedded in a data directory, or etcd.
import { ControlError } from '../errors.ts';
import { createEmbeddedStore } from './embedded.ts';
import { createEtcdStore } from './etcd.ts';
import type { ObjectStore } from './types.ts';

export type { ObjectStore, WatchEvent, WriteOptions, EventType } from './types.ts';
export { createEmbeddedStore, createEtcdStore };

export interface StoreSource {
  /** Embedded store directory. */
  dataDir?: string;
  etcdEndpoints?: string[];
  /** The etcd prefix of everything `weft control` stores (default `/weft/`): objects go under `<prefix>objects/`. */
  etcdPrefix?: string;
  log?: (message: string) => void;
}

export function openStore(source: StoreSource): ObjectStore {
  const endpoints = source.etcdEndpoints ?? [];
  if (endpoints.length > 0 && source.dataDir !== undefined) {
    throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', 'invalid store: give either a data directory or etcd endpoints, not both');
  }
  // Under `<prefix>objects/`, beside the leases under `<prefix>leases/` (server.ts), never around them.
  if (endpoints.length > 0) return createEtcdStore({ endpoints, prefix: source.etcdPrefix === undefined ? undefined : `${source.etcdPrefix}objects/`, log: source.log });
  if (source.dataDir === undefined) throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', 'invalid store: a data directory or etcd endpoints are required');
  return createEmbeddedStore({ dir: source.dataDir });
}

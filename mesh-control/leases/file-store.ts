// The embedded lease store: plain files in one directory, safe for many processes on one host.
//
//   DIR/nodes/<node>.json      the node's lease (with its revision)
//   DIR/subnets/<a.b.c.d-n>    the subnet claim: {"node": ...}, created with link(2), which
//                              fails if the claim exists: one subnet, one holder
//   DIR/revision               store-wide write counter, so a revision is never reused
//   DIR/lock                   short-held writer lock (file-lock.ts)
//   DIR/tmp/<pid>-*            temp files; every file appears complete via rename or link
//
// Every write runs under DIR/lock and goes claim first, lease second, old claim last: a crash in
// between leaves at most a claim whose node lease does not point back at it, which the next
// claimant of that subnet removes. Readers (get, list, the CNI lookup) take no lock: they only
// ever see whole files. The lock's stale-owner check uses pids, so processes sharing a
// directory must share a host and pid namespace.

import { link, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { watch as watchDir } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { causeText, isLeaseError, leaseError } from './errors.ts';
import { acquireLock, uniqueSuffix } from './file-lock.ts';
import { checkNodeName, decodeLease, subnetKey } from './lease.ts';
import type { Lease, LeaseStore, StoredLease } from './lease.ts';

export interface FileLeaseStoreOptions {
  dir: string;
  /** How long a writer waits for another process's lock (default 10 s). */
  lockTimeoutMs?: number;
  /** Safety-net poll for watch() besides inotify (default 2 s). */
  watchPollMs?: number;
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

async function io<T>(verb: string, path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isLeaseError(err)) throw err;
    throw leaseError('WEFT_LEASE_STORE_IO', { verb, path, cause: causeText(err) }, err);
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  return io('read', path, async () => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  });
}

function nodePath(dir: string, node: string): string {
  return join(dir, 'nodes', `${node}.json`);
}

/** The CNI fast path: one readFile of the node's lease. */
export async function readNodeSubnet(dir: string, node: string): Promise<string | undefined> {
  checkNodeName(node);
  const path = nodePath(dir, node);
  const text = await readOptional(path);
  return text === undefined ? undefined : decodeLease(text, undefined, path).subnet;
}

export function createFileLeaseStore(opts: FileLeaseStoreOptions): LeaseStore {
  const dir = opts.dir;
  const nodesDir = join(dir, 'nodes');
  const subnetsDir = join(dir, 'subnets');
  const tmpDir = join(dir, 'tmp');
  const revisionPath = join(dir, 'revision');
  const claimPath = (subnet: string) => join(subnetsDir, subnetKey(subnet));
  const closers = new Set<() => void>();

  let ready: Promise<void> | undefined;
  const ensureDirs = () =>
    (ready ??= io('create', dir, async () => {
      for (const d of [nodesDir, subnetsDir, tmpDir]) await mkdir(d, { recursive: true });
    }).catch((err) => {
      ready = undefined;
      throw err;
    }));

  // One writer per process at a time; the lock file serializes processes.
  let queue: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(async () => {
      await ensureDirs();
      const release = await acquireLock({
        path: join(dir, 'lock'),
        tmpDir,
        timeoutMs: opts.lockTimeoutMs ?? 10_000,
        onStale: (pid) => removeTemps(pid),
      });
      try {
        return await fn();
      } finally {
        await io('unlock', join(dir, 'lock'), release);
      }
    });
    queue = run.catch(() => {});
    return run;
  }

  async function removeTemps(pid: number): Promise<void> {
    const names = await io('list', tmpDir, () => readdir(tmpDir));
    await Promise.all(names.filter((n) => n.startsWith(`${pid}-`)).map((n) => unlink(join(tmpDir, n)).catch(() => {})));
  }

  /** Writes `text` to a synced temp file; the caller publishes it with link or rename. */
  async function writeTemp(text: string): Promise<string> {
    const path = join(tmpDir, `${process.pid}-${uniqueSuffix()}`);
    await io('write', path, async () => {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
    return path;
  }

  async function syncDir(path: string): Promise<void> {
    await io('sync', path, async () => {
      const fh = await open(path, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
  }

  /** Atomic create-if-absent: false when `target` exists. */
  async function publishNew(text: string, target: string): Promise<boolean> {
    const temp = await writeTemp(text);
    try {
      return await io('create', target, async () => {
        try {
          await link(temp, target);
          return true;
        } catch (err) {
          if (isErrno(err, 'EEXIST')) return false;
          throw err;
        }
      });
    } finally {
      await unlink(temp).catch(() => {});
    }
  }

  async function publishReplace(text: string, target: string): Promise<void> {
    const temp = await writeTemp(text);
    await io('replace', target, () => rename(temp, target));
  }

  async function readLease(node: string): Promise<StoredLease | undefined> {
    const path = nodePath(dir, node);
    const text = await readOptional(path);
    return text === undefined ? undefined : decodeLease(text, undefined, path);
  }

  async function readClaim(subnet: string): Promise<string | undefined> {
    const path = claimPath(subnet);
    const text = await readOptional(path);
    if (text === undefined) return undefined;
    try {
      return (JSON.parse(text) as { node: string }).node;
    } catch (err) {
      throw leaseError('WEFT_LEASE_CORRUPT', { path, cause: (err as Error).message });
    }
  }

  async function claim(verb: string, subnet: string, node: string): Promise<void> {
    const target = claimPath(subnet);
    const text = JSON.stringify({ node });
    if (await publishNew(text, target)) return;
    const holder = await readClaim(subnet);
    if (holder === node) return;
    if (holder !== undefined && (await readLease(holder))?.subnet === subnet) {
      throw leaseError('WEFT_LEASE_CONFLICT', { verb, node, cause: `subnet ${subnet} is claimed by node ${holder}` });
    }
    // A claim left by a crashed writer: its node's lease does not point back at it.
    await io('remove', target, () => unlink(target).catch((err) => (isErrno(err, 'ENOENT') ? undefined : Promise.reject(err))));
    if (!(await publishNew(text, target))) {
      throw leaseError('WEFT_LEASE_CONFLICT', { verb, node, cause: `subnet ${subnet} was claimed concurrently` });
    }
  }

  async function unclaim(subnet: string, node: string): Promise<void> {
    if ((await readClaim(subnet)) !== node) return;
    const target = claimPath(subnet);
    await io('remove', target, () => unlink(target).catch((err) => (isErrno(err, 'ENOENT') ? undefined : Promise.reject(err))));
  }

  async function nextRevision(): Promise<number> {
    const text = await readOptional(revisionPath);
    const next = (text === undefined ? 0 : Number(text.trim()) || 0) + 1;
    await publishReplace(String(next), revisionPath);
    return next;
  }

  async function current(verb: string, node: string, revision: number): Promise<StoredLease> {
    const cur = await readLease(node);
    if (!cur) throw leaseError('WEFT_LEASE_CONFLICT', { verb, node, cause: `no lease (expected revision ${revision})` });
    if (cur.revision !== revision) {
      throw leaseError('WEFT_LEASE_CONFLICT', { verb, node, cause: `revision ${revision} is stale (now ${cur.revision})` });
    }
    return cur;
  }

  async function remove(lease: StoredLease): Promise<void> {
    const path = nodePath(dir, lease.node);
    await io('remove', path, () => unlink(path));
    await unclaim(lease.subnet, lease.node);
  }

  async function list(): Promise<StoredLease[]> {
    let names: string[];
    try {
      names = await readdir(nodesDir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw leaseError('WEFT_LEASE_STORE_IO', { verb: 'list', path: nodesDir, cause: causeText(err) }, err);
    }
    const leases = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => readLease(n.slice(0, -5))));
    return leases.filter((l): l is StoredLease => l !== undefined).sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  function encode(lease: Lease, revision: number): { stored: StoredLease; text: string } {
    const stored: StoredLease = { ...lease, attrs: { ...lease.attrs }, revision };
    return { stored, text: JSON.stringify(stored) };
  }

  return {
    async get(node) {
      checkNodeName(node);
      return readLease(node);
    },

    list,

    async create(lease, evict) {
      checkNodeName(lease.node);
      return exclusive(async () => {
        if (evict) {
          const cur = await readLease(evict.node);
          if (cur?.revision !== evict.revision) {
            throw leaseError('WEFT_LEASE_CONFLICT', {
              verb: 'create',
              node: lease.node,
              cause: `the lease of node ${evict.node} changed since revision ${evict.revision}`,
            });
          }
          await remove(cur);
        }
        if (await readLease(lease.node)) {
          throw leaseError('WEFT_LEASE_CONFLICT', { verb: 'create', node: lease.node, cause: 'the node already holds a lease' });
        }
        await claim('create', lease.subnet, lease.node);
        const { stored, text } = encode(lease, await nextRevision());
        if (!(await publishNew(text, nodePath(dir, lease.node)))) {
          throw leaseError('WEFT_LEASE_CONFLICT', { verb: 'create', node: lease.node, cause: 'the node already holds a lease' });
        }
        await syncDir(nodesDir);
        return stored;
      });
    },

    async update(lease, prev) {
      checkNodeName(lease.node);
      return exclusive(async () => {
        const cur = await current('update', lease.node, prev.revision);
        if (cur.subnet !== lease.subnet) await claim('update', lease.subnet, lease.node);
        const { stored, text } = encode(lease, await nextRevision());
        await publishReplace(text, nodePath(dir, lease.node));
        await syncDir(nodesDir);
        if (cur.subnet !== lease.subnet) await unclaim(cur.subnet, lease.node);
        return stored;
      });
    },

    async delete(prev) {
      checkNodeName(prev.node);
      return exclusive(async () => remove(await current('delete', prev.node, prev.revision)));
    },

    watch(onChange) {
      let stopped = false;
      let last: string | undefined;
      let pending: NodeJS.Timeout | undefined;
      let watcher: FSWatcher | undefined;
      const sync = async () => {
        if (stopped) return;
        try {
          const leases = await list();
          const key = JSON.stringify(leases);
          if (!stopped && key !== last) {
            last = key;
            onChange(leases);
          }
        } catch {
          // Level-triggered: the next event or poll retries.
        }
      };
      // Coalesce bursts of inotify events (temp, link, rename) into one list.
      const schedule = () => {
        if (!pending) pending = setTimeout(() => ((pending = undefined), void sync()), 10);
      };
      const poll = setInterval(schedule, opts.watchPollMs ?? 2000);
      void ensureDirs()
        .then(() => {
          if (stopped) return;
          watcher = watchDir(nodesDir, schedule);
          watcher.on('error', () => {});
        })
        .catch(() => {})
        .finally(() => void sync());
      const stop = () => {
        stopped = true;
        clearInterval(poll);
        if (pending) clearTimeout(pending);
        watcher?.close();
        closers.delete(stop);
      };
      closers.add(stop);
      return stop;
    },

    async close() {
      for (const stop of [...closers]) stop();
    },
  };
}

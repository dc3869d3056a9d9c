// A short-held cross-process lock on a lease directory: a lock file created atomically with its
// content (temp file + link(2), so it is never seen empty) that names host, pid and a token. A
// lock whose pid is dead on this host is broken; the token makes breaking safe against two
// processes breaking the same stale lock at once.

import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { causeText, isLeaseError, leaseError } from './errors.ts';

export interface LockOptions {
  /** The lock file, e.g. DIR/lock. */
  path: string;
  /** Directory for the lock's temp file (same filesystem as `path`). */
  tmpDir: string;
  timeoutMs: number;
  /** Called after breaking the lock of a dead process, to clean what it left behind. */
  onStale(deadPid: number): Promise<void>;
}

interface Holder {
  host: string;
  pid: number;
}

/** A random name suffix; names also carry the pid. Not node:crypto, which costs ~5 ms to load on
 * the CNI plugin's path; temp files are opened with O_EXCL, so a collision fails, never clobbers. */
export function uniqueSuffix(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

function parseHolder(text: string): Holder | undefined {
  const [host, pid] = text.split(' ');
  return host && /^\d+$/.test(pid ?? '') ? { host, pid: Number(pid) } : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Takes the lock; resolves to its release function. */
export async function acquireLock(opts: LockOptions): Promise<() => Promise<void>> {
  const host = hostname();
  const content = `${host} ${process.pid} ${uniqueSuffix()}`;
  const temp = `${opts.tmpDir}/${process.pid}-lock-${uniqueSuffix()}`;
  const started = Date.now();
  let delay = 1;
  await writeFile(temp, content, { flag: 'wx' });
  try {
    for (;;) {
      try {
        await link(temp, opts.path);
        return async () => {
          if ((await readOrUndefined(opts.path)) === content) await unlink(opts.path);
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const seen = await readOrUndefined(opts.path);
      if (seen === undefined) continue;
      const holder = parseHolder(seen);
      if (holder && holder.host === host && !isAlive(holder.pid)) {
        await breakStale(opts.path, seen);
        await opts.onStale(holder.pid);
        continue;
      }
      const waited = Date.now() - started;
      if (waited >= opts.timeoutMs) {
        throw leaseError('WEFT_LEASE_STORE_BUSY', {
          dir: opts.path,
          holder: holder ? `pid ${holder.pid} on ${holder.host}` : `unreadable lock "${seen}"`,
          waitedMs: waited,
        });
      }
      // Jitter keeps many waiting processes from retrying in lockstep.
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 8);
    }
  } catch (err) {
    if (isLeaseError(err)) throw err;
    throw leaseError('WEFT_LEASE_STORE_IO', { verb: 'lock', path: opts.path, cause: causeText(err) }, err);
  } finally {
    await unlink(temp).catch(() => {});
  }
}

/** Removes the lock file only if it still holds `seen`; a live lock taken meanwhile is put back. */
async function breakStale(path: string, seen: string): Promise<void> {
  const aside = `${path}.breaking-${process.pid}-${uniqueSuffix()}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if ((await readOrUndefined(aside)) !== seen) {
    await link(aside, path).catch(() => {});
  }
  await unlink(aside);
}

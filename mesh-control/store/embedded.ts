// The embedded store: the cache made durable with an append-only log on disk. A write is
// acknowledged only after its log line is fsynced (writes arriving meanwhile share one fsync, as a
// group commit); every `compactEvery` writes the whole state is written as a snapshot (temp file,
// fsync, rename, directory fsync) and older logs are removed. Loading replays snapshot + logs; a
// torn last line (a crash mid-append) was never acknowledged and is dropped.
import { mkdirSync, openSync, closeSync, fsyncSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ControlError, causeText } from '../errors.ts';
import { objectKey } from '../model/objects.ts';
import type { ClusterObject } from '../model/types.ts';
import { checkPrecondition, createObjectCache, stamp, withRevision, type Change } from './cache.ts';
import type { ObjectStore, WatchEvent } from './types.ts';

export interface EmbeddedStoreConfig {
  dir: string;
  /** Log entries between snapshots (default 10,000). */
  compactEvery?: number;
  historySize?: number;
}

interface LogLine {
  r: number;
  k: string;
  o?: ClusterObject;
}

const SNAPSHOT = 'snapshot.json';
const STORE_ID = 'store-id';
const logName = (firstRevision: number) => `log-${String(firstRevision).padStart(12, '0')}.jsonl`;

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function ioError(verb: string, path: string, err: unknown): ControlError {
  return new ControlError('WEFT_CONTROL_STORE_IO', `failed to ${verb} ${path}: ${causeText(err)}`, { cause: err });
}

export function createEmbeddedStore(config: EmbeddedStoreConfig): ObjectStore {
  const dir = config.dir;
  const compactEvery = config.compactEvery ?? 10_000;
  const cache = createObjectCache({ historySize: config.historySize });
  // Writes accepted but not yet durable: readers of the cache never see them, writers do (so
  // preconditions and revisions stay consistent across one group commit).
  const pending = new Map<string, { revision: number; object?: ClusterObject }>();
  let queue: { line: LogLine; resolve: () => void; reject: (e: Error) => void }[] = [];
  let nextRevision = 0;
  let logFd: number | undefined;
  let logEntries = 0;
  let flushing = false;
  let stopped = false;
  let storeId = '';

  function latest(key: string): ClusterObject | undefined {
    const p = pending.get(key);
    if (p) return p.object && { ...p.object, metadata: { ...p.object.metadata, resourceVersion: String(p.revision) } };
    return cache.get(key);
  }

  function load(): void {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw ioError('create store directory', dir, err);
    }
    storeId = loadStoreId();
    const objects = new Map<string, Change>();
    const events: WatchEvent[] = [];
    let revision = 0;
    let historyStart = 0;
    try {
      const snap = JSON.parse(readFileSync(join(dir, SNAPSHOT), 'utf8')) as { revision: number; objects: { r: number; o: ClusterObject }[] };
      revision = historyStart = snap.revision;
      for (const { r, o } of snap.objects) objects.set(objectKey(o), { key: objectKey(o), revision: r, object: o });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ControlError('WEFT_CONTROL_STORE_CORRUPT', `failed to load snapshot ${join(dir, SNAPSHOT)}: ${causeText(err)}`);
      }
    }
    const logs = readdirSync(dir).filter((n) => /^log-\d+\.jsonl$/.test(n)).sort();
    for (const [i, name] of logs.entries()) {
      const lines = readFileSync(join(dir, name), 'utf8').split('\n');
      for (const [n, text] of lines.entries()) {
        if (text === '') continue;
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch (err) {
          // Only the very end of the newest log may be torn; anything else is damage.
          if (i === logs.length - 1 && n >= lines.length - 2) break;
          throw new ControlError('WEFT_CONTROL_STORE_CORRUPT', `failed to load ${join(dir, name)} line ${n + 1}: ${causeText(err)}`);
        }
        if (line.r <= revision) continue;
        revision = line.r;
        // The log since the snapshot is also watch history, so a restarted service can still
        // serve deltas from revisions its clients saw before the restart.
        const prev = objects.get(line.k);
        if (line.o) events.push({ type: prev?.object ? 'MODIFIED' : 'ADDED', revision: line.r, key: line.k, object: withRevision(line.o, line.r) });
        else if (prev?.object) events.push({ type: 'DELETED', revision: line.r, key: line.k, object: withRevision(prev.object, prev.revision) });
        objects.set(line.k, { key: line.k, revision: line.r, object: line.o });
        logEntries++;
      }
    }
    cache.load([...objects.values()], revision, { historyStart, events });
    nextRevision = revision;
    openLog(logs.length > 0 ? logs[logs.length - 1] : logName(revision + 1));
  }

  /** The directory's identity: read, or created (temp + fsync + rename) with a new directory. */
  function loadStoreId(): string {
    const path = join(dir, STORE_ID);
    try {
      return readFileSync(path, 'utf8').trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('read', path, err);
    }
    const id = randomUUID();
    try {
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, `${id}\n`);
      const fd = openSync(tmp, 'r');
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, path);
      fsyncDir(dir);
    } catch (err) {
      throw ioError('write', path, err);
    }
    return id;
  }

  function openLog(name: string): void {
    try {
      logFd = openSync(join(dir, name), 'a');
      fsyncDir(dir);
    } catch (err) {
      throw ioError('open log', join(dir, name), err);
    }
  }

  function snapshot(): void {
    const revision = cache.revision();
    const body = JSON.stringify({
      revision,
      objects: cache.list().map((o) => ({ r: Number(o.metadata.resourceVersion), o: stamp(o, o) })),
    });
    const tmp = join(dir, `${SNAPSHOT}.tmp`);
    writeFileSync(tmp, body);
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(dir, SNAPSHOT));
    const old = readdirSync(dir).filter((n) => /^log-\d+\.jsonl$/.test(n));
    closeSync(logFd!);
    openLog(logName(revision + 1));
    for (const name of old) rmSync(join(dir, name), { force: true });
    fsyncDir(dir);
    logEntries = 0;
  }

  // One batch per turn: append every queued line, one fsync, then publish to readers.
  function flush(): void {
    if (flushing || queue.length === 0) return;
    flushing = true;
    setImmediate(() => {
      const batch = queue;
      queue = [];
      try {
        writeSync(logFd!, batch.map((b) => `${JSON.stringify(b.line)}\n`).join(''));
        fsyncSync(logFd!);
      } catch (err) {
        const e = ioError('append to log in', dir, err);
        for (const b of batch) pending.delete(b.line.k);
        for (const b of batch) b.reject(e);
        flushing = false;
        flush();
        return;
      }
      const last = batch[batch.length - 1].line.r;
      for (const b of batch) if (pending.get(b.line.k)?.revision === b.line.r) pending.delete(b.line.k);
      cache.apply(batch.map((b) => ({ key: b.line.k, revision: b.line.r, object: b.line.o })), last);
      logEntries += batch.length;
      for (const b of batch) b.resolve();
      if (logEntries >= compactEvery) {
        try {
          snapshot();
        } catch {
          // The log still holds everything; the next batch tries the snapshot again.
        }
      }
      flushing = false;
      flush();
    });
  }

  function append(key: string, object: ClusterObject | undefined): Promise<number> {
    if (stopped || logFd === undefined) {
      return Promise.reject(new ControlError('WEFT_CONTROL_STORE_UNAVAILABLE', `failed to write ${key}: the store is not running`));
    }
    const revision = ++nextRevision;
    pending.set(key, { revision, object });
    return new Promise((resolve, reject) => {
      queue.push({ line: object ? { r: revision, k: key, o: object } : { r: revision, k: key }, resolve: () => resolve(revision), reject });
      flush();
    });
  }

  return {
    async start() {
      load();
    },
    async stop() {
      stopped = true;
      while (flushing || queue.length > 0) await new Promise((r) => setTimeout(r, 1));
      if (logFd !== undefined) closeSync(logFd);
      logFd = undefined;
    },
    id: () => storeId,
    revision: () => cache.revision(),
    historyStart: () => cache.historyStart(),
    get: (key) => cache.get(key),
    list: (kind, namespace) => cache.list(kind, namespace),
    async put(object, opts) {
      const key = objectKey(object);
      const current = latest(key);
      checkPrecondition('update', key, current, opts?.expectRevision);
      const stored = stamp(object, current);
      return withRevision(stored, await append(key, stored));
    },
    async delete(key, opts) {
      const current = latest(key);
      checkPrecondition('delete', key, current, opts?.expectRevision);
      if (current === undefined) return undefined;
      await append(key, undefined);
      return current;
    },
    watch: (from, onEvents) => cache.watch(from, onEvents),
  };
}

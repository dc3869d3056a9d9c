// One writer of the lab at a time: the CLI's changing commands and the lab kubelet take this lock
// (a directory holding the owner's pid; a lock whose owner died is taken over).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LabError } from './errors.ts';
import type { LabLayout } from './layout.ts';

const LOCK_TIMEOUT_MS = 120_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function withLabLock<T>(layout: LabLayout, fn: () => Promise<T>): Promise<T> {
  const dir = join(layout.dir, 'lock');
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      await mkdir(dir);
      await writeFile(join(dir, 'pid'), `${process.pid}\n`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number((await readFile(join(dir, 'pid'), 'utf8').catch(() => '')).trim());
      // No pid yet: its owner is between mkdir and writeFile, or died there (then it is stale after the wait).
      if (owner > 0 && !alive(owner)) await rm(dir, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new LabError('WEFT_LAB_PROCESS', `failed to lock the lab at ${layout.dir}: held by pid ${owner || '?'} for ${LOCK_TIMEOUT_MS} ms`);
      else await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

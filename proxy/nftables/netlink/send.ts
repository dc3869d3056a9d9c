// Runs weft-nft-batch (nft-batch.c, compiled on demand as the CNI shim is): Node has no AF_NETLINK
// socket, so this small helper sends the batches encode.ts built and reports the kernel's answers.
import { execFile, spawn } from 'node:child_process';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../../cni/shim/paths.ts';
import { ProxyError } from '../../errors.ts';
import type { NftBatches } from './encode.ts';

const run = promisify(execFile);

export const NFT_BATCH_CFLAGS = ['-O2', '-Wall', '-Wextra', '-Werror'];

export function nftBatchPaths(root = projectRoot()): { source: string; binary: string } {
  return { source: join(root, 'proxy', 'nftables', 'netlink', 'nft-batch.c'), binary: join(root, 'proxy', 'nftables', 'netlink', 'build', 'weft-nft-batch') };
}

/** Returns the path of an up-to-date helper binary, compiling it first if needed. */
export async function buildNftBatchHelper(paths = nftBatchPaths()): Promise<string> {
  const [srcStat, outStat] = await Promise.all([stat(paths.source), stat(paths.binary).catch(() => undefined)]);
  if (outStat && outStat.mtimeMs >= srcStat.mtimeMs) return paths.binary;
  await mkdir(dirname(paths.binary), { recursive: true });
  // Compile beside the target and rename: concurrent builds never see a half-written binary.
  const tmp = `${paths.binary}.${process.pid}.${Date.now()}.tmp`;
  const cc = process.env.CC || 'cc';
  try {
    await run(cc, [...NFT_BATCH_CFLAGS, '-o', tmp, paths.source]);
    await rename(tmp, paths.binary);
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const cause = e.code === 'ENOENT' ? `${cc} not found (install gcc: scripts/ensure-deps.sh)` : (e.stderr?.trim() || e.message);
    throw new Error(`failed to compile the nftables netlink helper ${paths.source}: ${cause}`);
  }
  return paths.binary;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

interface BatchReport { batch?: number; errors?: { seq: number; errno: number }[]; acked?: number; expected?: number; error?: string }

/**
 * Sends the batches in order (each one transaction); rejects naming the set and errno the kernel
 * refused. Each batch is encoded after the previous one was handed to the helper, so a helper that
 * fails early stops the encoding, and the kernel loads one batch while the next is encoded.
 */
export function sendNftBatches(helper: string, batches: NftBatches, opts: { netns?: string; timeoutMs?: number } = {}): Promise<void> {
  const where = opts.netns ? ` in netns ${opts.netns}` : '';
  let sent = 0;
  return new Promise((resolve, reject) => {
    const child = spawn(helper, opts.netns ? ['--netns', opts.netns] : [], { stdio: ['pipe', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 120_000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString('utf8'); });
    child.stderr.on('data', (b: Buffer) => { err += b.toString('utf8'); });
    child.on('error', (e) => reject(new Error(`failed to run the nftables netlink helper ${helper}: ${e.message}`)));
    child.on('close', (code, signal) => {
      const reports = out.split('\n').filter((l) => l.trim() !== '').map((l) => { try { return JSON.parse(l) as BatchReport; } catch { return { error: `unreadable report "${l}"` }; } });
      const failed = reports.find((r) => r.error);
      if (failed) return reject(new Error(`failed to load nftables elements${where}: ${failed.error}`));
      const rejected = reports.flatMap((r) => r.errors ?? []);
      if (rejected.length > 0) {
        const { seq, errno } = rejected[0];
        return reject(new ProxyError('WEFT_PROXY_APPLY_FAILED', `failed to add elements to set ${batches.messages.get(seq) ?? `(message ${seq})`}${where}: ${ERRNO_NAMES.get(errno) ?? 'errno'} (${errno})${rejected.length > 1 ? `, and ${rejected.length - 1} more message(s)` : ''}`));
      }
      const short = reports.find((r) => r.acked !== r.expected);
      if (code !== 0 || signal || reports.length !== sent || short) {
        return reject(new Error(`failed to load nftables elements${where}: helper exited with ${signal ?? code} after ${reports.length} of ${sent} batches${short ? ` (${short.acked} of ${short.expected} acknowledged)` : ''}${err.trim() ? `: ${err.trim()}` : ''}`));
      }
      resolve();
    });
    child.stdin.on('error', () => undefined);
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    const feed = async (): Promise<void> => {
      for (const b of batches.batches) {
        if (child.exitCode !== null || child.signalCode !== null) break;
        sent++;
        // Until the socket has taken the whole batch, the helper cannot send it: wait for that, so
        // the kernel loads this batch while the next one is encoded (encoding blocks the loop).
        if (!child.stdin.write(b)) await Promise.race([new Promise<void>((r) => child.stdin.once('drain', () => r())), exited]);
      }
      child.stdin.end();
    };
    feed().catch((err: unknown) => {
      child.kill();
      reject(err);
    });
  });
}

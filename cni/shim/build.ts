// Compiles the C shim on demand: only when the binary is missing or older than its source, so
// `weft cni install` and the tests pay for `cc` once.
import { execFile } from 'node:child_process';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { cniPaths } from './paths.ts';

const run = promisify(execFile);

export const SHIM_CFLAGS = ['-O2', '-Wall', '-Wextra', '-Werror'];

/** Returns the path of an up-to-date shim binary, compiling it first if needed. */
export async function buildShim(paths = cniPaths()): Promise<string> {
  const { shimSource: src, shimBinary: out } = paths;
  const [srcStat, outStat] = await Promise.all([stat(src), stat(out).catch(() => undefined)]);
  if (outStat && outStat.mtimeMs >= srcStat.mtimeMs) return out;
  await mkdir(dirname(out), { recursive: true });
  // Compile beside the target and rename: concurrent builds never see a half-written binary.
  const tmp = `${out}.${process.pid}.${Date.now()}.tmp`;
  const cc = process.env.CC || 'cc';
  try {
    await run(cc, [...SHIM_CFLAGS, '-o', tmp, src]);
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const cause = e.code === 'ENOENT' ? `${cc} not found (install gcc: scripts/ensure-deps.sh)` : (e.stderr?.trim() || e.message);
    throw new Error(`failed to compile the CNI shim ${src}: ${cause}`);
  }
  return out;
}

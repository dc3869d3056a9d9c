// Where the pieces `weft cni install` copies live, found from this module's own location so it
// works the same from the source tree (cni/shim/paths.ts) and from the bundle (dist/weft.mjs).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CniPaths {
  /** C source of the shim. */
  shimSource: string;
  /** Where buildShim() compiles the shim to (git-ignored). */
  shimBinary: string;
  /** The bundled Node plugin (`node scripts/build.mjs` writes it). */
  pluginBundle: string;
}

/** The checkout (or installed package) this module belongs to: the nearest package.json named weft. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'weft') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`failed to locate the weft project root above ${fileURLToPath(import.meta.url)}: no package.json named "weft"`);
    dir = parent;
  }
}

export function cniPaths(root = projectRoot()): CniPaths {
  return {
    shimSource: join(root, 'cni', 'shim', 'weft-cni.c'),
    shimBinary: join(root, 'cni', 'shim', 'build', 'weft-cni'),
    pluginBundle: join(root, 'dist', 'weft-cni.mjs'),
  };
}

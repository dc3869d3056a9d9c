// Bundles each entry point into one ESM file under dist/: one file starts faster than a module
// graph, and the CNI fallback plugin is copied as a single self-contained file by `weft cni install`.
import { build } from 'esbuild';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const entries = {
  'weft.mjs': 'cli/weft.ts',
  'weft-cni.mjs': 'cni/plugin-main.ts',
  'pod-server.mjs': 'lab/pod-server.ts',
};

mkdirSync(join(root, 'dist'), { recursive: true });
await Promise.all(Object.entries(entries).map(async ([out, src]) => {
  const outfile = join(root, 'dist', out);
  await build({
    entryPoints: [join(root, src)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    banner: {
      js: "#!/usr/bin/env node\nimport { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  chmodSync(outfile, 0o755);
}));

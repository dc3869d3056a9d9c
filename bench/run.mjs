#!/usr/bin/env node
// Runs a TypeScript benchmark: `node bench/run.mjs <name> [flags]` bundles bench/<name>/run.ts with
// esbuild (Node 20 cannot run .ts) and runs it with the flags. The bundle goes under
// node_modules/.cache so the benchmark still finds the project root from its own location.
import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [name, ...args] = process.argv.slice(2);
const entry = name && join(root, 'bench', name, 'run.ts');
if (!entry || !existsSync(entry)) {
  process.stderr.write(`usage: node bench/run.mjs <name> [flags]   (runs bench/<name>/run.ts)\n`);
  process.exit(2);
}

const out = join(root, 'node_modules', '.cache', 'weft-bench', `${name}-run.mjs`);
await build({
  entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning',
  // esbuild (the benchmark's own bundler for helpers it spawns) stays a package, not bundled.
  external: ['esbuild'],
  banner: { js: "import { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);" },
});
// The control service runs as `weft lab` runs it: glibc gives freed snapshot buffers back to the
// system (mesh-control/README.md). A value in the environment wins.
const env = name === 'control' ? { MALLOC_TRIM_THRESHOLD_: '131072', ...process.env } : process.env;
const child = spawn(process.execPath, [out, ...args], { stdio: 'inherit', env });
// The benchmark cleans up on SIGINT/SIGTERM itself; forward them and wait for it.
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

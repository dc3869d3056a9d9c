// Drives the weft CNI plugin as a runtime would: env + JSON on stdin, exec'd inside a node
// namespace. Bundles its own copy of the plugin (same esbuild options as scripts/build.mjs) so a
// test does not depend on, or race with, other parts' entry points in dist/.
import { build } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Netns } from './netns.ts';

const root = join(import.meta.dirname, '..', '..');

export interface Bundles {
  dir: string;
  /** The bundled plugin-main (the exec'd plugin). */
  plugin: string;
  /** Each requested entry's bundle, by the name it was given. */
  paths: Record<string, string>;
  remove(): void;
}

/** Bundles project entry points (paths relative to the repo root) into a temp dir, as .mjs files. */
export async function bundle(entries: Record<string, string>): Promise<Bundles> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-cni-test-'));
  const out: Record<string, string> = {};
  await Promise.all(Object.entries({ plugin: 'cni/plugin-main.ts', ...entries }).map(async ([name, src]) => {
    out[name] = join(dir, `${name}.mjs`);
    await build({
      entryPoints: [join(root, src)],
      outfile: out[name],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      banner: { js: "import { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);" },
      logLevel: 'error',
    });
  }));
  return { dir, plugin: out.plugin, paths: out, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'GC' | 'VERSION';
  containerID?: string;
  netns?: string;
  ifname?: string;
  args?: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a CNI result or error object, read by assertions
export interface CniOutput { code: number; stdout: string; stderr: string; json: any }

export function cniEnv(call: CniCall): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerID ?? '',
    CNI_NETNS: call.netns ?? '',
    CNI_IFNAME: call.ifname ?? (call.containerID ? 'eth0' : ''),
    CNI_ARGS: call.args ?? '',
    CNI_PATH: '/opt/cni/bin',
  };
}

/** Execs the bundled plugin inside `node` (a namespace) with `conf` on stdin. */
export async function execCni(node: Netns, plugin: string, call: CniCall, conf: object): Promise<CniOutput> {
  const r = await node.exec(process.execPath, [plugin], { input: JSON.stringify(conf), env: cniEnv(call) });
  let json: unknown;
  try {
    json = r.stdout ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

/** The config a runtime sends for CHECK/DEL: the ADD config plus the cached result. */
export function withPrevResult(conf: object, result: unknown): object {
  return { ...conf, prevResult: result };
}

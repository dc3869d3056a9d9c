// The installed shim driving the real plugin: through `weft cni serve` running in a node
// namespace, then with the daemon stopped (fallback). Needs root; everything happens in
// namespaces this test creates (wt-fpn-*), removed in afterAll.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCni } from '../cni/install.ts';
import { cniPaths, projectRoot } from '../cni/shim/paths.ts';
import { tempDir } from './helpers/cni-fastpath.ts';

const isRoot = process.getuid?.() === 0;
const id = randomBytes(3).toString('hex');
const nodeNs = `wt-fpn-${id}-node`;
const otherNs = `wt-fpn-${id}-other`;
const podNs = `wt-fpn-${id}-pod`;
const SUBNET = '10.244.61.0/24';
const dir = tempDir('wt-fpn');
const socket = join(dir.path, 'cni.sock');
let binary = '';
let conf: Record<string, unknown> = {};
let daemon: ChildProcess | undefined;
let daemonLog = '';

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

/** Execs the installed shim from inside `ns`, as a runtime on that node would. */
function shim(ns: string, command: string, stdin: object, containerID = 'ctr-fp1') {
  const r = spawnSync('ip', ['netns', 'exec', ns, binary], {
    input: JSON.stringify(stdin),
    env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: containerID, CNI_NETNS: `/run/netns/${podNs}`, CNI_IFNAME: 'eth0', CNI_PATH: dir.path },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function startDaemon(): Promise<void> {
  daemonLog = '';
  const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, join(projectRoot(), 'dist', 'weft.mjs'), 'cni', 'serve', '--socket', socket, '--subnet', SUBNET], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon = child;
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (c: Buffer) => {
      daemonLog += c.toString();
      if (daemonLog.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`weft cni serve exited with ${code}: ${daemonLog}`)));
  });
}

function stopDaemon(): Promise<number | null> {
  const child = daemon;
  daemon = undefined;
  if (!child || child.exitCode !== null) return Promise.resolve(child?.exitCode ?? null);
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/** ADD then DEL through the shim; checks the pod got (and lost) its address. */
function addAndDelete(containerID: string) {
  const add = shim(nodeNs, 'ADD', conf, containerID);
  expect(add.code, `${add.stdout} ${add.stderr}`).toBe(0);
  const result = JSON.parse(add.stdout) as { ips: Array<{ address: string; gateway: string }> };
  expect(result.ips[0].address).toMatch(/^10\.244\.61\.\d+\/24$/);
  expect(result.ips[0].gateway).toBe('10.244.61.1');
  expect(ip('-n', podNs, '-br', 'addr', 'show', 'dev', 'eth0')).toContain(result.ips[0].address);
  const del = shim(nodeNs, 'DEL', { ...conf, prevResult: result }, containerID);
  expect(del.code, `${del.stdout} ${del.stderr}`).toBe(0);
  expect(spawnSync('ip', ['-n', podNs, 'link', 'show', 'eth0']).status).not.toBe(0);
  return result;
}

describe.skipIf(!isRoot)('CNI fast path in a node namespace (root)', () => {
  beforeAll(async () => {
    if (!existsSync(cniPaths().pluginBundle) || !existsSync(join(projectRoot(), 'dist', 'weft.mjs'))) {
      execFileSync(process.execPath, [join(projectRoot(), 'scripts', 'build.mjs')]);
    }
    for (const ns of [nodeNs, otherNs, podNs]) ip('netns', 'add', ns);
    const installed = await installCni({ binDir: dir.path, confDir: join(dir.path, 'net.d'), subnet: SUBNET, daemonSocket: socket, dataDir: join(dir.path, 'ipam'), bridge: 'wtfp0' });
    binary = installed.binary;
    conf = { cniVersion: '1.0.0', name: 'weft', ...(JSON.parse(readFileSync(installed.conflist, 'utf8')).plugins[0] as object) };
  });

  afterAll(async () => {
    await stopDaemon();
    for (const ns of [podNs, otherNs, nodeNs]) spawnSync('ip', ['netns', 'del', ns]);
    dir.remove();
  });

  it('serves ADD and DEL through the daemon (the fallback is absent, so it cannot have run)', async () => {
    const fallback = join(dir.path, 'weft-cni.mjs');
    renameSync(fallback, `${fallback}.away`);
    try {
      await startDaemon();
      addAndDelete('ctr-fp1');
      // DEL again, and DEL of something never added: both succeed (idempotent verbs).
      expect(shim(nodeNs, 'DEL', conf, 'ctr-fp1').code).toBe(0);
      expect(shim(nodeNs, 'DEL', conf, 'ctr-never').code).toBe(0);
    } finally {
      renameSync(`${fallback}.away`, fallback);
    }
  });

  it('refuses a shim in another namespace, which then runs the fallback itself', () => {
    const r = shim(otherNs, 'VERSION', { cniVersion: '1.0.0', daemonSocket: socket });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ cniVersion: '1.0.0' });
    expect(r.stderr).toMatch(/refused the request \(wrong network namespace: shim runs in net:\[\d+\], daemon in net:\[\d+\]\); running weft-cni.mjs instead/);
  });

  it('stops cleanly on SIGTERM, removing its socket', async () => {
    expect(await stopDaemon()).toBe(0);
    expect(daemonLog).toMatch(/SIGTERM: finishing in-flight requests\n.*stopped\n$/);
    expect(existsSync(socket)).toBe(false);
  });

  it('gives the same results through the fallback plugin with the daemon down', () => {
    addAndDelete('ctr-fp2');
  });
});

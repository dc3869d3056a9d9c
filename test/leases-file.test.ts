// File store specifics: many processes racing, stale locks, crash leftovers, on-disk layout.

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { createFileLeaseStore, createSubnetAllocator, isLeaseError, lookupNodeSubnet, openLeaseStore } from '../mesh-control/leases/index.ts';
import type { Lease, LeaseStore } from '../mesh-control/leases/index.ts';

const repo = resolve(import.meta.dirname, '..');

// A node agent process: says "ready", waits for "go" on stdin, acquires one lease and prints it.
const CHILD = `
import { createSubnetAllocator, openLeaseStore } from './mesh-control/leases/index.ts';
const [dir, node, clusterCIDR] = process.argv.slice(2);
const store = openLeaseStore({ dir });
const alloc = createSubnetAllocator(store, { clusterCIDR, nodeMask: 24 });
process.stdout.write('ready\\n');
await new Promise((r) => process.stdin.once('data', r));
process.stdin.destroy();
try {
  process.stdout.write(JSON.stringify(await alloc.acquire(node, { owner: 'pid-' + process.pid })));
} catch (err) {
  process.stdout.write(JSON.stringify({ code: err.code, message: err.message }));
}
await store.close();
`;

let work: string;
let child: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'weft-leases-file-'));
  child = join(work, 'lease-child.mjs');
  await build({
    stdin: { contents: CHILD, resolveDir: repo, loader: 'ts', sourcefile: 'lease-child.ts' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: child,
    logLevel: 'silent',
  });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

type ChildResult = Lease | { code: string; message: string };

interface Child {
  ready: Promise<void>;
  result: Promise<ChildResult>;
  go(): void;
}

function startChild(dir: string, node: string, clusterCIDR: string): Child {
  const p = spawn(process.execPath, [child, dir, node, clusterCIDR], { stdio: ['pipe', 'pipe', 'pipe'] });
  const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
  let out = '';
  let err = '';
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  p.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (out.startsWith('ready\n')) onReady();
  });
  p.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const result = new Promise<ChildResult>((resolveChild, reject) => {
    p.on('exit', (code) => {
      clearTimeout(timer);
      const json = out.slice('ready\n'.length);
      if (code === 0 && json) resolveChild(JSON.parse(json) as ChildResult);
      else reject(new Error(`lease child ${node} exited ${code}: ${err}`));
    });
  });
  // A child that dies before "ready" must not hang the barrier.
  result.catch(() => onReady());
  return { ready, result, go: () => p.stdin.end('go\n') };
}

/** Starts `count` node processes, waits until all are up, then lets them acquire at once. */
async function race(dir: string, count: number, clusterCIDR: string): Promise<ChildResult[]> {
  const children = Array.from({ length: count }, (_, i) => startChild(dir, `node-${i}`, clusterCIDR));
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.go();
  return Promise.all(children.map((c) => c.result));
}

describe('file lease store', () => {
  let dir: string;
  const opened: LeaseStore[] = [];
  const open = (opts: { lockTimeoutMs?: number } = {}) => {
    const s = createFileLeaseStore({ dir, ...opts });
    opened.push(s);
    return s;
  };
  const allocator = (store = open()) => createSubnetAllocator(store, { clusterCIDR: '10.244.0.0/16', nodeMask: 24 });

  beforeEach(async () => {
    dir = await mkdtemp(join(work, 'store-'));
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  });

  it('gives 20 racing processes 20 distinct subnets', async () => {
    const results = await race(dir, 20, '10.244.0.0/16');
    const subnets = results.map((r) => ('subnet' in r ? r.subnet : r.message));
    expect(new Set(subnets).size).toBe(20);
    for (const s of subnets) expect(s).toMatch(/^10\.244\.\d+\.0\/24$/);
    expect((await readdir(join(dir, 'subnets'))).length).toBe(20);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    const listed = await open().list();
    expect(listed.map((l) => `${l.node}=${l.subnet}`).sort()).toEqual(results.map((r) => `${(r as Lease).node}=${(r as Lease).subnet}`).sort());
  }, 60_000);

  it('lets exactly as many racing processes win as there are subnets', async () => {
    const results = await race(dir, 12, '10.244.0.0/22');
    const won = results.filter((r): r is Lease => 'subnet' in r).map((r) => r.subnet);
    expect(won.sort()).toEqual(['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']);
    for (const r of results) if (!('subnet' in r)) expect(r.code).toBe('WEFT_LEASE_EXHAUSTED');
  }, 60_000);

  it('lays out one file per node and one claim per subnet, and removes both on release', async () => {
    const alloc = allocator();
    await alloc.acquire('node-a', { owner: 'agent-1', attrs: { underlayIP: '192.0.2.7' } });
    const onDisk = JSON.parse(await readFile(join(dir, 'nodes', 'node-a.json'), 'utf8')) as Record<string, unknown>;
    expect(onDisk).toMatchObject({ node: 'node-a', subnet: '10.244.0.0/24', owner: 'agent-1', attrs: { underlayIP: '192.0.2.7' } });
    expect(JSON.parse(await readFile(join(dir, 'subnets', '10.244.0.0-24'), 'utf8'))).toEqual({ node: 'node-a' });
    await alloc.release('node-a');
    expect(await readdir(join(dir, 'nodes'))).toEqual([]);
    expect(await readdir(join(dir, 'subnets'))).toEqual([]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('breaks the lock of a dead process and removes its temp files', async () => {
    const dead = spawnSync('true').pid!;
    await mkdir(join(dir, 'tmp'), { recursive: true });
    await writeFile(join(dir, 'lock'), `${hostname()} ${dead} deadbeef`);
    await writeFile(join(dir, 'tmp', `${dead}-halfwritten`), '{"node":"node-a","sub');
    const started = Date.now();
    expect((await allocator(open({ lockTimeoutMs: 2000 })).acquire('node-a', { owner: 'o' })).subnet).toBe('10.244.0.0/24');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual(['nodes', 'revision', 'subnets', 'tmp']);
  });

  it('waits for a live lock holder and then names it', async () => {
    await writeFile(join(dir, 'lock'), `${hostname()} ${process.pid} cafe`);
    const err = await allocator(open({ lockTimeoutMs: 150 }))
      .acquire('node-a', { owner: 'o' })
      .catch((e: unknown) => e);
    expect(isLeaseError(err, 'WEFT_LEASE_STORE_BUSY'), String(err)).toBe(true);
    expect((err as Error).message).toContain(`pid ${process.pid}`);
    await rm(join(dir, 'lock'));
    expect((await allocator().acquire('node-a', { owner: 'o' })).subnet).toBe('10.244.0.0/24');
  });

  it('reclaims a subnet claim left by a crash between claim and lease', async () => {
    await mkdir(join(dir, 'subnets'), { recursive: true });
    await writeFile(join(dir, 'subnets', '10.244.0.0-24'), JSON.stringify({ node: 'node-ghost' }));
    expect((await allocator().acquire('node-a', { owner: 'o' })).subnet).toBe('10.244.0.0/24');
    expect(JSON.parse(await readFile(join(dir, 'subnets', '10.244.0.0-24'), 'utf8'))).toEqual({ node: 'node-a' });
  });

  it('looks up with one read, tolerating a missing directory, and names a corrupt record', async () => {
    expect(await lookupNodeSubnet({ dir: join(dir, 'absent') }, 'node-a')).toBeUndefined();
    await allocator().acquire('node-a', { owner: 'o' });
    expect(await lookupNodeSubnet({ dir }, 'node-a')).toBe('10.244.0.0/24');
    await writeFile(join(dir, 'nodes', 'node-b.json'), '{"node":"node-b","subn');
    const err = await lookupNodeSubnet({ dir }, 'node-b').catch((e: unknown) => e);
    expect(isLeaseError(err, 'WEFT_LEASE_CORRUPT')).toBe(true);
    expect((err as Error).message).toContain(join(dir, 'nodes', 'node-b.json'));
    await expect(lookupNodeSubnet({ dir }, '../node-a')).rejects.toMatchObject({ code: 'WEFT_LEASE_INVALID_NODE' });
  });

  it('refuses a source with both a directory and etcd endpoints', () => {
    expect(() => openLeaseStore({ dir, etcdEndpoints: ['http://127.0.0.1:2379'] })).toThrow(/either a lease directory or etcd endpoints/);
  });
});

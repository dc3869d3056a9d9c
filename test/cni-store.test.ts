// The address store: round-robin, requested addresses, exhaustion, and safety across processes
// (50 concurrent reservers; reservers SIGKILLed at random points). Filesystem only, no root.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIPv4, parseCidr, parseIPv4 } from '../mesh-control/model/cidr.ts';
import type { CniError } from '../cni/errors.ts';
import { capacity, openAddressStore } from '../cni/ipam/store.ts';
import { bundle, type Bundles } from './helpers/cni.ts';

const tmp = mkdtempSync(join(tmpdir(), 'weft-cni-store-'));
let bundles: Bundles;
beforeAll(async () => {
  bundles = await bundle({ store: 'cni/ipam/store.ts' });
});
afterAll(() => {
  bundles?.remove();
  rmSync(tmp, { recursive: true, force: true });
});

const range = (cidr: string) => {
  const subnet = parseCidr(cidr);
  return { subnet, gateway: subnet.network + 1 };
};
const key = (i: number | string) => ({ containerID: `ctr-${i}`, ifname: 'eth0' });
let n = 0;
const freshStore = () => openAddressStore({ dataDir: tmp, network: `net${n++}` });

describe('address store', () => {
  it('hands out addresses round-robin, skipping the gateway, and does not reuse a freed one at once', () => {
    const store = freshStore();
    const r = range('10.244.1.0/24');
    expect(formatIPv4(store.reserve(key(1), r))).toBe('10.244.1.2');
    expect(formatIPv4(store.reserve(key(2), r))).toBe('10.244.1.3');
    expect(store.release(key(1))).toEqual(['10.244.1.2']);
    expect(formatIPv4(store.reserve(key(3), r))).toBe('10.244.1.4');
    expect(readFileSync(join(store.dir, '10.244.1.4'), 'utf8')).toBe('ctr-3\r\neth0');
    expect(readFileSync(join(store.dir, 'last_reserved_ip.0'), 'utf8')).toBe('10.244.1.4');
  });

  it('wraps around and reports a full subnet with its size (code 100)', () => {
    const store = freshStore();
    const r = range('10.244.2.0/29');
    expect(capacity(r)).toBe(5);
    const got = [1, 2, 3, 4, 5].map((i) => formatIPv4(store.reserve(key(i), r)));
    expect(got).toEqual(['10.244.2.2', '10.244.2.3', '10.244.2.4', '10.244.2.5', '10.244.2.6']);
    let err: CniError | undefined;
    try {
      store.reserve(key(6), r);
    } catch (e) {
      err = e as CniError;
    }
    expect(err?.code).toBe(100);
    expect(err?.message).toBe('no free address in 10.244.2.0/29: all 5 in use');
    store.release(key(2));
    expect(formatIPv4(store.reserve(key(7), r))).toBe('10.244.2.3');
  });

  it('refuses a second reservation for the same attachment, as host-local does', () => {
    const store = freshStore();
    const r = range('10.244.3.0/24');
    store.reserve(key(1), r);
    expect(() => store.reserve(key(1), r)).toThrow('10.244.3.2 has been allocated to ctr-1/eth0, duplicate allocation is not allowed');
    expect(formatIPv4(store.reserve({ containerID: 'ctr-1', ifname: 'eth1' }, r))).toBe('10.244.3.3');
  });

  it('honours a requested address and names its owner when taken', () => {
    const store = freshStore();
    const r = range('10.244.4.0/24');
    expect(formatIPv4(store.reserve(key(1), r, parseIPv4('10.244.4.77')))).toBe('10.244.4.77');
    expect(() => store.reserve(key(2), r, parseIPv4('10.244.4.77'))).toThrow('requested address 10.244.4.77 is already allocated to ctr-1/eth0');
    expect(() => store.reserve(key(3), r, parseIPv4('10.244.5.7'))).toThrow(/not assignable in the node subnet 10.244.4.0\/24/);
    expect(() => store.reserve(key(4), r, parseIPv4('10.244.4.1'))).toThrow(/it is the gateway/);
    expect(store.list().map((a) => a.ip)).toEqual(['10.244.4.77']);
  });

  it('releases idempotently and leaves other attachments alone', () => {
    const store = freshStore();
    const r = range('10.244.6.0/24');
    store.reserve(key(1), r);
    store.reserve(key(2), r);
    expect(store.release(key(1), '10.244.6.2')).toEqual(['10.244.6.2']);
    expect(store.release(key(1))).toEqual([]);
    expect(store.release(key(9))).toEqual([]);
    expect(store.find(key(2))?.ip).toBe('10.244.6.3');
  });
});

/**
 * Runs `count` node processes that each reserve `perChild` addresses (releasing each one before the
 * next when `churn`); with `killAfterMs` each is SIGKILLed that long after it reports it is running.
 */
function runChildren(network: string, cidr: string, count: number, perChild: number, opts: { churn?: boolean; killAfterMs?: () => number } = {}): Promise<number[]> {
  const script = `
    const { openAddressStore } = await import(${JSON.stringify(bundles.paths.store)});
    const [a, p] = ${JSON.stringify(cidr)}.split('/');
    const subnet = { network: a.split('.').reduce((x, o) => x * 256 + Number(o), 0), prefix: Number(p) };
    const store = openAddressStore({ dataDir: ${JSON.stringify(tmp)}, network: ${JSON.stringify(network)} });
    process.stdout.write('running\\n');
    for (let i = 0; i < ${perChild}; i++) {
      const key = { containerID: 'c' + process.argv[1] + '-' + i, ifname: 'eth0' };
      store.reserve(key, { subnet, gateway: subnet.network + 1 });
      if (${Boolean(opts.churn)}) store.release(key);
    }
  `;
  return Promise.all(Array.from({ length: count }, (_, i) => new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, String(i)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let timer: NodeJS.Timeout | undefined;
    child.stdout.once('data', () => {
      if (opts.killAfterMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs());
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  })));
}

describe('address store across processes', () => {
  it('gives 50 processes started at once 50 distinct addresses', async () => {
    const codes = await runChildren('concurrent', '10.245.0.0/24', 50, 1);
    expect(codes.every((c) => c === 0)).toBe(true);
    const store = openAddressStore({ dataDir: tmp, network: 'concurrent' });
    const all = store.list();
    expect(all).toHaveLength(50);
    expect(new Set(all.map((a) => a.ip)).size).toBe(50);
    expect(new Set(all.map((a) => a.containerID)).size).toBe(50);
  });

  it('leaves no duplicate, no half-written reservation and no lost address after processes are killed mid-ADD', async () => {
    const cidr = '10.245.1.0/26';
    // Each child reserves and releases in a bounded loop until it is killed at a random point.
    const codes = await runChildren('killed', cidr, 12, 20_000, { churn: true, killAfterMs: () => Math.floor(Math.random() * 60) });
    expect(codes.filter((c) => c === -1).length).toBeGreaterThan(0);
    const store = openAddressStore({ dataDir: tmp, network: 'killed' });
    const all = store.list();
    expect(new Set(all.map((a) => a.ip)).size).toBe(all.length);
    for (const a of all) expect(a).toMatchObject({ containerID: expect.stringMatching(/^c\d+-\d+$/), ifname: 'eth0' });
    // GC with no valid attachments: every reservation and temp file goes, every address is free again.
    store.sweepTemp();
    for (const a of all) store.release(a, a.ip);
    expect(readdirSync(store.dir).filter((f) => f !== 'last_reserved_ip.0')).toEqual([]);
    const r = range(cidr);
    const again = Array.from({ length: capacity(r) }, (_, i) => store.reserve(key(`again-${i}`), r));
    expect(new Set(again).size).toBe(61);
  });
});

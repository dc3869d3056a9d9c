// Kernel tests of full nftables syncs over netlink (proxy/nftables/netlink/ + the nftables
// dataplane), inside throwaway `wt-` namespaces: what the netlink path loads lists exactly as the
// same ruleset loaded by `nft -f`; a full sync over a live table switches generations without a
// failed connection; a failing helper falls back to `nft -f` and says so once.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyState } from '../proxy/model/build-proxy-state.ts';
import { createNftablesDataplane } from '../proxy/agent/nftables-dataplane.ts';
import { nftFullScript, renderNftables } from '../proxy/nftables/render.ts';
import { nftApply, nftListTable } from '../proxy/nftables/apply.ts';
import { ProxyError } from '../proxy/errors.ts';
import type { Service } from '../mesh-control/model/types.ts';
import { createNetns, netnsSkipReason, type Netns } from './helpers/netns.ts';
import { nodeNamespace } from './helpers/proxy-node.ts';
import { makeService, makeSlice, node, TEST_CLUSTER_CIDR, TEST_NODE, TEST_NODE_IP } from './helpers/proxy-fixtures.ts';

const skip = netnsSkipReason();
const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];
const OPTIONS = { serviceCIDRs: ['172.30.0.0/16'] };

/** `extra` plain services beside one of every shape (NodePort, external/LB IPs, both policies, affinity, source ranges, no endpoints). */
function cluster(endpoints: string[], extra = 0) {
  const np = (port: number) => [{ ...p80[0], nodePort: port }];
  const services: Service[] = [
    makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }),
    makeService('ns1', 'empty', { clusterIP: '172.30.0.46', ports: [{ ...p80[0], nodePort: 30046 }], type: 'NodePort' }),
    makeService('ns1', 'lb', { type: 'LoadBalancer', clusterIP: '172.30.0.45', ports: np(30080), sessionAffinity: 'ClientIP', loadBalancerSourceRanges: ['203.0.113.0/25'] }, ['5.6.7.8']),
    makeService('ns2', 'np', { type: 'NodePort', clusterIP: '172.30.1.1', ports: [...np(30101), { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }], externalIPs: ['192.0.2.1'] }),
    makeService('ns2', 'etp', { type: 'LoadBalancer', clusterIP: '172.30.1.2', ports: np(30102), externalTrafficPolicy: 'Local' }, ['5.6.7.2']),
    makeService('ns2', 'itp', { clusterIP: '172.30.1.3', ports: p80, internalTrafficPolicy: 'Local' }),
  ];
  const slices = ['svc1', 'lb', 'np', 'etp', 'itp'].map((name) => makeSlice(name === 'svc1' || name === 'lb' ? 'ns1' : 'ns2', name,
    endpoints.map((ip, i) => ({ addresses: [ip], nodeName: i % 2 === 0 ? TEST_NODE : 'other' })),
    [{ name: 'p80', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }]));
  for (let i = 0; i < extra; i++) {
    services.push(makeService('ns3', `s${i}`, { clusterIP: `172.30.${2 + (i >> 8)}.${i & 255}`, ports: p80 }));
    slices.push(makeSlice('ns3', `s${i}`, [0, 1, 2].map((e) => ({ addresses: [`10.181.${i >> 6}.${((i & 63) << 2) + e}`], nodeName: e === 0 ? TEST_NODE : 'other' }))));
  }
  return buildProxyState({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR });
}

/** Whether one TCP connection to ip:80 from inside `netns` is answered (bounded: 3 s). */
function connectsTo(netns: string, ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e',
      `const s = require('net').connect(80, '${ip}'); s.setTimeout(3000, () => process.exit(1)); s.on('data', () => process.exit(0)); s.on('error', () => process.exit(1));`], { stdio: 'ignore' });
    child.on('close', (code) => resolve(code === 0));
  });
}

/** The listing with its top-level blocks (sets, maps, chains) sorted: creation order differs between the two paths. */
function normalized(listing: string | undefined): string {
  const body = (listing ?? '').trim().replace(/^table ip weft \{\n/, '').replace(/\n\}$/, '');
  return body.split('\n\n').map((b) => b.trim()).sort().join('\n\n');
}

describe.skipIf(skip)(`nftables full sync over netlink in wt- namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let a: Netns | undefined;
  let b: Netns | undefined;
  let server: ChildProcess | undefined;
  beforeAll(async () => {
    ({ ns: a, server } = await nodeNamespace('nl'));
    b = await createNetns('nlref');
  }, 30_000);
  afterAll(async () => {
    server?.kill();
    await a?.remove();
    await b?.remove();
  });

  /** The table `nft -f` makes of `state`'s full render in namespace b, normalized: what the netlink path must equal. */
  const reference = async (state: ReturnType<typeof cluster>, generation: string) => {
    await nftApply(nftFullScript(renderNftables(state, { ...OPTIONS, generation })), { netns: b!.name });
    return normalized(await nftListTable('weft', { netns: b!.name }));
  };

  it('loads every service shape as nft -f would, switches generations over a live table, and keeps incremental syncs working', async () => {
    const logs: string[] = [];
    const dp = createNftablesDataplane({ ...OPTIONS, netns: a!.name }, { log: (m) => logs.push(m) });
    const first = cluster(['10.180.0.1', '10.180.0.2', '10.180.0.3'], 40);
    await dp.sync(first, true);
    const listed = await nftListTable('weft', { netns: a!.name });
    expect(listed).toContain('map service-ips-a');
    expect(normalized(listed)).toBe(await reference(first, 'a'));

    // A full sync over the live table builds generation b beside a, then switches in one transaction.
    const second = cluster(['10.180.0.1', '10.180.0.4'], 40);
    await dp.sync(second, true);
    const switched = await nftListTable('weft', { netns: a!.name });
    expect(switched).not.toContain('service-ips-a');
    expect(normalized(switched)).toBe(await reference(second, 'b'));

    // Incremental syncs edit generation b.
    const third = cluster(['10.180.0.1', '10.180.0.2', '10.180.0.3'], 41);
    await dp.sync(third, false);
    expect(normalized(await nftListTable('weft', { netns: a!.name }))).toBe(await reference(third, 'b'));
    expect(logs).toEqual([]);

    await dp.cleanup();
    expect(await nftListTable('weft', { netns: a!.name })).toBeUndefined();
  }, 60_000);

  it('a ClusterIP answers every connection while full syncs replace a live table', async () => {
    const dp = createNftablesDataplane({ ...OPTIONS, netns: a!.name }, { log: () => undefined });
    const states = [cluster(['10.180.0.1'], 1500), cluster(['10.180.0.1'], 1400)];
    await dp.sync(states[0], true);
    // Bounded probe loop: connects until told to stop (stdin closes), at most 60 s or 20000 connections.
    const probe = spawn('ip', ['netns', 'exec', a!.name, process.execPath, '-e', `
      const net = require('net'); let ok = 0, failed = 0, stop = false; const until = Date.now() + 60000;
      process.stdin.on('end', () => { stop = true; }); process.stdin.resume();
      const next = () => {
        if (stop || Date.now() > until || ok + failed >= 20000) { console.log(JSON.stringify({ ok, failed })); process.exit(0); }
        const s = net.connect(80, '172.30.0.41'); s.setTimeout(2000, () => { failed++; s.destroy(); next(); });
        s.on('data', () => { ok++; s.destroy(); next(); }); s.on('error', () => { failed++; next(); });
      };
      console.log('started'); next();`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    const started = new Promise<void>((resolve) => probe.stdout.on('data', (d: Buffer) => { out += String(d); if (out.includes('started')) resolve(); }));
    const done = new Promise<void>((resolve) => probe.on('close', () => resolve()));
    try {
      await started;
      for (let i = 0; i < 4; i++) await dp.sync(states[(i + 1) % 2], true);
    } finally {
      probe.stdin.end();
      await done;
    }
    const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ok: number; failed: number };
    expect(result.failed).toBe(0);
    expect(result.ok).toBeGreaterThan(10);
    await dp.cleanup();
  }, 120_000);

  it('a failed switch leaves the live generation serving, and the next sync replaces the table', async () => {
    let failSwitch = true;
    // The switch is the one transaction that deletes the old generation's maps; the nft -f
    // replacement the dataplane falls back to fails too, as a broken nft would.
    const apply = async (text: string) => {
      if (failSwitch && (text.includes('delete map ip weft service-ips-') || text.startsWith('add table ip weft\ndelete table'))) throw new Error('injected nft failure');
      await nftApply(text, { netns: a!.name });
    };
    const dp = createNftablesDataplane({ ...OPTIONS, netns: a!.name }, { apply, log: () => undefined });
    const first = cluster(['10.180.0.1'], 5);
    await dp.sync(first, true);
    await expect(dp.sync(cluster(['10.180.0.1', '10.180.0.9'], 6), true)).rejects.toThrow('injected nft failure');
    const listed = await nftListTable('weft', { netns: a!.name });
    // Every chain still names generation a; generation b was only staged beside it.
    expect(listed).toContain('vmap @service-ips-a');
    expect(listed).not.toContain('vmap @service-ips-b');
    expect(await connectsTo(a!.name, '172.30.0.41')).toBe(true);
    failSwitch = false;
    const third = cluster(['10.180.0.1'], 7);
    const outcome = await dp.sync(third, false);
    expect(outcome.full).toBe(true);
    expect(normalized(await nftListTable('weft', { netns: a!.name }))).toBe(await reference(third, 'a'));
    expect(await connectsTo(a!.name, '172.30.0.41')).toBe(true);
    await dp.cleanup();
  }, 60_000);

  it('falls back to nft -f when the netlink helper fails, and says so once', async () => {
    const logs: string[] = [];
    let sends = 0;
    const dp = createNftablesDataplane({ ...OPTIONS, netns: a!.name }, {
      log: (m) => logs.push(m),
      sendBatches: async () => { sends++; throw new Error('failed to load nftables elements: EPERM'); },
    });
    const state = cluster(['10.180.0.1', '10.180.0.2'], 5);
    await dp.sync(state, true);
    await dp.sync(state, true);
    expect(sends).toBe(1);
    expect(logs).toEqual(['nftables netlink loading unavailable (failed to load nftables elements: EPERM): full syncs use nft -f']);
    // The first sync had picked generation a before the helper failed; later ones keep it.
    expect(normalized(await nftListTable('weft', { netns: a!.name }))).toBe(await reference(state, 'a'));
    await dp.cleanup();
  }, 60_000);

  it('keeps the fast path when the kernel refused one load: that sync replaces the table, the next loads over netlink again', async () => {
    const logs: string[] = [];
    let sends = 0;
    const dp = createNftablesDataplane({ ...OPTIONS, netns: a!.name }, {
      log: (m) => logs.push(m),
      sendBatches: async () => {
        if (++sends === 1) throw new ProxyError('WEFT_PROXY_APPLY_FAILED', 'failed to add elements to set service-ips-a: ENOENT (2)');
      },
    });
    // One endpoint, the one that serves (10.180.0.1): the probe must not depend on the random pick.
    const state = cluster(['10.180.0.1'], 5);
    await dp.sync(state, true);
    expect(await connectsTo(a!.name, '172.30.0.41')).toBe(true);
    await dp.sync(state, true);
    expect(sends).toBe(2);
    expect(logs).toEqual([expect.stringMatching(/^netlink full sync failed \(failed to add elements to set service-ips-a: ENOENT \(2\)\): replacing the table with nft -f$/)]);
    await dp.cleanup();
  }, 60_000);
});

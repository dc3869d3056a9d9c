// Kernel tests for the appliers: rulesets are applied inside throwaway `wt-` namespaces, read back,
// and exercised with a real TCP connection through the ClusterIP. Never touches the host namespace.
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProxyState } from '../proxy/model/build-proxy-state.ts';
import { iptablesRestoreFull, iptablesRestorePartial, renderIptables } from '../proxy/iptables/render.ts';
import { ensureIptablesJumps, iptablesCanaryPresent, iptablesRestore, iptablesSave } from '../proxy/iptables/apply.ts';
import { parseIptablesSave } from '../proxy/iptables/preserve.ts';
import { createIptablesDataplane } from '../proxy/agent/iptables-dataplane.ts';
import { runCommand } from '../proxy/run-command.ts';
import { hash16 } from '../proxy/iptables/chain-names.ts';
import { hashName, nftFullScript, nftIncrementalScript, renderNftables } from '../proxy/nftables/render.ts';
import { nftApply, nftListTable } from '../proxy/nftables/apply.ts';
import type { Service } from '../mesh-control/model/types.ts';
import { netnsSkipReason, type Netns } from './helpers/netns.ts';
import { nodeNamespace } from './helpers/proxy-node.ts';
import { makeService, makeSlice, node, TEST_CLUSTER_CIDR, TEST_NODE, TEST_NODE_IP } from './helpers/proxy-fixtures.ts';

const skip = netnsSkipReason();
const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];

function state(endpoints: string[]) {
  const services: Service[] = [
    makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }),
    makeService('ns1', 'empty', { clusterIP: '172.30.0.46', ports: p80 }),
    makeService('ns1', 'lb', { type: 'LoadBalancer', clusterIP: '172.30.0.45', ports: [{ ...p80[0], nodePort: 30080 }], sessionAffinity: 'ClientIP', loadBalancerSourceRanges: ['203.0.113.0/25'] }, ['5.6.7.8']),
  ];
  const slices = [makeSlice('ns1', 'svc1', endpoints.map((ip) => ({ addresses: [ip] }))), makeSlice('ns1', 'lb', endpoints.map((ip) => ({ addresses: [ip] })))];
  return buildProxyState({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR });
}

/** One service of every shape, with `endpoints` spread over this node and another. */
function shapes(endpoints: string[]) {
  const np = (port: number) => [{ ...p80[0], nodePort: port }];
  const services: Service[] = [
    makeService('ns2', 'np', { type: 'NodePort', clusterIP: '172.30.1.1', ports: np(30101), externalIPs: ['192.0.2.1'] }),
    makeService('ns2', 'etp', { type: 'LoadBalancer', clusterIP: '172.30.1.2', ports: np(30102), externalTrafficPolicy: 'Local' }, ['5.6.7.2']),
    makeService('ns2', 'itp', { clusterIP: '172.30.1.3', ports: p80, internalTrafficPolicy: 'Local' }),
    makeService('ns2', 'aff', { type: 'NodePort', clusterIP: '172.30.1.4', ports: np(30104), externalTrafficPolicy: 'Local', sessionAffinity: 'ClientIP' }),
  ];
  const slices = ['np', 'etp', 'itp', 'aff'].map((name) => makeSlice('ns2', name, endpoints.map((ip, i) => ({ addresses: [ip], nodeName: i % 2 === 0 ? TEST_NODE : 'other' }))));
  return buildProxyState({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR });
}

/** Connects from inside the namespace; "ok" on success, else the error code. */
async function connect(ns: Netns, ip: string, port: number): Promise<string> {
  const r = await ns.exec(process.execPath, ['-e',
    `const s=require('net').connect(${port},'${ip}');s.setTimeout(3000,()=>{console.log('TIMEOUT');process.exit(0)});s.on('data',d=>{console.log(String(d));process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`], { timeoutMs: 10_000 });
  return r.stdout.trim();
}

async function natChains(opts: { netns: string }): Promise<string[]> {
  return parseIptablesSave(await iptablesSave('nat', opts)).chains.map((c) => c.name);
}

describe.skipIf(skip)(`iptables applier in a wt- namespace${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let env: { ns: Netns; server: ChildProcess } | undefined;
  beforeAll(async () => { env = await nodeNamespace('ipt'); });
  afterAll(async () => {
    env?.server.kill();
    await env?.ns.remove();
  });

  it('applies a full ruleset, serves the ClusterIP, rejects an empty service, then a partial sync removes stale chains', async () => {
    const opts = { netns: env!.ns.name };
    const first = renderIptables(state(['10.180.0.1', '10.180.0.99']), {});
    await iptablesRestore(iptablesRestoreFull(first, await natChains(opts)), opts);
    await ensureIptablesJumps('WEFT', opts);
    await ensureIptablesJumps('WEFT', opts);
    const nat = await iptablesSave('nat', opts);
    expect(nat).toContain(`:WEFT-SVC-${hash16('ns1/svc1:p80tcp')}`);
    expect(nat.match(/-A OUTPUT .*-j WEFT-SERVICES/g)).toHaveLength(1);
    expect(await iptablesCanaryPresent('WEFT', opts)).toBe(true);

    const second = renderIptables(state(['10.180.0.1']), {});
    await iptablesRestore(iptablesRestorePartial(second, first), opts);
    const after = await iptablesSave('nat', opts);
    expect(after).not.toContain(hash16('ns1/svc1:p80tcp10.180.0.99:80'));
    expect(after).toContain(hash16('ns1/svc1:p80tcp10.180.0.1:80'));

    expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
    expect(await connect(env!.ns, '172.30.0.46', 80)).toBe('ECONNREFUSED');
  });

  it('loads every service shape (NodePort, external and LB IPs, both traffic policies, affinity) full and partially', async () => {
    const opts = { netns: env!.ns.name };
    const first = renderIptables(shapes(['10.180.1.1', '10.180.1.2', '10.180.1.3']), {});
    await iptablesRestore(iptablesRestoreFull(first, await natChains(opts)), opts);
    const second = renderIptables(shapes(['10.180.1.1', '10.180.1.4']), {});
    await iptablesRestore(iptablesRestorePartial(second, first), opts);
    const saved = await iptablesSave('nat', opts);
    expect(saved).not.toContain('10.180.1.3');
    expect(saved).toContain('--to-destination 10.180.1.4:80');
    expect(saved).toContain('WEFT-EXT-');
    await iptablesRestore(iptablesRestorePartial(first, second), opts);
  });

  it('a full sync through the dataplane is one flushing restore that keeps other programs\' chains and rules', async () => {
    const opts = { netns: env!.ns.name };
    const ipt = async (...args: string[]) => {
      const r = await runCommand('iptables', ['-w', '5', ...args], opts);
      if (r.code !== 0) throw new Error(`iptables ${args.join(' ')}: ${r.stderr}`);
    };
    await ipt('-t', 'nat', '-N', 'FOREIGN');
    await ipt('-t', 'nat', '-A', 'FOREIGN', '-p', 'udp', '--dport', '7', '-m', 'comment', '--comment', 'foreign "quoted" -j rule', '-j', 'RETURN');
    await ipt('-t', 'nat', '-A', 'PREROUTING', '-j', 'FOREIGN');
    await ipt('-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP');
    const applied: { text: string; flush: boolean }[] = [];
    const dp = createIptablesDataplane(opts, {
      apply: async (text, o) => {
        applied.push({ text, flush: o?.flush ?? false });
        await iptablesRestore(text, { ...opts, flush: o?.flush });
      },
    });
    try {
      // Twice: the second full sync reads weft's own rules back and must not duplicate them.
      for (const endpoints of [['10.180.0.1', '10.180.0.99'], ['10.180.0.1']]) expect((await dp.sync(state(endpoints), true)).full).toBe(true);
      expect(applied.map((a) => a.flush)).toEqual([true, true]);
      const nat = await iptablesSave('nat', opts);
      expect(nat).toContain(':FOREIGN - [0:0]');
      expect(nat).toContain('-A PREROUTING -j FOREIGN');
      expect(nat).toContain('-A FOREIGN -p udp -m udp --dport 7 -m comment --comment "foreign \\"quoted\\" -j rule" -j RETURN');
      expect(nat.match(/-A PREROUTING .*-j WEFT-SERVICES/g)).toHaveLength(1);
      expect(nat).not.toContain(hash16('ns1/svc1:p80tcp10.180.0.99:80'));
      const filter = await iptablesSave('filter', opts);
      expect(filter).toContain('-A INPUT -p tcp -m tcp --dport 9 -j DROP');
      expect(filter.match(/-A FORWARD .*-j WEFT-FORWARD/g)).toHaveLength(1);
      expect(await iptablesCanaryPresent('WEFT', opts)).toBe(true);
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
      expect(await connect(env!.ns, '172.30.0.46', 80)).toBe('ECONNREFUSED');
      // Partial syncs stay --noflush.
      await dp.sync(state(['10.180.0.1', '10.180.0.99']), false);
      expect(applied.at(-1)?.flush).toBe(false);
    } finally {
      await dp.cleanup();
    }
    expect(await iptablesSave('nat', opts)).not.toContain('WEFT-');
    expect(await iptablesSave('nat', opts)).toContain('-A PREROUTING -j FOREIGN');
    expect(await iptablesSave('filter', opts)).toContain('--dport 9 -j DROP');
  });

  it('a partial sync edits a long WEFT-SERVICES rule by rule and the changed port serves at once', async () => {
    const opts = { netns: env!.ns.name };
    const many = (port: number) => {
      const services = Array.from({ length: 100 }, (_, i) => makeService('ns3', `s${i}`, { clusterIP: `172.30.3.${i + 1}`, ports: [{ ...p80[0], port: i === 7 ? port : 80 }] }));
      const slices = services.map((svc) => makeSlice('ns3', svc.metadata.name, [{ addresses: ['10.180.0.1'] }]));
      return renderIptables(buildProxyState({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR }), {});
    };
    const first = many(80);
    await iptablesRestore(iptablesRestoreFull(first, await natChains(opts)), opts);
    await ensureIptablesJumps('WEFT', opts);
    expect(await connect(env!.ns, '172.30.3.8', 80)).toBe('ok');
    const second = many(81);
    const partial = iptablesRestorePartial(second, first);
    expect(partial).toContain('-D WEFT-SERVICES ');
    await iptablesRestore(partial, opts);
    const services = (await iptablesSave('nat', opts)).split('\n').filter((l) => l.startsWith('-A WEFT-SERVICES '));
    expect(services.filter((l) => l.includes('"ns3/s7:p80 cluster IP"'))).toEqual([expect.stringContaining('--dport 81 ')]);
    expect(services[services.length - 1]).toContain('-j WEFT-NODEPORTS');
    expect(await connect(env!.ns, '172.30.3.8', 81)).toBe('ok');
    expect(await connect(env!.ns, '172.30.3.9', 80)).toBe('ok');
    // Back: the rule inserted at the head is found by its spec and deleted.
    await iptablesRestore(iptablesRestorePartial(first, second), opts);
    expect(await connect(env!.ns, '172.30.3.8', 80)).toBe('ok');
  });

  it('reports the rejected line', async () => {
    const bad = '*nat\n:WEFT-X - [0:0]\n-A WEFT-X -j WEFT-NOWHERE\nCOMMIT\n';
    await expect(iptablesRestore(bad, { netns: env!.ns.name })).rejects.toThrow(/^failed to apply iptables rules in netns wt-\S+: .*WEFT-NOWHERE.* \(line \d: (COMMIT|-A WEFT-X -j WEFT-NOWHERE)\)$/);
  });
});

describe.skipIf(skip)(`nftables applier in a wt- namespace${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let env: { ns: Netns; server: ChildProcess } | undefined;
  beforeAll(async () => { env = await nodeNamespace('nft'); });
  afterAll(async () => {
    env?.server.kill();
    await env?.ns.remove();
  });

  it('applies a full table, serves the ClusterIP, then an incremental transaction removes a stale endpoint', async () => {
    const opts = { netns: env!.ns.name };
    const first = renderNftables(state(['10.180.0.1', '10.180.0.99']), { serviceCIDRs: ['172.30.0.0/16'] });
    await nftApply(nftFullScript(first), opts);
    await nftApply(nftFullScript(first), opts);
    // svc1 picks in a chain shared by services with as many endpoints; lb (affinity) keeps per-endpoint chains.
    const gone = `endpoint-${hashName('ns1/lb/tcp/p80__10.180.0.99/80')}`;
    const listedFirst = await nftListTable('weft', opts) ?? '';
    expect(listedFirst).toContain(gone);
    expect(listedFirst).toContain('10.180.0.99 . 80');

    const second = renderNftables(state(['10.180.0.1']), { serviceCIDRs: ['172.30.0.0/16'] });
    await nftApply(nftIncrementalScript(second, first), opts);
    const listed = await nftListTable('weft', opts) ?? '';
    expect(listed).not.toContain('10.180.0.99');
    expect(listed).toContain('numgen random mod 1');
    expect(listed).toMatch(/set affinity-\w+-ns1\/lb\/tcp\/p80__10\.180\.0\.1\/80/);

    expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
    expect(await connect(env!.ns, '172.30.0.46', 80)).toBe('ECONNREFUSED');
    // A port the ClusterIP does not serve is refused; an unallocated service IP is dropped.
    expect(await connect(env!.ns, '172.30.0.41', 81)).toBe('ECONNREFUSED');
  });

  it('loads every service shape (NodePort, external and LB IPs, both traffic policies, affinity) full and incrementally', async () => {
    const opts = { netns: env!.ns.name };
    const first = renderNftables(shapes(['10.180.1.1', '10.180.1.2', '10.180.1.3']));
    await nftApply(nftFullScript(first), opts);
    const second = renderNftables(shapes(['10.180.1.1', '10.180.1.4']));
    await nftApply(nftIncrementalScript(second, first), opts);
    const listed = await nftListTable('weft', opts) ?? '';
    expect(listed).not.toContain('10.180.1.3');
    expect(listed).not.toContain('pick-cluster-ip-tcp-3');
    expect(listed).toContain('pick-external-nodeport-tcp-2');
    await nftApply(nftIncrementalScript(first, second), opts);
  });

  it('reports the rejected line', async () => {
    await expect(nftApply('add table ip weft\nadd rule ip weft nowhere accept\n', { netns: env!.ns.name })).rejects.toThrow(/failed to apply nftables transaction in netns wt-.*line 2: add rule ip weft nowhere accept/);
  });
});

import { describe, expect, it } from 'vitest';
import { buildProxyState, createProxyStateBuilder } from '../proxy/model/build-proxy-state.ts';
import { createNftRenderCache, hashName, nftFullScript, nftIncrementalScript, renderNftables, type NftablesRenderOptions } from '../proxy/nftables/render.ts';
import type { EndpointSlice, Service } from '../mesh-control/model/types.ts';
import { nftDanglingReferences } from './helpers/proxy-nftables.ts';
import { makeService, makeSlice, node, TEST_CLUSTER_CIDR, TEST_NODE, TEST_NODE_IP } from './helpers/proxy-fixtures.ts';

function render(services: Service[], slices: EndpointSlice[], opts: NftablesRenderOptions = {}) {
  const state = buildProxyState({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR });
  const ruleset = renderNftables(state, opts);
  const script = nftFullScript(ruleset);
  expect(nftDanglingReferences(script)).toEqual([]);
  return { ruleset, script };
}

/** Elements of one map across all service ports, as key → value. */
const elementsOf = (ruleset: ReturnType<typeof renderNftables>, map: string): Record<string, string> =>
  Object.fromEntries([...ruleset.services.values()].flatMap((s) => s.elements.filter((e) => e[0] === map).map((e) => [e[1], e[2]])));

const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];
const svc1 = `service-${hashName('ns1/svc1/tcp/p80')}`;
const ep = (ip: string, port = 80) => `endpoint-${hashName(`ns1/svc1/tcp/p80__${ip}/${port}`)}`;

describe('nftables render', () => {
  it('names chains as kube-proxy does', () => {
    expect(svc1).toBe('service-ULMVA6XW-ns1/svc1/tcp/p80');
    expect(ep('10.180.0.1')).toBe('endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  });

  it('ClusterIP with two endpoints and affinity (golden)', () => {
    const { script } = render(
      [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80, sessionAffinity: 'ClientIP' })],
      [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }, { addresses: ['10.180.0.2'], nodeName: TEST_NODE }])],
    );
    const own = script.split('\n').filter((l) => l.includes('ns1/svc1') || l.startsWith('add element')).sort();
    const aff1 = `affinity-${hashName('ns1/svc1/tcp/p80__10.180.0.1/80')}`;
    const aff2 = `affinity-${hashName('ns1/svc1/tcp/p80__10.180.0.2/80')}`;
    expect(own).toEqual([
      `add chain ip weft ${ep('10.180.0.1')}`,
      `add chain ip weft ${ep('10.180.0.2')}`,
      `add chain ip weft ${svc1}`,
      'add element ip weft cluster-ips { 172.30.0.41 }',
      'add element ip weft hairpin { 10.180.0.1 . 10.180.0.1, 10.180.0.2 . 10.180.0.2 }',
      `add element ip weft service-ips { 172.30.0.41 . tcp . 80 : goto ${svc1} }`,
      `add rule ip weft ${ep('10.180.0.1')} meta l4proto tcp dnat to 10.180.0.1:80`,
      `add rule ip weft ${ep('10.180.0.1')} update @${aff1} { ip saddr }`,
      `add rule ip weft ${ep('10.180.0.2')} meta l4proto tcp dnat to 10.180.0.2:80`,
      `add rule ip weft ${ep('10.180.0.2')} update @${aff2} { ip saddr }`,
      `add rule ip weft ${svc1} ip saddr @${aff1} goto ${ep('10.180.0.1')}`,
      `add rule ip weft ${svc1} ip saddr @${aff2} goto ${ep('10.180.0.2')}`,
      `add rule ip weft ${svc1} numgen random mod 2 vmap { 0 : goto ${ep('10.180.0.1')} , 1 : goto ${ep('10.180.0.2')} }`,
      `add set ip weft ${aff1} { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }`,
      `add set ip weft ${aff2} { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }`,
    ].sort());
    // The rule order inside a chain matters: affinity before the random choice.
    const svcRules = script.split('\n').filter((l) => l.startsWith(`add rule ip weft ${svc1} `));
    expect(svcRules.at(-1)).toContain('numgen random mod 2');
    // Off-cluster sources to any ClusterIP are marked once, in the dispatch chain.
    expect(script).toContain('add rule ip weft services ip daddr @cluster-ips ip saddr != 10.0.0.0/8 jump mark-for-masquerade');
  });

  it('without affinity, endpoints are picked in a chain shared by all service ports with as many endpoints (no chain per service)', () => {
    const { script, ruleset } = render(
      [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }), makeService('ns1', 'svc2', { clusterIP: '172.30.0.42', ports: p80 })],
      [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }, { addresses: ['10.180.0.2'], nodeName: TEST_NODE }]), makeSlice('ns1', 'svc2', [{ addresses: ['10.180.0.3'] }, { addresses: ['10.180.0.4'] }])],
    );
    expect(script).not.toMatch(/chain ip weft (endpoint|service)-[A-Z2-7]{8}-/);
    expect([...ruleset.groups.keys()]).toEqual(['pick-cluster-ip-tcp-2']);
    expect(script).toContain('add map ip weft endpoints-cluster-ip-tcp-2 { typeof ip daddr . tcp dport . numgen random mod 2 : ip daddr . tcp dport ; }');
    expect(script).toContain('add rule ip weft pick-cluster-ip-tcp-2 dnat ip addr . port to ip daddr . tcp dport . numgen random mod 2 map @endpoints-cluster-ip-tcp-2');
    expect(elementsOf(ruleset, 'service-ips')).toEqual({ '172.30.0.41 . tcp . 80': 'goto pick-cluster-ip-tcp-2', '172.30.0.42 . tcp . 80': 'goto pick-cluster-ip-tcp-2' });
    expect(elementsOf(ruleset, 'endpoints-cluster-ip-tcp-2')).toEqual({
      '172.30.0.41 . 80 . 0': '10.180.0.1 . 80', '172.30.0.41 . 80 . 1': '10.180.0.2 . 80',
      '172.30.0.42 . 80 . 0': '10.180.0.3 . 80', '172.30.0.42 . 80 . 1': '10.180.0.4 . 80',
    });
    // Hairpin pairs for endpoints that can be DNATed here as clients: local ones and those of unknown node.
    expect(Object.keys(elementsOf(ruleset, 'hairpin')).sort()).toEqual(['10.180.0.1 . 10.180.0.1', '10.180.0.2 . 10.180.0.2', '10.180.0.3 . 10.180.0.3', '10.180.0.4 . 10.180.0.4']);
    const remote = render([makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 })], [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'], nodeName: 'other' }, { addresses: ['10.180.0.2'], nodeName: TEST_NODE }])]).ruleset;
    expect(Object.keys(elementsOf(remote, 'hairpin'))).toEqual(['10.180.0.2 . 10.180.0.2']);
  });

  it('NodePort and external IPs: eTP=Cluster masquerades in a shared chain keyed by node port or by IP', () => {
    const { ruleset, script } = render(
      [makeService('ns1', 'np', { type: 'LoadBalancer', clusterIP: '172.30.0.7', externalIPs: ['192.0.2.7'], ports: [{ ...p80[0], nodePort: 30007 }] }, ['5.6.7.7'])],
      [makeSlice('ns1', 'np', [{ addresses: ['10.180.0.1'] }])],
    );
    expect(script).not.toMatch(/chain ip weft (external|service|nodeport)-[A-Z2-7]{8}-/);
    expect(elementsOf(ruleset, 'service-nodeports')).toEqual({ 'tcp . 30007': 'goto pick-external-nodeport-tcp-1' });
    expect(elementsOf(ruleset, 'service-ips')).toEqual({
      '172.30.0.7 . tcp . 80': 'goto pick-cluster-ip-tcp-1', '192.0.2.7 . tcp . 80': 'goto pick-external-ip-tcp-1', '5.6.7.7 . tcp . 80': 'goto pick-external-ip-tcp-1',
    });
    expect(ruleset.groups.get('pick-external-nodeport-tcp-1')?.rules).toEqual(['jump mark-for-masquerade', 'dnat ip addr . port to tcp dport . numgen random mod 1 map @endpoints-cluster-nodeport-tcp-1']);
    expect(ruleset.groups.get('pick-external-ip-tcp-1')?.map).toBe('endpoints-cluster-ip-tcp-1');
    expect(elementsOf(ruleset, 'endpoints-cluster-nodeport-tcp-1')).toEqual({ '30007 . 0': '10.180.0.1 . 80' });
    expect(elementsOf(ruleset, 'endpoints-cluster-ip-tcp-1')).toEqual({ '172.30.0.7 . 80 . 0': '10.180.0.1 . 80', '192.0.2.7 . 80 . 0': '10.180.0.1 . 80', '5.6.7.7 . 80 . 0': '10.180.0.1 . 80' });
  });

  it('verdicts: no endpoints reject, iTP/eTP Local without local endpoints drop, LB source ranges', () => {
    const { ruleset } = render(
      [
        makeService('ns1', 'none', { type: 'NodePort', clusterIP: '172.30.0.1', ports: [{ ...p80[0], nodePort: 30001 }] }),
        makeService('ns1', 'itp', { clusterIP: '172.30.0.2', ports: p80, internalTrafficPolicy: 'Local' }),
        makeService('ns1', 'etp', { type: 'LoadBalancer', clusterIP: '172.30.0.3', ports: [{ ...p80[0], nodePort: 30003 }], externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['203.0.113.0/25'] }, ['5.6.7.8']),
      ],
      ['itp', 'etp'].map((s) => makeSlice('ns1', s, [{ addresses: ['10.180.0.9'], nodeName: 'other' }])),
    );
    const el = (m: string) => elementsOf(ruleset, m);
    expect(el('no-endpoint-services')).toEqual({
      '172.30.0.1 . tcp . 80': 'goto reject-chain',
      '172.30.0.2 . tcp . 80': 'drop',
      '5.6.7.8 . tcp . 80': 'drop',
    });
    expect(el('no-endpoint-nodeports')).toEqual({ 'tcp . 30001': 'goto reject-chain', 'tcp . 30003': 'drop' });
    const etpExt = `external-${hashName('ns1/etp/tcp/p80')}`;
    expect(el('service-ips')['5.6.7.8 . tcp . 80']).toBe(`goto ${etpExt}`);
    expect(el('service-ips')['172.30.0.3 . tcp . 80']).toBe('goto pick-cluster-ip-tcp-1');
    expect(el('service-nodeports')['tcp . 30003']).toBe(`goto nodeport-${hashName('ns1/etp/tcp/p80')}`);
    expect(el('firewall-ips')['5.6.7.8 . tcp . 80']).toBe(`goto firewall-${hashName('ns1/etp/tcp/p80')}`);
    const etp = ruleset.services.get('ns1/etp:p80/tcp');
    // No local endpoint: pods and the node are short-circuited to all endpoints, others fall through to the drop.
    expect(etp?.chains.get(etpExt)).toEqual(['ip saddr 10.0.0.0/8 goto pick-cluster-ip-tcp-1', 'fib saddr type local jump mark-for-masquerade', 'fib saddr type local goto pick-cluster-ip-tcp-1']);
    expect(etp?.chains.get(`nodeport-${hashName('ns1/etp/tcp/p80')}`)).toEqual(['ip saddr 10.0.0.0/8 goto pick-cluster-nodeport-tcp-1', 'fib saddr type local jump mark-for-masquerade', 'fib saddr type local goto pick-cluster-nodeport-tcp-1']);
    // The remote endpoint can be a short-circuited client here: it has a hairpin pair.
    expect(el('hairpin')).toHaveProperty(['10.180.0.9 . 10.180.0.9']);
    expect(etp?.chains.get(`firewall-${hashName('ns1/etp/tcp/p80')}`)).toEqual(['ip saddr != { 203.0.113.0/25 } drop']);
  });

  it('incremental transaction touches only the changed service', () => {
    const services = [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }), makeService('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: p80 })];
    const before = render(services, [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }, { addresses: ['10.180.0.3'] }])]).ruleset;
    const after = render(services.slice(0, 1).concat(services[1]), [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }])]).ruleset;
    const script = nftIncrementalScript(after, before);
    expect(script).not.toContain('172.30.0.41');
    // svc2 drops to one endpoint: its elements move to the one-endpoint group, the two-endpoint group goes.
    expect(script.trim().split('\n')).toEqual([
      'delete element ip weft service-ips { 172.30.0.42 . tcp . 80 }',
      'delete element ip weft hairpin { 10.180.0.3 . 10.180.0.3 }',
      'flush chain ip weft pick-cluster-ip-tcp-2',
      'delete chain ip weft pick-cluster-ip-tcp-2',
      'delete map ip weft endpoints-cluster-ip-tcp-2',
      'add element ip weft endpoints-cluster-ip-tcp-1 { 172.30.0.42 . 80 . 0 : 10.180.0.2 . 80 }',
      'add element ip weft service-ips { 172.30.0.42 . tcp . 80 : goto pick-cluster-ip-tcp-1 }',
    ]);
    expect(nftIncrementalScript(after, after)).toBe('');
    // An endpoint change within the same count is element changes only.
    const moved = render(services, [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.5'] }])]).ruleset;
    expect(nftIncrementalScript(moved, after).trim().split('\n')).toEqual([
      'delete element ip weft endpoints-cluster-ip-tcp-1 { 172.30.0.42 . 80 . 0 }',
      'delete element ip weft hairpin { 10.180.0.2 . 10.180.0.2 }',
      'add element ip weft endpoints-cluster-ip-tcp-1 { 172.30.0.42 . 80 . 0 : 10.180.0.5 . 80 }',
      'add element ip weft hairpin { 10.180.0.5 . 10.180.0.5 }',
    ]);
    // Removing a service deletes its elements before the group chain and its map.
    const removed = nftIncrementalScript(render(services.slice(0, 1), [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }])]).ruleset, before).trim().split('\n');
    expect(removed[0]).toMatch(/^delete element ip weft (cluster-ips|service-ips)/);
    expect(removed.slice(-3)).toEqual(['flush chain ip weft pick-cluster-ip-tcp-2', 'delete chain ip weft pick-cluster-ip-tcp-2', 'delete map ip weft endpoints-cluster-ip-tcp-2']);
  });

  it('a cached render (agent path) diffs only what changed, with the same result as a full comparison', () => {
    const services = [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }), makeService('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: p80 })];
    const slices = [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }, { addresses: ['10.180.0.3'] }])];
    const builder = createProxyStateBuilder();
    const cache = createNftRenderCache();
    const renderCached = () => renderNftables(builder.build({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR }), {}, cache);
    const first = renderCached();
    expect(renderCached().delta?.ids.size).toBe(0);
    const unchanged = cache.ruleset as ReturnType<typeof renderNftables>;
    slices[1] = makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }]);
    const second = renderCached();
    expect([...(second.delta?.ids ?? [])]).toEqual(['ns2/svc2:p80/tcp']);
    // Same ids in the same places: the table is copied with the change, sharing its id index.
    expect(second.services.index).toBe(unchanged.services.index);
    expect(nftFullScript(second)).toBe(render(services, slices).script);
    expect([...second.groups.keys()]).toEqual(['pick-cluster-ip-tcp-1']);
    const uncached = (r: ReturnType<typeof renderNftables>) => ({ ...r, delta: undefined });
    expect(nftIncrementalScript(second, unchanged)).toBe(nftIncrementalScript(uncached(second), uncached(unchanged)));
    expect(nftIncrementalScript(second, unchanged)).toContain('delete map ip weft endpoints-cluster-ip-tcp-2');
    expect(first.delta).toBeUndefined();
    services.pop();
    const third = renderCached();
    expect(nftFullScript(third)).toBe(render(services, slices).script);
    expect(nftIncrementalScript(third, second)).toContain('delete element ip weft service-ips { 172.30.0.42 . tcp . 80 }');
    expect([...third.groups.keys()]).toEqual(['pick-cluster-ip-tcp-1']);
  });

  it('UDP and SCTP are keyed by their protocol', () => {
    const { ruleset } = render([makeService('ns1', 'm', { clusterIP: '172.30.0.5', ports: [{ name: 'u', port: 53, protocol: 'UDP' }, { name: 's', port: 3868, protocol: 'SCTP' }] })],
      [makeSlice('ns1', 'm', [{ addresses: ['10.180.0.1'] }], [{ name: 'u', port: 53, protocol: 'UDP' }, { name: 's', port: 3868, protocol: 'SCTP' }])]);
    expect(Object.keys(elementsOf(ruleset, 'service-ips')).sort()).toEqual(['172.30.0.5 . sctp . 3868', '172.30.0.5 . udp . 53']);
    expect([...ruleset.groups.keys()].sort()).toEqual(['pick-cluster-ip-sctp-1', 'pick-cluster-ip-udp-1']);
    expect(ruleset.groups.get('pick-cluster-ip-sctp-1')?.rules).toEqual(['dnat ip addr . port to ip daddr . sctp dport . numgen random mod 1 map @endpoints-cluster-ip-sctp-1']);
  });
});

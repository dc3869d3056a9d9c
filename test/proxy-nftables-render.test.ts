import { describe, expect, it } from 'vitest';
import { buildProxyState } from '../proxy/model/build-proxy-state.ts';
import { hashName, nftFullScript, nftIncrementalScript, renderNftables, type NftablesRenderOptions } from '../proxy/nftables/render.ts';
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

  it('without affinity, endpoints are chosen from a slot range of a shared map (no chain or set per endpoint)', () => {
    const { script, ruleset } = render(
      [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 })],
      [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }, { addresses: ['10.180.0.2'] }])],
    );
    expect(script).not.toMatch(/chain ip weft endpoint-/);
    expect(ruleset.services.get('ns1/svc1:p80/tcp')?.chains.get(svc1)).toEqual(['meta l4proto tcp dnat ip addr . port to numgen random mod 2 offset 0 map @endpoints-tcp-0']);
    expect(elementsOf(ruleset, 'endpoints-tcp-0')).toEqual({ 0: '10.180.0.1 . 80', 1: '10.180.0.2 . 80' });
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
    expect(el('service-ips')['172.30.0.3 . tcp . 80']).toBe(`goto service-${hashName('ns1/etp/tcp/p80')}`);
    expect(el('firewall-ips')['5.6.7.8 . tcp . 80']).toBe(`goto firewall-${hashName('ns1/etp/tcp/p80')}`);
    const etp = ruleset.services.get('ns1/etp:p80/tcp');
    expect(etp?.chains.get(etpExt)).toEqual([
      `ip saddr 10.0.0.0/8 goto service-${hashName('ns1/etp/tcp/p80')}`,
      'fib saddr type local jump mark-for-masquerade',
      `fib saddr type local goto service-${hashName('ns1/etp/tcp/p80')}`,
    ]);
    expect(etp?.chains.get(`firewall-${hashName('ns1/etp/tcp/p80')}`)).toEqual(['ip saddr != { 203.0.113.0/25 } drop']);
  });

  it('incremental transaction touches only the changed service', () => {
    const services = [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }), makeService('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: p80 })];
    const before = render(services, [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }, { addresses: ['10.180.0.3'] }])]).ruleset;
    const after = render(services.slice(0, 1).concat(services[1]), [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }])]).ruleset;
    const script = nftIncrementalScript(after, before);
    expect(script).not.toContain('ns1/svc1');
    const svc2 = `service-${hashName('ns2/svc2/tcp/p80')}`;
    const lines = script.trim().split('\n');
    expect(lines).toContain(`flush chain ip weft ${svc2}`);
    expect(lines).toContain('delete element ip weft hairpin { 10.180.0.3 . 10.180.0.3 }');
    expect(lines.some((l) => l.startsWith(`add rule ip weft ${svc2} meta l4proto tcp dnat ip addr . port to numgen random mod 1 offset`))).toBe(true);
    expect(nftIncrementalScript(after, after)).toBe('');
    // Removing the service deletes its elements before its chains.
    const removed = nftIncrementalScript(render(services.slice(0, 1), [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }])]).ruleset, after).trim().split('\n');
    expect(removed[0]).toMatch(/^delete element ip weft (cluster-ips|service-ips)/);
    expect(removed.at(-1)).toBe(`delete chain ip weft ${svc2}`);
  });

  it('UDP and SCTP are keyed by their protocol', () => {
    const { ruleset } = render([makeService('ns1', 'm', { clusterIP: '172.30.0.5', ports: [{ name: 'u', port: 53, protocol: 'UDP' }, { name: 's', port: 3868, protocol: 'SCTP' }] })],
      [makeSlice('ns1', 'm', [{ addresses: ['10.180.0.1'] }], [{ name: 'u', port: 53, protocol: 'UDP' }, { name: 's', port: 3868, protocol: 'SCTP' }])]);
    expect(Object.keys(elementsOf(ruleset, 'service-ips')).sort()).toEqual(['172.30.0.5 . sctp . 3868', '172.30.0.5 . udp . 53']);
    expect(ruleset.services.get('ns1/m:s/sctp')?.chains.get(`service-${hashName('ns1/m/sctp/s')}`)?.[0]).toMatch(/^meta l4proto sctp dnat ip addr \. port to numgen random mod 1 offset \d+ map @endpoints-sctp-\d+$/);
  });
});

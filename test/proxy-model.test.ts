import { describe, expect, it } from 'vitest';
import { buildProxyState, createProxyStateBuilder } from '../proxy/model/build-proxy-state.ts';
import { makeService, makeSlice, node, TEST_CLUSTER_CIDR, TEST_NODE, TEST_NODE_IP } from './helpers/proxy-fixtures.ts';
import type { Service, EndpointSlice } from '../mesh-control/model/types.ts';

const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];
const build = (services: Service[], endpointSlices: EndpointSlice[] = []) => buildProxyState({ services, endpointSlices, node: node({ 'topology.kubernetes.io/zone': 'a' }), nodeIPs: [TEST_NODE_IP] });

describe('buildProxyState', () => {
  it('skips headless and ExternalName services; sorts service ports by name', () => {
    const s = build([
      makeService('ns', 'z', { clusterIP: '10.96.0.3', ports: [{ port: 80 }] }),
      makeService('ns', 'headless', { clusterIP: 'None', ports: p80 }),
      makeService('ns', 'ext', { type: 'ExternalName', externalName: 'example.org' }),
      makeService('ns', 'a', { clusterIP: '10.96.0.2', ports: [{ name: 'b', port: 81 }, { name: 'a', port: 80 }] }),
    ]);
    expect(s.servicePorts.map((sp) => sp.key)).toEqual(['ns/a:a', 'ns/a:b', 'ns/z']);
  });

  it('frontends: LB IPs only for LoadBalancer, node ports only for NodePort/LoadBalancer, health check only for eTP=Local LBs', () => {
    const [lb, cip] = build([
      makeService('ns', 'lb', { type: 'LoadBalancer', clusterIP: '10.96.0.2', externalTrafficPolicy: 'Local', healthCheckNodePort: 31000, ports: [{ ...p80[0], nodePort: 30080 }], loadBalancerSourceRanges: [' 192.168.0.0/24 ', 'bogus'] }, ['5.6.7.8']),
      makeService('ns', 'cip', { clusterIP: '10.96.0.3', ports: [{ ...p80[0], nodePort: 30081 }], externalTrafficPolicy: 'Local' }, ['5.6.7.9']),
    ]).servicePorts.slice().sort((a, b) => b.name.localeCompare(a.name));
    expect(lb).toMatchObject({ nodePort: 30080, loadBalancerIPs: ['5.6.7.8'], healthCheckNodePort: 31000, externalPolicyLocal: true, loadBalancerSourceRanges: ['192.168.0.0/24'], sourceRangesAllowNode: true });
    expect(cip).toMatchObject({ nodePort: 0, loadBalancerIPs: [], healthCheckNodePort: 0, externalPolicyLocal: false, externallyAccessible: false });
  });

  it('endpoints: deduplicated across slices, ready wins, sorted; health check counts only ready non-terminating local ones', () => {
    const [sp] = build([makeService('ns', 'lb', { type: 'LoadBalancer', clusterIP: '10.96.0.2', externalTrafficPolicy: 'Local', ports: p80 }, ['5.6.7.8'])], [
      makeSlice('ns', 'lb', [{ addresses: ['10.0.0.9'], conditions: { ready: false, serving: true, terminating: true }, nodeName: TEST_NODE }], p80, 'a'),
      makeSlice('ns', 'lb', [{ addresses: ['10.0.0.10'], nodeName: 'elsewhere' }, { addresses: ['10.0.0.9'], conditions: { ready: false, serving: true, terminating: true }, nodeName: TEST_NODE }], p80, 'b'),
    ]).servicePorts;
    expect(sp.clusterEndpoints.map((e) => e.address)).toEqual(['10.0.0.10:80']);
    // The only local endpoint is terminating: Local traffic still goes there, but the health check says 0.
    expect(sp.localEndpoints.map((e) => e.address)).toEqual(['10.0.0.9:80']);
    expect(sp.reachableEndpoints.map((e) => e.address)).toEqual(['10.0.0.10:80', '10.0.0.9:80']);
    expect(sp.localReadyEndpoints).toBe(0);
  });

  it('ignores slices of other address types and ports of another protocol', () => {
    const [sp] = build([makeService('ns', 's', { clusterIP: '10.96.0.2', ports: p80 })], [
      { ...makeSlice('ns', 's', [{ addresses: ['fd00::1'] }]), addressType: 'IPv6' },
      makeSlice('ns', 's', [{ addresses: ['10.0.0.1'] }], [{ name: 'p80', port: 80, protocol: 'UDP' }], 'udp'),
    ]).servicePorts;
    expect(sp.hasEndpoints).toBe(false);
  });
});

describe('createProxyStateBuilder', () => {
  it('reuses unchanged service ports by identity and stays equal to buildProxyState (patched and re-sorted paths)', () => {
    const services = ['b', 'a', 'c'].map((n, i) => makeService('ns1', n, { clusterIP: `172.30.0.${i + 1}`, ports: p80 }));
    const slices = ['b', 'a', 'c'].map((n, i) => makeSlice('ns1', n, [{ addresses: [`10.180.0.${i + 1}`] }]));
    const input = () => ({ services: [...services], endpointSlices: [...slices], node: node(), clusterCIDR: TEST_CLUSTER_CIDR });
    const builder = createProxyStateBuilder();
    const first = builder.build(input());
    expect(first).toEqual(buildProxyState(input()));
    slices[1] = makeSlice('ns1', 'a', [{ addresses: ['10.180.0.9'] }]);
    const second = builder.build(input());
    expect(second).toEqual(buildProxyState(input()));
    expect(second.servicePorts[1]).toBe(first.servicePorts[1]);
    expect(second.servicePorts[0]).not.toBe(first.servicePorts[0]);
    services.push(makeService('ns0', 'z', { clusterIP: '172.30.0.9', ports: p80 }));
    expect(builder.build(input())).toEqual(buildProxyState(input()));
  });
});

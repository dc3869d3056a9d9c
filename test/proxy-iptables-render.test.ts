import { describe, expect, it } from 'vitest';
import { buildProxyState, createProxyStateBuilder } from '../proxy/model/build-proxy-state.ts';
import { createIptablesRenderCache, iptablesRestoreFull, iptablesRestorePartial, probability, renderIptables, type IptablesRenderOptions } from '../proxy/iptables/render.ts';
import { hash16 } from '../proxy/iptables/chain-names.ts';
import type { EndpointSlice, Service } from '../mesh-control/model/types.ts';
import { danglingJumps, normalizeRestore, parseRestore, tracePacket } from './helpers/proxy-iptables.ts';
import { makeService, makeSlice, node, TEST_CLUSTER_CIDR, TEST_EXTERNAL_CLIENT, TEST_NODE, TEST_NODE_IP } from './helpers/proxy-fixtures.ts';

const KUBE: IptablesRenderOptions = { chainPrefix: 'KUBE', dropInvalid: true };

function render(services: Service[], slices: EndpointSlice[], opts: IptablesRenderOptions = KUBE, extra: { clusterCIDR?: string; labels?: Record<string, string> } = {}) {
  const state = buildProxyState({ services, endpointSlices: slices, node: node(extra.labels), nodeIPs: [TEST_NODE_IP], clusterCIDR: 'clusterCIDR' in extra ? extra.clusterCIDR : TEST_CLUSTER_CIDR });
  const ruleset = renderIptables(state, opts);
  const text = iptablesRestoreFull(ruleset);
  expect(danglingJumps(text)).toEqual([]);
  return { state, ruleset, text };
}

function trace(text: string, src: string, dst: string, dport: number, protocol = 'tcp') {
  const { output, masq } = tracePacket(text, 'KUBE', { src, dst, dport, protocol }, [TEST_NODE_IP]);
  return { output, masq };
}

const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];

// kube-proxy's TestOverallIPTablesRules (pkg/proxy/iptables/proxier_test.go).
function overallServices(): { services: Service[]; slices: EndpointSlice[] } {
  return {
    services: [
      makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }),
      makeService('ns2', 'svc2', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', clusterIP: '172.30.0.42', ports: [{ ...p80[0], nodePort: 3001 }], externalIPs: ['192.168.99.22'], healthCheckNodePort: 30000 }, ['1.2.3.4']),
      makeService('ns3', 'svc3', { type: 'NodePort', clusterIP: '172.30.0.43', ports: [{ ...p80[0], nodePort: 3003 }] }),
      makeService('ns4', 'svc4', { type: 'NodePort', clusterIP: '172.30.0.44', externalIPs: ['192.168.99.33'], ports: [{ ...p80[0], targetPort: 80 }] }),
      makeService('ns5', 'svc5', {
        type: 'LoadBalancer', externalTrafficPolicy: 'Cluster', clusterIP: '172.30.0.45', ports: [{ ...p80[0], nodePort: 3002 }], healthCheckNodePort: 30000,
        loadBalancerSourceRanges: [' 203.0.113.0/25'], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } },
      }, ['5.6.7.8']),
      makeService('ns6', 'svc6', { type: 'ClusterIP', clusterIP: '172.30.0.46', ports: [{ ...p80[0], targetPort: 80 }] }),
    ],
    slices: [
      makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]),
      makeSlice('ns2', 'svc2', [{ addresses: ['10.180.0.2'] }]),
      makeSlice('ns3', 'svc3', [{ addresses: ['10.180.0.3'] }]),
      makeSlice('ns4', 'svc4', [{ addresses: ['10.180.0.4'] }, { addresses: ['10.180.0.5'], nodeName: TEST_NODE }]),
      makeSlice('ns5', 'svc5', [{ addresses: ['10.180.0.3'] }]),
    ],
  };
}

// Upstream's expected output, except where weft deliberately differs: no localhost NodePorts (so no
// `-d 127.0.0.0/8 ... nfacct` NodePort copies, no KUBE-FIREWALL chain, and the tail rule excludes
// 127.0.0.0/8, as kube-proxy writes it with localhost NodePorts off), no nfacct counter on the
// INVALID drop, and the canary chain is part of the full restore.
const OVERALL_EXPECTED = `
*mangle
:KUBE-PROXY-CANARY - [0:0]
COMMIT
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-PROXY-CANARY - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
`;

describe('iptables render: kube-proxy golden cases', () => {
  it('chain-name hashes match kube-proxy', () => {
    expect(hash16('ns1/svc1:p80tcp')).toBe('XPGD46QRK7WJZT7O');
    expect(hash16('ns2/svc2:p80tcp')).toBe('GNZBNJ2PO5MGZ6GT');
    expect(hash16('ns1/svc1:p80tcp10.180.0.1:80')).toBe('SXIVWICOYRO3J4NJ');
    expect(hash16('ns5/svc5:p80tcp10.180.0.3:80')).toBe('I77PXRDZVX7PMWMN');
  });

  it('probabilities as TestComputeProbability pins them', () => {
    expect(probability(1)).toBe('1.0000000000');
    expect(probability(2)).toBe('0.5000000000');
    expect(probability(10)).toBe('0.1000000000');
    expect(probability(100000)).toBe('0.0000100000');
    expect(probability(100001)).toBe('0.0000099999');
    for (let n = 2; n <= 100000; n++) if (!(Number(probability(n)) < Number(probability(n - 1)))) throw new Error(`not monotonic at ${n}`);
  });

  it('TestOverallIPTablesRules', () => {
    const { services, slices } = overallServices();
    const { text } = render(services, slices);
    expect(normalizeRestore(text)).toBe(normalizeRestore(OVERALL_EXPECTED));
  });

  it('TestTracePacket flows over the overall rules', () => {
    const { services, slices } = overallServices();
    const { text } = render(services, slices);
    expect(trace(text, '10.0.0.2', '10.0.0.3', 80)).toEqual({ output: '', masq: false });
    expect(trace(text, '10.0.0.2', '172.30.0.41', 80)).toEqual({ output: '10.180.0.1:80', masq: false });
    expect(trace(text, '10.0.0.2', '172.30.0.44', 80)).toEqual({ output: '10.180.0.4:80, 10.180.0.5:80', masq: false });
    expect(trace(text, TEST_NODE_IP, '192.168.99.22', 80)).toEqual({ output: '10.180.0.2:80', masq: true });
    expect(trace(text, TEST_EXTERNAL_CLIENT, '192.168.99.22', 80)).toEqual({ output: 'DROP', masq: false });
    expect(trace(text, TEST_NODE_IP, TEST_NODE_IP, 30000)).toEqual({ output: 'ACCEPT', masq: false });
    expect(trace(text, '10.0.0.2', '172.30.0.46', 80)).toEqual({ output: 'REJECT', masq: false });
  });
});

describe('iptables render: behaviour (traced)', () => {
  const svc = (spec: Partial<Service['spec']> = {}, lb: string[] = []) => makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80, ...spec }, lb);
  const eps = (list: { ip: string; local?: boolean; ready?: boolean; serving?: boolean; terminating?: boolean; zones?: string[] }[]) =>
    makeSlice('ns1', 'svc1', list.map((e) => ({
      addresses: [e.ip],
      ...(e.local ? { nodeName: TEST_NODE } : { nodeName: 'other-node' }),
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      ...(e.zones ? { hints: { forZones: e.zones.map((name) => ({ name })) } } : {}),
    })));

  it('masquerade matrix: off-cluster to ClusterIP, hairpin, pod-to-service', () => {
    const { text } = render([svc()], [eps([{ ip: '10.180.0.1' }])]);
    expect(trace(text, '10.0.0.2', '172.30.0.41', 80)).toEqual({ output: '10.180.0.1:80', masq: false });
    expect(trace(text, TEST_EXTERNAL_CLIENT, '172.30.0.41', 80)).toEqual({ output: '10.180.0.1:80', masq: true });
    expect(trace(text, '10.180.0.1', '172.30.0.41', 80)).toEqual({ output: '10.180.0.1:80', masq: true });
    // Without a known cluster CIDR, only hairpin traffic is masqueraded.
    const noCidr = render([svc()], [eps([{ ip: '10.180.0.1' }])], KUBE, { clusterCIDR: undefined }).text;
    expect(trace(noCidr, TEST_EXTERNAL_CLIENT, '172.30.0.41', 80)).toEqual({ output: '10.180.0.1:80', masq: false });
    const all = render([svc()], [eps([{ ip: '10.180.0.1' }])], { ...KUBE, masqueradeAll: true }).text;
    expect(trace(all, '10.0.0.2', '172.30.0.41', 80)).toEqual({ output: '10.180.0.1:80', masq: true });
  });

  it('NodePort with eTP=Cluster masquerades external clients; eTP=Local keeps the source and uses only local endpoints', () => {
    const list = [{ ip: '10.180.0.1' }, { ip: '10.180.0.2', local: true }];
    const cluster = render([svc({ type: 'NodePort', ports: [{ ...p80[0], nodePort: 30080 }] })], [eps(list)]).text;
    expect(trace(cluster, TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 30080)).toEqual({ output: '10.180.0.1:80, 10.180.0.2:80', masq: true });
    const local = render([svc({ type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ ...p80[0], nodePort: 30080 }] })], [eps(list)]).text;
    expect(trace(local, TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 30080)).toEqual({ output: '10.180.0.2:80', masq: false });
    // Pods are short-circuited to every endpoint, unmasqueraded; the node itself is masqueraded.
    expect(trace(local, '10.0.0.2', TEST_NODE_IP, 30080)).toEqual({ output: '10.180.0.1:80, 10.180.0.2:80', masq: false });
    expect(trace(local, TEST_NODE_IP, TEST_NODE_IP, 30080)).toEqual({ output: '10.180.0.1:80, 10.180.0.2:80', masq: true });
    const none = render([svc({ type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ ...p80[0], nodePort: 30080 }] })], [eps([{ ip: '10.180.0.1' }])]).text;
    expect(trace(none, TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 30080)).toEqual({ output: 'DROP', masq: false });
  });

  it('internalTrafficPolicy=Local: local endpoints only, DROP when none', () => {
    const { text } = render([svc({ internalTrafficPolicy: 'Local' })], [eps([{ ip: '10.180.0.1' }, { ip: '10.180.0.2', local: true }])]);
    expect(text).toContain(`-j KUBE-SVL-${hash16('ns1/svc1:p80tcp')}`);
    expect(trace(text, '10.0.0.2', '172.30.0.41', 80).output).toBe('10.180.0.2:80');
    const none = render([svc({ internalTrafficPolicy: 'Local' })], [eps([{ ip: '10.180.0.1' }])]).text;
    expect(trace(none, '10.0.0.2', '172.30.0.41', 80).output).toBe('DROP');
    expect(none).toContain('"ns1/svc1:p80 has no local endpoints"');
  });

  it('terminating endpoints are used only when no ready one exists (KEP-1669)', () => {
    const mixed = render([svc()], [eps([{ ip: '10.180.0.1' }, { ip: '10.180.0.2', ready: false, serving: true, terminating: true }])]).text;
    expect(trace(mixed, '10.0.0.2', '172.30.0.41', 80).output).toBe('10.180.0.1:80');
    const onlyTerminating = render([svc()], [eps([{ ip: '10.180.0.2', ready: false, serving: true, terminating: true }, { ip: '10.180.0.3', ready: false, serving: false, terminating: true }])]).text;
    expect(trace(onlyTerminating, '10.0.0.2', '172.30.0.41', 80).output).toBe('10.180.0.2:80');
    const notServing = render([svc()], [eps([{ ip: '10.180.0.3', ready: false, serving: false, terminating: true }])]).text;
    expect(trace(notServing, '10.0.0.2', '172.30.0.41', 80).output).toBe('REJECT');
  });

  it('topology hints narrow the Cluster set to this zone, and are ignored when one endpoint lacks hints', () => {
    const hinted = [{ ip: '10.180.0.1', zones: ['zone-a'] }, { ip: '10.180.0.2', zones: ['zone-b'] }];
    const zoned = render([svc()], [eps(hinted)], KUBE, { labels: { 'topology.kubernetes.io/zone': 'zone-a' } }).text;
    expect(trace(zoned, '10.0.0.2', '172.30.0.41', 80).output).toBe('10.180.0.1:80');
    const partial = render([svc()], [eps([...hinted, { ip: '10.180.0.3' }])], KUBE, { labels: { 'topology.kubernetes.io/zone': 'zone-a' } }).text;
    expect(trace(partial, '10.0.0.2', '172.30.0.41', 80).output).toBe('10.180.0.1:80, 10.180.0.2:80, 10.180.0.3:80');
  });

  it('loadBalancerSourceRanges: allowed sources reach endpoints, others are dropped, NodePort bypasses', () => {
    const lb = svc({ type: 'LoadBalancer', loadBalancerSourceRanges: ['203.0.113.0/25'], ports: [{ ...p80[0], nodePort: 30080 }] }, ['5.6.7.8']);
    const { text } = render([lb], [eps([{ ip: '10.180.0.1' }])]);
    expect(trace(text, '203.0.113.5', '5.6.7.8', 80)).toEqual({ output: '10.180.0.1:80', masq: true });
    expect(trace(text, '198.51.100.7', '5.6.7.8', 80)).toEqual({ output: 'DROP', masq: false });
    expect(trace(text, '198.51.100.7', TEST_NODE_IP, 30080)).toEqual({ output: '10.180.0.1:80', masq: true });
    // A range holding the node IP also admits the VIP as source (node-to-own-LB loops back).
    const fromNode = render([svc({ type: 'LoadBalancer', loadBalancerSourceRanges: ['192.168.0.0/24'] }, ['5.6.7.8'])], [eps([{ ip: '10.180.0.1' }])]).text;
    expect(trace(fromNode, '5.6.7.8', '5.6.7.8', 80).output).toBe('10.180.0.1:80');
  });

  it('no endpoints: REJECT on every frontend', () => {
    const { text } = render([svc({ type: 'LoadBalancer', externalIPs: ['192.168.99.9'], ports: [{ ...p80[0], nodePort: 30080 }] }, ['5.6.7.8'])], []);
    for (const [dst, port] of [['172.30.0.41', 80], ['192.168.99.9', 80], ['5.6.7.8', 80], [TEST_NODE_IP, 30080]] as const) {
      expect(trace(text, TEST_EXTERNAL_CLIENT, dst, port).output).toBe('REJECT');
    }
    expect(parseRestore(text).get('nat')?.chains.some((c) => c.includes('SVC-'))).toBe(false);
  });

  it('UDP and SCTP ports, multi-port services and named targetPorts resolved per endpoint', () => {
    const multi = makeService('ns1', 'dns', { clusterIP: '172.30.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' }, { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 'dns-tcp' }, { name: 'sig', port: 3868, protocol: 'SCTP' }] });
    const slices = [
      makeSlice('ns1', 'dns', [{ addresses: ['10.180.0.1'] }], [{ name: 'dns', port: 5353, protocol: 'UDP' }, { name: 'dns-tcp', port: 5353, protocol: 'TCP' }, { name: 'sig', port: 3868, protocol: 'SCTP' }], 'a'),
      // Another pod names the same container port with a different number: a slice of its own.
      makeSlice('ns1', 'dns', [{ addresses: ['10.180.0.2'] }], [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }], 'b'),
    ];
    const { text } = render([multi], slices);
    expect(trace(text, '10.0.0.2', '172.30.0.10', 53, 'udp').output).toBe('10.180.0.1:5353, 10.180.0.2:53');
    expect(trace(text, '10.0.0.2', '172.30.0.10', 53, 'tcp').output).toBe('10.180.0.1:5353, 10.180.0.2:53');
    expect(trace(text, '10.0.0.2', '172.30.0.10', 3868, 'sctp').output).toBe('10.180.0.1:3868');
    expect(text).toContain('-m sctp -p sctp -j DNAT --to-destination 10.180.0.1:3868');
    expect(text).toContain(`:KUBE-SVC-${hash16('ns1/dns:dnsudp')} - [0:0]`);
  });

  it('session affinity: rcheck before the random choice, set in the endpoint chain', () => {
    const { text } = render([svc({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } })], [eps([{ ip: '10.180.0.1' }, { ip: '10.180.0.2' }])]);
    const svcChain = parseRestore(text).get('nat')?.rules.filter((r) => r.chain === `KUBE-SVC-${hash16('ns1/svc1:p80tcp')}`).map((r) => r.raw) ?? [];
    expect(svcChain[1]).toContain('--rcheck --seconds 60 --reap');
    expect(svcChain[2]).toContain('--rcheck --seconds 60 --reap');
    expect(svcChain[3]).toContain('--probability 0.5000000000');
    expect(text).toMatch(/-m recent --name KUBE-SEP-\w+ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80/);
  });

  it('weft prefix by default, kube-proxy lengths kept', () => {
    const { text } = render([svc()], [eps([{ ip: '10.180.0.1' }])], {});
    expect(text).toContain('-j WEFT-SVC-');
    expect(text).not.toContain('KUBE-');
    for (const c of parseRestore(text).get('nat')?.chains ?? []) expect(c.length).toBeLessThanOrEqual(28);
  });

  it('large clusters drop per-endpoint comments', () => {
    const list = Array.from({ length: 1001 }, (_, i) => ({ ip: `10.181.${i >> 8}.${i & 255}` }));
    const { text } = render([svc()], [eps(list)]);
    expect(text).not.toContain('-> 10.181.0.1:80');
    expect(text).toContain('"ns1/svc1:p80 cluster IP"');
  });
});

describe('iptables render: partial syncs', () => {
  const two = (svc2Endpoints: string[]) => ({
    services: [makeService('ns1', 'svc1', { clusterIP: '172.30.0.41', ports: p80 }), makeService('ns2', 'svc2', { clusterIP: '172.30.0.42', ports: p80 })],
    slices: [makeSlice('ns1', 'svc1', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns2', 'svc2', svc2Endpoints.map((ip) => ({ addresses: [ip] })))],
  });

  it('writes only changed services, deletes stale chains, keeps top-level chains whole', () => {
    const a = two(['10.180.0.2', '10.180.0.3']);
    const before = render(a.services, a.slices).ruleset;
    const b = two(['10.180.0.2']);
    const after = render(b.services, b.slices).ruleset;
    const text = iptablesRestorePartial(after, before);
    const nat = parseRestore(text).get('nat');
    const svc1 = `KUBE-SVC-${hash16('ns1/svc1:p80tcp')}`;
    const gone = `KUBE-SEP-${hash16('ns2/svc2:p80tcp10.180.0.3:80')}`;
    expect(nat?.chains).not.toContain(svc1);
    expect(nat?.chains).toContain(`KUBE-SVC-${hash16('ns2/svc2:p80tcp')}`);
    expect(nat?.chains).toContain('KUBE-SERVICES');
    expect(nat?.deleted).toEqual([gone]);
    expect(nat?.rules.some((r) => r.chain === 'KUBE-SERVICES' && r.raw.includes('172.30.0.41'))).toBe(true);
    // An unchanged state rewrites no service chain.
    const idle = parseRestore(iptablesRestorePartial(after, after)).get('nat');
    expect(idle?.chains.filter((c) => /-(SVC|SEP|EXT|FW|SVL)-/.test(c))).toEqual([]);
  });

  it('edits a long top-level chain rule by rule: -D of what went, -I at the head of what came, the NODEPORTS jump still last', () => {
    const many = (changedPort: number) => ({
      services: Array.from({ length: 100 }, (_, i) => makeService('ns1', `s${i}`, { clusterIP: `172.30.2.${i + 1}`, ports: [{ name: 'p80', port: i === 7 ? changedPort : 80, protocol: 'TCP' as const }] })),
      slices: Array.from({ length: 100 }, (_, i) => makeSlice('ns1', `s${i}`, [{ addresses: [`10.180.2.${i + 1}`] }])),
    });
    const a = many(80);
    const before = render(a.services, a.slices).ruleset;
    const b = many(81);
    const after = render(b.services, b.slices).ruleset;
    const text = iptablesRestorePartial(after, before);
    const nat = text.slice(text.indexOf('*nat'));
    expect(nat).not.toContain(':KUBE-SERVICES ');
    const edits = nat.split('\n').filter((l) => / KUBE-SERVICES /.test(l));
    expect(edits).toEqual([
      expect.stringMatching(/^-D KUBE-SERVICES .*"ns1\/s7:p80 cluster IP" .*-d 172\.30\.2\.8 --dport 80 -j KUBE-SVC-/),
      expect.stringMatching(/^-I KUBE-SERVICES 1 .*"ns1\/s7:p80 cluster IP" .*-d 172\.30\.2\.8 --dport 81 -j KUBE-SVC-/),
    ]);
    // The filter table's KUBE-SERVICES (no-endpoint REJECTs) stays empty.
    expect(text.slice(0, text.indexOf('*nat'))).not.toMatch(/-[ADI] KUBE-SERVICES /);
    // Many changes at once: the chain is rewritten whole again.
    const c = many(80);
    for (const svc of c.services.slice(0, 40)) svc.spec.ports![0].port = 90;
    expect(iptablesRestorePartial(render(c.services, c.slices).ruleset, before)).toMatch(/\*nat\n(:.*\n)*:KUBE-SERVICES /);
  });

  it('full restore deletes service chains left from an earlier run', () => {
    const a = two(['10.180.0.2']);
    const { ruleset } = render(a.services, a.slices);
    const text = iptablesRestoreFull(ruleset, ['KUBE-SEP-AAAAAAAAAAAAAAAA', 'KUBE-SERVICES', 'SOMEONE-ELSES']);
    expect(parseRestore(text).get('nat')?.deleted).toEqual(['KUBE-SEP-AAAAAAAAAAAAAAAA']);
    expect(danglingJumps(text)).toEqual([]);
  });
});

describe('iptables render cache', () => {
  it('reuses unchanged service ports and renders exactly what an uncached render does', () => {
    const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];
    const services = [makeService('ns1', 'a', { clusterIP: '172.30.0.1', ports: p80 }), makeService('ns1', 'b', { type: 'NodePort', clusterIP: '172.30.0.2', ports: [{ ...p80[0], nodePort: 30002 }] })];
    const slices = [makeSlice('ns1', 'a', [{ addresses: ['10.180.0.1'] }]), makeSlice('ns1', 'b', [{ addresses: ['10.180.0.2'] }])];
    const builder = createProxyStateBuilder();
    const cache = createIptablesRenderCache();
    const input = () => ({ services, endpointSlices: slices, node: node(), nodeIPs: [TEST_NODE_IP], clusterCIDR: TEST_CLUSTER_CIDR });
    const first = renderIptables(builder.build(input()), KUBE, cache);
    slices[1] = makeSlice('ns1', 'b', []);
    const second = renderIptables(builder.build(input()), KUBE, cache);
    expect(second.services.get('ns1/a:p80/tcp')).toBe(first.services.get('ns1/a:p80/tcp'));
    expect(second).toEqual(renderIptables(buildProxyState(input()), KUBE));
    const partial = iptablesRestorePartial(second, first);
    expect(partial).not.toContain(`KUBE-SVC-${hash16('ns1/a:p80tcp')} -`);
    expect(partial).toContain(`-X KUBE-SVC-${hash16('ns1/b:p80tcp')}`);
  });
});

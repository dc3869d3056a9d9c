// The lab's pure Service pieces: address allocation (API server + LB pool), the objects the lab
// writes to mesh-control (and the EndpointSlices its controller derives from them), which node
// announces an LB IP, and probe target resolution.
import { describe, expect, it } from 'vitest';
import { labObjects } from '../lab/control.ts';
import { deriveEndpointSlices } from '../mesh-control/controllers/endpoint-slices.ts';
import { planExternalRoutes } from '../lab/external-routes.ts';
import { planLab } from '../lab/plan.ts';
import { allocateServices } from '../lab/service-addresses.ts';
import type { LabState } from '../lab/state.ts';
import { resolveTarget } from '../lab/targets.ts';
import { parseManifests } from '../mesh-control/model/parse.ts';
import type { EndpointSlice, Pod, Service } from '../mesh-control/model/types.ts';

function svc(name: string, spec: Service['spec']): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 'http' }], ...spec } };
}

function labState(services: Service[]): LabState {
  const node = (i: number) => ({ name: `node${i}`, index: i, podCIDR: `10.244.${i - 1}.0/24`, address: `172.30.0.${10 + i}`, netns: `n${i}`, dir: '/x', conflist: '/x' });
  const pod = (name: string, nodeName: string, labels: Record<string, string>, ip: string) => ({
    namespace: 'default', name, node: nodeName, ip, labels, ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' as const }], netns: `p-${name}`, containerID: 'c'.repeat(64), control: '/s',
  });
  return {
    dir: '/x', prefix: 'wl0000-', underlay: 'l2', backend: 'host-gw', clusterCIDR: '10.244.0.0/16', nodeMask: 24, proxyMode: 'nftables', serviceCIDR: '10.96.0.0/16',
    nodes: [node(1), node(2), node(3)],
    pods: [pod('edge-0', 'node2', { app: 'edge' }, '10.244.1.2'), pod('web-0', 'node1', { app: 'web' }, '10.244.0.2'), pod('web', 'node1', { app: 'x' }, '10.244.0.9')],
    hosts: [], services, endpointSlices: [], deployments: [], networkPolicies: [], namespaces: [],
  };
}

describe('allocateServices', () => {
  it('allocates clusterIPs, nodePorts, health-check ports and LB IPs, honoring given values', () => {
    const out = allocateServices([], [
      svc('web', { clusterIP: '10.96.0.10' }),
      svc('np', { type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }),
      svc('lb', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }),
      svc('fixed', { type: 'LoadBalancer', loadBalancerIP: '172.30.255.77' }),
    ]);
    expect(out.map((s) => s.spec.clusterIP)).toEqual(['10.96.0.10', expect.stringMatching(/^10\.96\./), expect.stringMatching(/^10\.96\./), expect.stringMatching(/^10\.96\./)]);
    expect(out[1].spec.ports?.[0].nodePort).toBe(30080);
    expect(out[2].spec.healthCheckNodePort).toBeGreaterThanOrEqual(30000);
    expect(out[2].status).toEqual({ loadBalancer: { ingress: [{ ip: '172.30.255.1' }] } });
    expect(out[3].status).toEqual({ loadBalancer: { ingress: [{ ip: '172.30.255.77' }] } });
  });

  it('keeps addresses across an update that does not name them, and names the Service on a conflict', () => {
    const [before] = allocateServices([], [svc('lb', { type: 'LoadBalancer' })]);
    const [after] = allocateServices([before], [svc('lb', { type: 'LoadBalancer', ports: [{ name: 'http', port: 8080 }] })]);
    expect(after.spec.clusterIP).toBe(before.spec.clusterIP);
    expect(after.spec.ports?.[0].nodePort).toBe(before.spec.ports?.[0].nodePort);
    expect(after.status).toEqual(before.status);
    expect(() => allocateServices([], [svc('a', { clusterIP: '10.96.0.10' }), svc('b', { clusterIP: '10.96.0.10' })]))
      .toThrow(/Service default\/b: .*already allocated/);
  });

  it('rejects a LabHost inside the LB pool', () => {
    const host = { apiVersion: 'weft.dev/v1alpha1' as const, kind: 'LabHost' as const, metadata: { name: 'h' }, spec: { ip: '172.30.255.9' } };
    expect(() => planLab([host], 1)).toThrow(/LoadBalancer pool/);
  });
});

describe('the objects the lab writes to mesh-control', () => {
  it('are Nodes and Pods the manifest parser accepts, from which the EndpointSlice controller derives ready/terminating endpoints', () => {
    const state = labState(allocateServices([], [svc('web', {}), svc('edge', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' })]));
    const terminating = state.pods[1];
    terminating.deletionTimestamp = '2026-01-01T00:00:00.000Z';
    const written = parseManifests(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: labObjects(state) }), 'lab objects');
    // A deletion is mesh-control's (it set the deadline when the lab deleted the pod): the lab never writes one.
    expect(written.filter((o) => o.metadata.deletionTimestamp)).toEqual([]);
    const stored = written.map((o) => (o.kind === 'Pod' && o.metadata.name === terminating.name ? { ...o, metadata: { ...o.metadata, deletionTimestamp: terminating.deletionTimestamp } } : o));
    // What mesh-control's controller (controllers/run.ts) stores next to them.
    const objects = [...stored, ...deriveEndpointSlices(state.services, stored.filter((o): o is Pod => o.kind === 'Pod'))];
    expect(objects.filter((o) => o.kind === 'Node').map((n) => n.kind === 'Node' && n.status?.addresses?.[0])).toEqual([
      { type: 'InternalIP', address: '172.30.0.11' }, { type: 'InternalIP', address: '172.30.0.12' }, { type: 'InternalIP', address: '172.30.0.13' },
    ]);
    const slices = objects.filter((o): o is EndpointSlice => o.kind === 'EndpointSlice');
    const web = slices.find((s) => s.metadata.labels?.['kubernetes.io/service-name'] === 'web') as EndpointSlice;
    expect(web.endpoints).toEqual([expect.objectContaining({ addresses: ['10.244.0.2'], nodeName: 'node1', conditions: { ready: false, serving: true, terminating: true } })]);
    expect(web.ports).toEqual([{ name: 'http', protocol: 'TCP', port: 8080 }]);
  });
});

describe('planExternalRoutes', () => {
  it('announces a Local LB IP from a node with a local endpoint, others from the first node', () => {
    const state = labState(allocateServices([], [
      svc('edge', { type: 'LoadBalancer', externalTrafficPolicy: 'Local' }),
      svc('web', { type: 'LoadBalancer', externalIPs: ['192.0.2.10'] }),
    ]));
    expect(Object.fromEntries(planExternalRoutes(state))).toEqual({ '172.30.255.1': '172.30.0.12', '172.30.255.2': '172.30.0.11', '192.0.2.10': '172.30.0.11' });
  });
});

describe('resolveTarget', () => {
  const state = labState(allocateServices([], [svc('web', { clusterIP: '10.96.0.20', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'http', port: 80 }] }), svc('edge', {})]));

  it('resolves a Service to its ClusterIP and port, a pod name winning over a Service name', () => {
    expect(resolveTarget(state, 'svc/default/web', undefined, undefined)).toEqual({ key: 'svc/default/web', ip: '10.96.0.20', port: 53, protocol: 'UDP' });
    expect(resolveTarget(state, 'svc/default/web', 80, undefined)).toEqual({ key: 'svc/default/web', ip: '10.96.0.20', port: 80, protocol: 'TCP' });
    expect(resolveTarget(state, 'svc/default/web', undefined, 'TCP')).toMatchObject({ port: 80, protocol: 'TCP' });
    expect(resolveTarget(state, 'default/web', 8080, undefined)).toEqual({ key: 'default/web', ip: '10.244.0.9', port: 8080, protocol: 'TCP' });
    expect(resolveTarget(state, 'default/edge', undefined, undefined)).toMatchObject({ key: 'svc/default/edge', port: 80 });
    expect(resolveTarget(state, 'node/node2', 30080, undefined)).toEqual({ key: 'node/node2', ip: '172.30.0.12', port: 30080, protocol: 'TCP' });
  });

  it('explains what is missing', () => {
    expect(() => resolveTarget(state, 'svc/default/web', 81, undefined)).toThrow('Service svc/default/web has no port 81 (its ports: 53/UDP, 80/TCP)');
    expect(() => resolveTarget(state, '10.96.0.20', undefined, undefined)).toThrow(/--port is required/);
    expect(() => resolveTarget(state, 'default/nope', 80, undefined)).toThrow(/names nothing in the lab/);
  });
});

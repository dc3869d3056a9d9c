// A synthetic cluster for sync benchmarks: N ClusterIP services with E endpoints each, half of the
// endpoints on this node, one EndpointSlice per service, as a real cluster's proxy would see it.
import type { EndpointSlice, Node, Service } from '../../mesh-control/model/types.ts';
import { SERVICE_NAME_LABEL } from '../../mesh-control/model/types.ts';
import { formatIPv4, parseIPv4 } from '../../mesh-control/model/cidr.ts';
import type { ClusterView } from '../../proxy/agent/source.ts';

export const BENCH_NODE = 'bench-node';
export const BENCH_CLUSTER_CIDR = '10.0.0.0/8';
const SERVICE_BASE = parseIPv4('172.30.0.0');
const ENDPOINT_BASE = parseIPv4('10.1.0.0');

function service(i: number, generation: number): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: `ns${i % 50}`, name: `svc${i}` },
    spec: {
      type: 'ClusterIP',
      clusterIP: formatIPv4(SERVICE_BASE + 1 + i),
      // A changed service differs in its port: every chain and map element of it changes.
      ports: [{ name: 'http', port: 80 + generation, protocol: 'TCP', targetPort: 8080 }],
    },
  };
}

function slice(i: number, endpoints: number, generation: number): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: `ns${i % 50}`, name: `svc${i}-weft`, labels: { [SERVICE_NAME_LABEL]: `svc${i}` } },
    addressType: 'IPv4',
    endpoints: Array.from({ length: endpoints }, (_, e) => ({
      addresses: [formatIPv4(ENDPOINT_BASE + i * 16 + e + generation)],
      conditions: { ready: true },
      nodeName: e % 2 === 0 ? BENCH_NODE : 'other-node',
    })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

export function benchNode(): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name: BENCH_NODE }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.2' }] } };
}

/** `changed`: indexes of services rendered in their "changed" variant (other port, shifted endpoints). */
export function syntheticView(services: number, endpoints: number, changed: ReadonlySet<number> = new Set()): ClusterView {
  const view: ClusterView = { nodes: [benchNode()], services: [], endpointSlices: [], pods: [], networkPolicies: [], namespaces: [] };
  for (let i = 0; i < services; i++) {
    const g = changed.has(i) ? 1 : 0;
    view.services.push(service(i, g));
    view.endpointSlices.push(slice(i, endpoints, g));
  }
  return view;
}

/** Service i and its EndpointSlice in their "changed" variant, as a source delivers a new object for it. */
export function changedService(i: number, endpoints: number): { service: Service; slice: EndpointSlice } {
  return { service: service(i, 1), slice: slice(i, endpoints, 1) };
}

// Builders for Service and EndpointSlice objects in proxy tests, in the shape of kube-proxy's
// makeTestService / makeTestEndpointSlice.
import type { Endpoint, EndpointPort, EndpointSlice, Service, ServiceSpec } from '../../mesh-control/model/types.ts';
import { SERVICE_NAME_LABEL } from '../../mesh-control/model/types.ts';

export const TEST_NODE = 'test-node';
export const TEST_NODE_IP = '192.168.0.2';
export const TEST_EXTERNAL_CLIENT = '203.0.113.2';
export const TEST_CLUSTER_CIDR = '10.0.0.0/8';

export function makeService(namespace: string, name: string, spec: ServiceSpec, lbIPs: string[] = []): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name },
    spec,
    ...(lbIPs.length ? { status: { loadBalancer: { ingress: lbIPs.map((ip) => ({ ip })) } } } : {}),
  };
}

export function makeSlice(namespace: string, service: string, endpoints: Endpoint[], ports: EndpointPort[] = [{ name: 'p80', port: 80, protocol: 'TCP' }], suffix = '1'): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace, name: `${service}-${suffix}`, labels: { [SERVICE_NAME_LABEL]: service } },
    addressType: 'IPv4',
    endpoints,
    ports,
  };
}

export const node = (labels: Record<string, string> = {}) => ({ metadata: { name: TEST_NODE, labels } });

import { describe, expect, it } from 'vitest';
import { deriveEndpointSlices, MANAGED_BY, MANAGED_BY_LABEL } from '../mesh-control/controllers/endpoint-slices.ts';
import type { ContainerPort, EndpointSlice, Pod, Service, ServicePort } from '../mesh-control/model/types.ts';

function pod(name: string, opts: { ip?: string; labels?: Record<string, string>; ports?: ContainerPort[]; node?: string; ready?: boolean; deleting?: boolean; phase?: string; namespace?: string } = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name, namespace: opts.namespace ?? 'default', labels: opts.labels ?? { app: 'web' }, uid: `uid-${name}`,
      ...(opts.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
    },
    spec: { nodeName: opts.node ?? 'node1', containers: [{ name: 'c', ports: opts.ports ?? [{ name: 'http', containerPort: 8080 }] }] },
    status: {
      ...(opts.ip === undefined ? {} : { podIP: opts.ip }),
      ...(opts.phase ? { phase: opts.phase } : {}),
      ...(opts.ready === undefined ? {} : { conditions: [{ type: 'Ready' as const, status: opts.ready ? 'True' as const : 'False' as const }] }),
    },
  };
}

function service(name: string, ports: ServicePort[], extra: Partial<Service['spec']> = {}): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { selector: { app: 'web' }, ports, ...extra } };
}

const userSlice: EndpointSlice = {
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
  metadata: { name: 'ext-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'ext' } },
  addressType: 'IPv4', endpoints: [{ addresses: ['192.0.2.10'] }], ports: [{ name: '', protocol: 'TCP', port: 9000 }],
};

describe('deriveEndpointSlices', () => {
  it('writes one slice per service with the service-name label, endpoints sorted, targetRef and nodeName', () => {
    const slices = deriveEndpointSlices(
      [service('web', [{ name: 'http', port: 80, targetPort: 'http' }])],
      [pod('b', { ip: '10.244.1.5', node: 'node2' }), pod('a', { ip: '10.244.0.5' }), pod('other', { ip: '10.244.0.6', labels: { app: 'db' } })],
    );
    expect(slices).toEqual([{
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: 'web-weft', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web', [MANAGED_BY_LABEL]: MANAGED_BY } },
      addressType: 'IPv4',
      endpoints: [
        { addresses: ['10.244.0.5'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node1', targetRef: { kind: 'Pod', namespace: 'default', name: 'a', uid: 'uid-a' } },
        { addresses: ['10.244.1.5'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node2', targetRef: { kind: 'Pod', namespace: 'default', name: 'b', uid: 'uid-b' } },
      ],
      ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    }]);
  });

  it('resolves named target ports per pod and groups pods by their port mapping', () => {
    const svc = service('web', [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'metrics', port: 9090, targetPort: 9100 }]);
    const slices = deriveEndpointSlices([svc], [
      pod('a', { ip: '10.244.0.5', ports: [{ name: 'http', containerPort: 8080 }] }),
      pod('b', { ip: '10.244.0.6', ports: [{ name: 'http', containerPort: 8081 }] }),
      pod('c', { ip: '10.244.0.7', ports: [{ name: 'web', containerPort: 8080 }] }),
      pod('d', { ip: '10.244.0.8', ports: [{ name: 'http', containerPort: 8080 }] }),
    ]);
    const byPorts = slices.map((s) => ({ name: s.metadata.name, ports: s.ports, ips: s.endpoints.map((e) => e.addresses[0]) }));
    expect(byPorts).toEqual([
      { name: 'web-weft', ports: [{ name: 'http', protocol: 'TCP', port: 8080 }, { name: 'metrics', protocol: 'TCP', port: 9100 }], ips: ['10.244.0.5', '10.244.0.8'] },
      { name: 'web-weft-2', ports: [{ name: 'http', protocol: 'TCP', port: 8081 }, { name: 'metrics', protocol: 'TCP', port: 9100 }], ips: ['10.244.0.6'] },
      // c lacks the named port "http": it is left out of that port, not out of the service.
      { name: 'web-weft-3', ports: [{ name: 'metrics', protocol: 'TCP', port: 9100 }], ips: ['10.244.0.7'] },
    ]);
  });

  it('matches a named port only with the same protocol, and defaults targetPort to port', () => {
    const svc = service('dns', [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' }, { name: 'plain', port: 8080 }]);
    const [slice] = deriveEndpointSlices([svc], [pod('a', { ip: '10.244.0.5', ports: [{ name: 'dns', containerPort: 5353, protocol: 'UDP' }, { name: 'dns', containerPort: 53, protocol: 'TCP' }] })]);
    expect(slice.ports).toEqual([{ name: 'dns', protocol: 'UDP', port: 5353 }, { name: 'plain', protocol: 'TCP', port: 8080 }]);
  });

  it('derives ready, serving and terminating from pod status and deletionTimestamp', () => {
    const pods = [
      pod('ready', { ip: '10.244.0.1', ready: true }),
      pod('unready', { ip: '10.244.0.2', ready: false }),
      pod('terminating', { ip: '10.244.0.3', deleting: true }),
      pod('terminating-unready', { ip: '10.244.0.4', deleting: true, ready: false }),
      pod('no-ip'),
      pod('done', { ip: '10.244.0.5', phase: 'Succeeded' }),
    ];
    const [slice] = deriveEndpointSlices([service('web', [{ port: 80 }])], pods);
    expect(Object.fromEntries(slice.endpoints.map((e) => [e.targetRef?.name, e.conditions]))).toEqual({
      ready: { ready: true, serving: true, terminating: false },
      unready: { ready: false, serving: false, terminating: false },
      terminating: { ready: false, serving: true, terminating: true },
      'terminating-unready': { ready: false, serving: false, terminating: true },
    });
  });

  it('publishNotReadyAddresses makes every endpoint ready and serving', () => {
    const [slice] = deriveEndpointSlices([service('web', [{ port: 80 }], { publishNotReadyAddresses: true })], [
      pod('unready', { ip: '10.244.0.2', ready: false }),
      pod('terminating', { ip: '10.244.0.3', deleting: true }),
    ]);
    expect(slice.endpoints.map((e) => e.conditions)).toEqual([
      { ready: true, serving: true, terminating: false },
      { ready: true, serving: true, terminating: true },
    ]);
  });

  it('keeps slices of services without a selector and replaces its own', () => {
    const ext: Service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ext', namespace: 'default' }, spec: { ports: [{ port: 9000 }] } };
    const stale: EndpointSlice = { ...userSlice, metadata: { name: 'web-old', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web', [MANAGED_BY_LABEL]: MANAGED_BY } }, ports: [{ name: '', protocol: 'TCP', port: 80 }] };
    const slices = deriveEndpointSlices([ext, service('web', [{ port: 80 }])], [pod('a', { ip: '10.244.0.5' })], [userSlice, stale]);
    expect(slices[0]).toBe(userSlice);
    // The port mapping is unchanged, so the slice keeps its name.
    expect(slices.slice(1).map((s) => [s.metadata.name, s.endpoints.map((e) => e.addresses[0])])).toEqual([['web-old', ['10.244.0.5']]]);
  });

  it('gives a selector that matches nothing one empty slice, and ignores other namespaces and ExternalName', () => {
    const slices = deriveEndpointSlices(
      [service('web', [{ port: 80 }]), service('name', [{ port: 80 }], { type: 'ExternalName', externalName: 'example.com' })],
      [pod('a', { ip: '10.244.0.5', namespace: 'other' })],
    );
    expect(slices.map((s) => [s.metadata.name, s.endpoints.length, s.ports])).toEqual([['web-weft', 0, []]]);
  });
});

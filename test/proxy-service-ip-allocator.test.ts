import { describe, expect, it } from 'vitest';
import { createServiceIPAllocator } from '../proxy/service-ip-allocator.ts';
import { ProxyError } from '../proxy/errors.ts';
import { makeService } from './helpers/proxy-fixtures.ts';

const web = (spec: Parameters<typeof makeService>[2] = { ports: [{ port: 80 }] }, name = 'web') => makeService('default', name, spec);

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as ProxyError).code;
  }
  return 'no error';
}

describe('service IP allocator', () => {
  it('allocates clusterIPs from the upper band of 10.96.0.0/16 first, and honors requested ones', () => {
    const a = createServiceIPAllocator();
    expect(a.allocate(web()).spec.clusterIP).toBe('10.96.1.1');
    expect(a.allocate(web(undefined, 'b')).spec.clusterIP).toBe('10.96.1.2');
    const dns = a.allocate(web({ clusterIP: '10.96.0.10', ports: [{ port: 53, protocol: 'UDP' }] }, 'dns'));
    expect(dns.spec.clusterIP).toBe('10.96.0.10');
    expect(dns.spec.clusterIPs).toEqual(['10.96.0.10']);
  });

  it('rejects conflicts and out-of-range IPs with the API server wording', () => {
    const a = createServiceIPAllocator({ serviceCIDR: '10.96.0.0/24' });
    a.allocate(web({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }));
    expect(() => a.allocate(web({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }, 'other'))).toThrow('failed to allocate IP 10.96.0.10 for service default/other: provided IP is already allocated');
    expect(() => a.allocate(web({ clusterIP: '10.1.0.1', ports: [{ port: 80 }] }, 'other'))).toThrow('the provided IP (10.1.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/24');
    expect(code(() => a.allocate(web({ clusterIP: '10.96.0.255', ports: [{ port: 80 }] }, 'bcast')))).toBe('WEFT_PROXY_IP_NOT_IN_RANGE');
    // Re-applying the same service is an update, not a conflict.
    expect(a.allocate(web({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] })).spec.clusterIP).toBe('10.96.0.10');
  });

  it('fills the range, then reports it full; release frees', () => {
    const a = createServiceIPAllocator({ serviceCIDR: '10.96.0.0/29' });
    for (let i = 0; i < 6; i++) a.allocate(web(undefined, `s${i}`));
    expect(code(() => a.allocate(web(undefined, 'extra')))).toBe('WEFT_PROXY_IP_RANGE_FULL');
    a.release('default', 's3');
    expect(a.allocate(web(undefined, 'extra')).spec.clusterIP).toBeDefined();
  });

  it('headless and ExternalName services get no clusterIP', () => {
    const a = createServiceIPAllocator();
    expect(a.allocate(web({ clusterIP: 'None', ports: [{ port: 80 }] })).spec.clusterIP).toBe('None');
    expect(a.allocate(web({ type: 'ExternalName', externalName: 'example.org' }, 'ext')).spec.clusterIP).toBeUndefined();
  });

  it('allocates nodePorts for NodePort and LoadBalancer, shares one between TCP and UDP of a port, honors requested ones', () => {
    const a = createServiceIPAllocator();
    const np = a.allocate(web({ type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'http', port: 80, nodePort: 30080 }] }));
    const [udp, tcp, http] = np.spec.ports ?? [];
    expect(udp.nodePort).toBeGreaterThanOrEqual(30000 + 86);
    expect(tcp.nodePort).toBe(udp.nodePort);
    expect(http.nodePort).toBe(30080);
    const lb = a.allocate(web({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ port: 443 }] }, 'lb'));
    expect(lb.spec.healthCheckNodePort).toBeGreaterThan(0);
    expect(lb.spec.healthCheckNodePort).not.toBe(lb.spec.ports?.[0].nodePort);
    expect(a.allocate(web({ ports: [{ port: 80, nodePort: 30081 }] }, 'cip')).spec.ports?.[0].nodePort).toBeUndefined();
    // Re-allocating keeps what the service holds.
    expect(a.allocate(web({ type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'http', port: 80, nodePort: 30080 }] })).spec.ports?.[0].nodePort).toBe(udp.nodePort);
  });

  it('rejects nodePort conflicts', () => {
    const a = createServiceIPAllocator();
    a.allocate(web({ type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }));
    expect(() => a.allocate(web({ type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] }, 'other'))).toThrow('failed to allocate node port for service default/other: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated');
    expect(() => a.allocate(web({ type: 'NodePort', ports: [{ port: 80, nodePort: 8080 }] }, 'other'))).toThrow('provided port is not in the valid range. The range of valid ports is 30000-32767');
    expect(code(() => a.allocate(web({ type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30090 }, { name: 'b', port: 81, nodePort: 30090 }] }, 'dup')))).toBe('WEFT_PROXY_PORT_ALLOCATED');
    // The failed calls recorded nothing.
    expect(a.allocate(web({ type: 'NodePort', ports: [{ port: 80, nodePort: 30090 }] }, 'dup')).spec.ports?.[0].nodePort).toBe(30090);
    expect(code(() => createServiceIPAllocator({ nodePortRange: '40000-30000' }))).toBe('WEFT_PROXY_INVALID_CONFIG');
  });
});

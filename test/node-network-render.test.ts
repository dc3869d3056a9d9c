// Golden tests of the node network renderer: leases + self → routes, neighbours, fdb entries, and
// the batches that move the kernel from what it has to what is wanted.
import { describe, expect, it } from 'vitest';
import { type NodeLease, renderBatch, renderMasquerade, renderNodeRoutes, vtepMAC } from '../cni/node-network/render.ts';

const leases: NodeLease[] = [
  { node: 'node3', subnet: '10.244.2.0/24', attrs: { underlayIP: '172.30.3.2', vtepMAC: vtepMAC('172.30.3.2') } },
  { node: 'node1', subnet: '10.244.0.0/24', attrs: { underlayIP: '172.30.1.2', vtepMAC: vtepMAC('172.30.1.2') } },
  { node: 'node2', subnet: '10.244.1.0/24', attrs: { underlayIP: '172.30.2.2', vtepMAC: vtepMAC('172.30.2.2') } },
  // Not routable: no underlay address yet, or a subnet outside the cluster CIDR.
  { node: 'node4', subnet: '10.244.3.0/24', attrs: {} },
  { node: 'rogue', subnet: '192.168.0.0/24', attrs: { underlayIP: '172.30.9.2', vtepMAC: vtepMAC('172.30.9.2') } },
];
const base = { self: 'node1', leases, clusterCIDR: '10.244.0.0/16', underlayDevice: 'eth0' };
const empty = { routes: [], neighs: [], fdb: [] };
const lines = (b: ReturnType<typeof renderBatch>) => [...b.bridgeBefore.map((l) => `bridge ${l}`), ...b.ip.map((l) => `ip ${l}`), ...b.bridgeAfter.map((l) => `bridge ${l}`)];

describe('node network renderer', () => {
  it('derives a stable, locally administered unicast VTEP MAC from the underlay address', () => {
    expect(vtepMAC('172.30.1.2')).toBe('0e:57:ac:1e:01:02');
  });

  it('renders host-gw routes via each other node’s underlay address', () => {
    expect(lines(renderBatch(renderNodeRoutes({ ...base, backend: 'host-gw' }), empty))).toEqual([
      'ip route replace 10.244.1.0/24 via 172.30.2.2 dev eth0 proto 87',
      'ip route replace 10.244.2.0/24 via 172.30.3.2 dev eth0 proto 87',
    ]);
  });

  it('renders vxlan routes, permanent neighbours and fdb entries (flannel’s scheme)', () => {
    const desired = renderNodeRoutes({ ...base, backend: 'vxlan' });
    expect(lines(renderBatch(desired, empty))).toEqual([
      'bridge fdb replace 0e:57:ac:1e:02:02 dev weft.1 dst 172.30.2.2 self permanent',
      'bridge fdb replace 0e:57:ac:1e:03:02 dev weft.1 dst 172.30.3.2 self permanent',
      'ip neigh replace 10.244.1.0 lladdr 0e:57:ac:1e:02:02 dev weft.1 nud permanent',
      'ip neigh replace 10.244.2.0 lladdr 0e:57:ac:1e:03:02 dev weft.1 nud permanent',
      'ip route replace 10.244.1.0/24 via 10.244.1.0 dev weft.1 onlink proto 87',
      'ip route replace 10.244.2.0/24 via 10.244.2.0 dev weft.1 onlink proto 87',
    ]);
    // Level-triggered: applying the same state again changes nothing.
    expect(lines(renderBatch(desired, desired))).toEqual([]);
  });

  it('removes what belongs to nodes that left, routes first and fdb last', () => {
    const before = renderNodeRoutes({ ...base, backend: 'vxlan' });
    const after = renderNodeRoutes({ ...base, backend: 'vxlan', leases: leases.filter((l) => l.node !== 'node2') });
    expect(lines(renderBatch(after, before))).toEqual([
      'ip route del 10.244.1.0/24 proto 87',
      'ip neigh del 10.244.1.0 dev weft.1',
      'bridge fdb del 0e:57:ac:1e:02:02 dev weft.1 dst 172.30.2.2 self',
    ]);
  });

  it('moves a node whose underlay address changed without deleting its new entries', () => {
    const before = renderNodeRoutes({ ...base, backend: 'vxlan' });
    const moved = leases.map((l) => (l.node === 'node3' ? { ...l, attrs: { ...l.attrs, underlayIP: '172.30.7.2' } } : l));
    expect(lines(renderBatch(renderNodeRoutes({ ...base, backend: 'vxlan', leases: moved }), before))).toEqual([
      'bridge fdb replace 0e:57:ac:1e:03:02 dev weft.1 dst 172.30.7.2 self permanent',
    ]);
    expect(lines(renderBatch(renderNodeRoutes({ ...base, backend: 'host-gw', leases: moved }), renderNodeRoutes({ ...base, backend: 'host-gw' })))).toEqual([
      'ip route replace 10.244.2.0/24 via 172.30.7.2 dev eth0 proto 87',
    ]);
  });

  it('renders exactly one masquerade rule for traffic leaving the cluster', () => {
    expect(renderMasquerade('10.244.0.0/24', '10.244.0.0/16')).toBe([
      'table ip weft-nat {}',
      'delete table ip weft-nat',
      'table ip weft-nat {',
      '\tchain postrouting {',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      '\t\tip saddr 10.244.0.0/24 ip daddr != 10.244.0.0/16 masquerade',
      '\t}',
      '}',
      '',
    ].join('\n'));
  });
});

// The lab's plan from manifests (pure) and its underlay address plan.
import { describe, expect, it } from 'vitest';
import { parseManifests } from '../mesh-control/model/parse.ts';
import { planLab } from '../lab/plan.ts';
import { planAttachment } from '../lab/underlay.ts';
import { podYAML } from './helpers/lab.ts';

const objects = (text: string) => parseManifests(text, 'test.yaml');

describe('lab plan', () => {
  it('creates Node manifests first, then node1..N, then nodes pods name; spreads pods round-robin', () => {
    const plan = planLab(objects([
      'apiVersion: v1\nkind: Node\nmetadata:\n  name: big\nspec:\n  podCIDR: 10.244.9.0/24\n',
      podYAML('p0'), podYAML('p1'), podYAML('pinned', { node: 'edge', ip: '10.244.9.9' }), podYAML('p2'), podYAML('p3'),
    ].join('---\n')), 3);
    expect(plan.nodes.map((n) => [n.name, n.podCIDR])).toEqual([['big', '10.244.9.0/24'], ['node1', undefined], ['node2', undefined], ['edge', undefined]]);
    expect(plan.pods.map((p) => `${p.name}@${p.node}`)).toEqual(['p0@big', 'p1@node1', 'pinned@edge', 'p2@node2', 'p3@edge']);
    expect(plan.pods.find((p) => p.name === 'pinned')?.requestedIP).toBe('10.244.9.9');
  });

  it('expands Deployments and keeps LabHosts', () => {
    const plan = planLab(objects([
      'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          ports:\n            - containerPort: 8080\n',
      'apiVersion: weft.dev/v1alpha1\nkind: LabHost\nmetadata:\n  name: outside\nspec:\n  ports:\n    - containerPort: 80\n',
    ].join('---\n')), 2);
    expect(plan.pods.map((p) => [p.name, p.node, p.labels.app, p.ports[0]])).toEqual([
      ['web-0', 'node1', 'web', { containerPort: 8080, protocol: 'TCP' }],
      ['web-1', 'node2', 'web', { containerPort: 8080, protocol: 'TCP' }],
    ]);
    expect(plan.hosts).toEqual([{ name: 'outside', ip: undefined, ports: [{ containerPort: 80, protocol: 'TCP' }] }]);
  });

  it('refuses a pod declared twice (e.g. by a Deployment and a Pod, or by two files)', () => {
    expect(() => planLab([...objects(podYAML('a')), ...objects(podYAML('a'))], 1)).toThrow('pod default/a is declared twice');
  });

  it('places nodes and hosts on the underlay', () => {
    expect(planAttachment('l2', 'node', 1)).toEqual({ ip: '172.30.0.11', prefix: 24 });
    expect(planAttachment('l2', 'host', 2)).toEqual({ ip: '172.30.0.102', prefix: 24 });
    expect(planAttachment('l2', 'host', 1, '172.30.0.200')).toEqual({ ip: '172.30.0.200', prefix: 24 });
    expect(() => planAttachment('l2', 'host', 1, '192.0.2.1')).toThrow('LabHost address 192.0.2.1 is outside the l2 underlay 172.30.0.0/24');
    expect(planAttachment('routed', 'node', 3)).toEqual({ ip: '172.30.3.2', prefix: 24, gateway: '172.30.3.1' });
    expect(planAttachment('routed', 'host', 1, '192.0.2.1')).toEqual({ ip: '192.0.2.1', prefix: 24, gateway: '192.0.2.254' });
  });
});

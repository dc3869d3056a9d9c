import { describe, expect, it } from 'vitest';
import { DEPLOYMENT_ANNOTATION, expandDeployment } from '../mesh-control/model/deployment.ts';
import { deploymentPodName, namespacedName, objectKey } from '../mesh-control/model/objects.ts';
import { parseManifests } from '../mesh-control/model/parse.ts';
import type { Deployment } from '../mesh-control/model/types.ts';
import { validate } from '../mesh-control/model/validate.ts';

const YAML = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop, labels: { team: a } }
spec:
  replicas: 3
  selector: { matchLabels: { app: web } }
  template:
    metadata:
      labels: { app: web, tier: front }
      annotations: { note: x }
    spec:
      nodeName: node-a
      containers:
        - name: app
          ports: [{ name: http, containerPort: 8080 }, { containerPort: 53, protocol: UDP }]
`;

describe('expandDeployment', () => {
  const d = parseManifests(YAML, 'd.yaml')[0] as Deployment;

  it('makes replicas pods named <deployment>-<index> in the deployment namespace', () => {
    const pods = expandDeployment(d);
    expect(pods.map((p) => objectKey(p))).toEqual(['Pod/shop/web-0', 'Pod/shop/web-1', 'Pod/shop/web-2']);
    expect(pods.every((p) => validate(p).length === 0)).toBe(true);
  });

  it('copies template labels, annotations and spec, and names the owner', () => {
    const [pod] = expandDeployment(d);
    expect(pod).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web-0', namespace: 'shop', labels: { app: 'web', tier: 'front' }, annotations: { note: 'x', [DEPLOYMENT_ANNOTATION]: 'web' } },
      spec: { nodeName: 'node-a', containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { containerPort: 53, protocol: 'UDP' }] }] },
    });
  });

  it('is deterministic and does not share state between pods or with the deployment', () => {
    const a = expandDeployment(d);
    expect(expandDeployment(d)).toEqual(a);
    a[0].spec.containers[0].name = 'changed';
    a[0].metadata.labels!.app = 'changed';
    expect(a[1].spec.containers[0].name).toBe('app');
    expect(d.spec.template.spec.containers[0].name).toBe('app');
    expect(d.spec.template.metadata?.labels?.app).toBe('web');
  });

  it('handles zero replicas, absent replicas and an unparsed deployment', () => {
    expect(expandDeployment({ ...d, spec: { ...d.spec, replicas: 0 } })).toEqual([]);
    const raw: Deployment = {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' },
      spec: { selector: { matchLabels: { a: 'b' } }, template: { spec: { containers: [{ name: 'c', ports: [{ containerPort: 1 }] }] } } },
    };
    const pods = expandDeployment(raw);
    expect(pods).toHaveLength(1);
    expect(pods[0].metadata).toMatchObject({ name: 'x-0', namespace: 'default', labels: {} });
    expect(pods[0].spec.containers[0].ports?.[0].protocol).toBe('TCP');
  });
});

describe('object identity', () => {
  it('keys namespaced and cluster-scoped objects', () => {
    expect(objectKey({ kind: 'Service', metadata: { name: 'web', namespace: 'shop' } })).toBe('Service/shop/web');
    expect(objectKey({ kind: 'Service', metadata: { name: 'web' } })).toBe('Service/default/web');
    expect(objectKey({ kind: 'Node', metadata: { name: 'node-a' } })).toBe('Node/node-a');
    expect(namespacedName({ kind: 'Pod', metadata: { name: 'p', namespace: 'x' } })).toBe('x/p');
    expect(namespacedName({ kind: 'Namespace', metadata: { name: 'x' } })).toBe('x');
    expect(deploymentPodName('web', 7)).toBe('web-7');
  });
});

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManifestError, ManifestReadError, formatProblem } from '../mesh-control/model/errors.ts';
import { loadManifests, parseManifests } from '../mesh-control/model/parse.ts';
import type { NetworkPolicy, Pod, Service } from '../mesh-control/model/types.ts';

const WEB = `
apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: { app: web }
  ports:
    - port: 80
      targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels: { app: web }
spec:
  containers:
    - name: app
      ports: [{ name: http, containerPort: 8080 }]
`;

function manifestError(fn: () => unknown): ManifestError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError);
    return err as ManifestError;
  }
  throw new Error('expected a ManifestError');
}

describe('parseManifests', () => {
  it('parses a multi-document stream in order, with defaults applied', () => {
    const objects = parseManifests(WEB, 'web.yaml');
    expect(objects.map((o) => `${o.kind} ${o.metadata.namespace ?? '-'}/${o.metadata.name}`)).toEqual(['Namespace -/shop', 'Service default/web', 'Pod shop/web-0']);
    const svc = objects[1] as Service;
    expect(svc.spec.type).toBe('ClusterIP');
    expect(svc.spec.ports?.[0]).toEqual({ port: 80, targetPort: 'http', protocol: 'TCP' });
    expect((objects[2] as Pod).spec.containers[0].ports?.[0].protocol).toBe('TCP');
  });

  it('skips empty documents and comments but keeps document numbers', () => {
    const text = '# just a comment\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n';
    expect(manifestError(() => parseManifests(text, 'x.yaml')).message).toBe('x.yaml document 4 (Pod default/p): spec.containers: must have at least one container');
    expect(parseManifests('', 'empty.yaml')).toEqual([]);
    expect(parseManifests('# nothing\n', 'empty.yaml')).toEqual([]);
  });

  it('formats a problem as source, document, kind, name, path and message', () => {
    const text = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 70000}]\n';
    const err = manifestError(() => parseManifests(text, 'examples/web.yaml'));
    expect(err.message).toBe('examples/web.yaml document 2 (Service default/web): spec.ports[0].port: must be an integer 1-65535, got 70000');
    expect(err.code).toBe('WEFT_ERR_MANIFEST_INVALID');
    expect(err.errors).toEqual([{ source: 'examples/web.yaml', document: 2, kind: 'Service', name: 'default/web', path: 'spec.ports[0].port', message: 'must be an integer 1-65535, got 70000' }]);
  });

  it('collects every problem of every document at once', () => {
    const text = [
      'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: NodePort, ports: [{port: 0, nodePort: 80}]}',
      'apiVersion: v1\nkind: Widget\nmetadata: {name: w}',
      'apiVersion: apps/v1\nkind: Pod\nmetadata: {name: p}',
      'apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDR: 10.244.1.1/24}',
      'kind: Namespace\nmetadata: {name: ok}',
    ].join('\n---\n');
    const err = manifestError(() => parseManifests(text, 'm.yaml'));
    expect(err.message.split('\n')).toEqual([
      'm.yaml document 1 (Service shop/web): spec.ports[0].port: must be an integer 1-65535, got 0',
      'm.yaml document 1 (Service shop/web): spec.ports[0].nodePort: must be an integer 30000-32767, got 80',
      'm.yaml document 2 (Widget w): kind: unknown kind "Widget" (apiVersion "v1"); expected one of Namespace, Node, Pod, Service, Deployment, EndpointSlice, NetworkPolicy, LabHost',
      'm.yaml document 3 (Pod default/p): apiVersion: must be "v1" for kind Pod, got "apps/v1"',
      'm.yaml document 4 (Node n): spec.podCIDR: must be an IPv4 CIDR: "10.244.1.1/24" has host bits set (network is 10.244.1.0/24)',
      'm.yaml document 5 (Namespace ok): apiVersion: required',
    ]);
  });

  it('names the line and column of YAML syntax errors', () => {
    const err = manifestError(() => parseManifests('apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: Pod\nkind: Pod\n', 'bad.yaml'));
    expect(err.message).toBe('bad.yaml document 2: line 6, column 1: Map keys must be unique');
    const tab = manifestError(() => parseManifests('metadata:\n\tname: x\n', 'tab.yaml'));
    expect(tab.errors[0]).toMatchObject({ document: 1, path: '', message: expect.stringMatching(/^line 2, column 1: Tabs are not allowed/) });
    expect(manifestError(() => parseManifests('a: [1,\n', 'flow.yaml')).message).toMatch(/^flow.yaml document 1: line \d+, column \d+: /);
  });

  it('parses JSON, including tab-indented JSON', () => {
    const json = '{\n\t"apiVersion": "v1",\n\t"kind": "Namespace",\n\t"metadata": {"name": "a"}\n}';
    expect(parseManifests(json, 'ns.json')).toEqual([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a', labels: { 'kubernetes.io/metadata.name': 'a' } } }]);
    expect(manifestError(() => parseManifests('{"kind": ', 'broken.json')).errors[0].message).toMatch(/^line \d+, column \d+: /);
  });

  it('expands kind: List and typed lists', () => {
    const list = {
      apiVersion: 'v1', kind: 'List',
      items: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } }, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'B' } }],
    };
    const err = manifestError(() => parseManifests(JSON.stringify(list), 'list.json'));
    expect(err.message).toMatch(/^list.json document 1 \(Namespace B\): items\[1\]\.metadata\.name: must be a lowercase RFC 1123 label/);
    list.items[1].metadata.name = 'b';
    expect(parseManifests(JSON.stringify(list), 'list.json').map((o) => o.metadata.name)).toEqual(['a', 'b']);
    const typed = 'apiVersion: v1\nkind: ServiceList\nitems:\n  - metadata: {name: web}\n    spec: {ports: [{port: 80}]}\n';
    expect(parseManifests(typed, 'svc.yaml')).toMatchObject([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' } }]);
  });

  it('rejects duplicate objects, naming where the first was defined', () => {
    const ns = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n';
    expect(manifestError(() => parseManifests(`${ns}---\n${ns}`, 'd.yaml')).message).toBe('d.yaml document 2 (Namespace a): duplicate Namespace a (first defined in d.yaml document 1)');
    const svc = (ns: string) => `apiVersion: v1\nkind: Service\nmetadata: {name: web${ns}}\nspec: {ports: [{port: 80}]}\n`;
    expect(parseManifests(`${svc('')}---\n${svc(', namespace: other')}`, 's.yaml')).toHaveLength(2);
    expect(() => parseManifests(`${svc('')}---\n${svc(', namespace: default')}`, 's.yaml')).toThrow(/duplicate Service default\/web/);
  });

  it('supports YAML anchors and merge keys within a document', () => {
    const text = 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: &l {app: web}}\n  template:\n    metadata: {labels: {<<: *l, tier: x}}\n    spec: {containers: [{name: c}]}\n';
    expect(parseManifests(text, 'a.yaml')[0]).toMatchObject({ spec: { template: { metadata: { labels: { app: 'web', tier: 'x' } } } } });
  });

  it('formats problems without kind or path', () => {
    expect(formatProblem({ source: 's', document: 3, path: '', message: 'm' })).toBe('s document 3: m');
    expect(formatProblem({ source: 's', document: 3, kind: 'Pod', path: 'spec', message: 'm' })).toBe('s document 3 (Pod): spec: m');
  });
});

describe('defaults', () => {
  const one = <T>(yaml: string): T => parseManifests(yaml, 't.yaml')[0] as T;
  it('Service: type, affinity, traffic policies, ports', () => {
    const svc = one<Service>('apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  sessionAffinity: ClientIP\n  ports: [{port: 80, name: a, targetPort: 0}, {port: 53, name: b, protocol: UDP, targetPort: 5353}]\n');
    expect(svc.metadata.namespace).toBe('default');
    expect(svc.spec).toMatchObject({
      type: 'NodePort', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } },
      externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
      ports: [{ port: 80, name: 'a', targetPort: 80, protocol: 'TCP' }, { port: 53, name: 'b', protocol: 'UDP', targetPort: 5353 }],
    });
    const plain = one<Service>('apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n');
    expect(plain.spec).toEqual({ type: 'ClusterIP', sessionAffinity: 'None', internalTrafficPolicy: 'Cluster', ports: [{ port: 80, protocol: 'TCP', targetPort: 80 }] });
    const ext = one<Service>('apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {type: ExternalName, externalName: db.example.com}\n');
    expect(ext.spec).toEqual({ type: 'ExternalName', externalName: 'db.example.com', sessionAffinity: 'None' });
  });
  it('NetworkPolicy: podSelector, policyTypes, port protocol', () => {
    const np = (spec: string) => one<NetworkPolicy>(`apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n${spec}`).spec;
    expect(np('')).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    expect(np('spec: {egress: []}').policyTypes).toEqual(['Ingress']);
    expect(np('spec: {egress: [{}]}').policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np('spec: {policyTypes: [Egress], ingress: [{}]}').policyTypes).toEqual(['Egress']);
    expect(np('spec: {podSelector: {}, ingress: [{ports: [{}, {port: 53, protocol: UDP}]}]}').ingress?.[0].ports).toEqual([{ protocol: 'TCP' }, { port: 53, protocol: 'UDP' }]);
  });
  it('namespaces, Namespace labels, Deployment replicas, EndpointSlice and LabHost', () => {
    const objects = parseManifests([
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: ignored, labels: {team: a}}',
      'apiVersion: v1\nkind: Node\nmetadata: {name: n1, namespace: ignored}',
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template: {metadata: {labels: {app: d}}, spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}}',
      'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{port: 80}]',
      'apiVersion: weft.dev/v1alpha1\nkind: LabHost\nmetadata: {name: outside}\nspec: {ports: [{containerPort: 53, protocol: UDP}, {containerPort: 80}]}',
    ].join('\n---\n'), 'all.yaml');
    expect(objects[0].metadata).toEqual({ name: 'shop', labels: { team: 'a', 'kubernetes.io/metadata.name': 'shop' } });
    expect(objects[1].metadata).toEqual({ name: 'n1' });
    expect(objects[2]).toMatchObject({ metadata: { namespace: 'default' }, spec: { replicas: 1, template: { spec: { containers: [{ ports: [{ containerPort: 80, protocol: 'TCP' }] }] } } } });
    expect(objects[3]).toMatchObject({ endpoints: [], ports: [{ port: 80, protocol: 'TCP' }] });
    expect(objects[4]).toMatchObject({ spec: { ports: [{ protocol: 'UDP' }, { protocol: 'TCP' }] } });
  });
  it('drops null fields', () => {
    const pod = parseManifests('apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: null}\nspec: {nodeName: null, containers: [{name: c, ports: null}]}', 'p.yaml')[0] as Pod;
    expect(pod.metadata).toEqual({ name: 'p', namespace: 'default' });
    expect(pod.spec).toEqual({ containers: [{ name: 'c' }] });
  });
});

describe('loadManifests', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-model-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;

  it('loads every manifest of a directory in name order, not recursively', async () => {
    const d = join(dir, 'ok');
    await mkdir(join(d, 'sub.yaml'), { recursive: true });
    await writeFile(join(d, 'sub.yaml', 'x.yaml'), ns('nested'));
    await writeFile(join(d, 'b.yml'), ns('b'));
    await writeFile(join(d, 'a.yaml'), ns('a'));
    await writeFile(join(d, 'c.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'c' } }));
    await writeFile(join(d, 'README.md'), '# not a manifest');
    expect((await loadManifests(d)).map((o) => o.metadata.name)).toEqual(['a', 'b', 'c']);
    expect((await loadManifests(join(d, 'b.yml'))).map((o) => o.metadata.name)).toEqual(['b']);
  });

  it('names the file of each problem and collects problems across files', async () => {
    const d = join(dir, 'bad');
    await mkdir(d);
    await writeFile(join(d, '1.yaml'), `${ns('a')}---\n${ns('Bad')}`);
    await writeFile(join(d, '2.yaml'), ns('a'));
    const err = await loadManifests(d).catch((e: unknown) => e as ManifestError);
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).errors.map((p) => `${p.source}:${p.document}:${p.path}`)).toEqual([
      `${join(d, '1.yaml')}:2:metadata.name`,
      `${join(d, '2.yaml')}:1:`,
    ]);
    expect((err as ManifestError).message).toContain(`duplicate Namespace a (first defined in ${join(d, '1.yaml')} document 1)`);
  });

  it('fails clearly on a missing path or a directory without manifests', async () => {
    const missing = join(dir, 'nope.yaml');
    await expect(loadManifests(missing)).rejects.toThrow(new ManifestReadError(missing, 'no such file or directory'));
    await expect(loadManifests(missing)).rejects.toMatchObject({ code: 'WEFT_ERR_MANIFEST_READ', message: `failed to read manifests from ${missing}: no such file or directory` });
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await expect(loadManifests(empty)).rejects.toThrow(/^failed to read manifests from .*empty: the directory has no \*\.yaml, \*\.yml or \*\.json files$/);
  });
});

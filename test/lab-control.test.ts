// mesh-control is the lab's source of truth: a Service and a Deployment written straight to the
// lab's control socket with `weft apply` (no lab command) get pods on the lab's nodes (the lab
// kubelet), EndpointSlices from mesh-control's controller and rules in every node's agent, so a
// probe from a pod reaches them; deleting the Deployment the same way removes its pods.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EndpointSlice } from '../mesh-control/model/types.ts';
import { controlCLI, createTestLab, labSkipReason, type LabStatus, type LoadJSON, podYAML, probeJSON, type RunResult, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();

const api = `
apiVersion: v1
kind: Service
metadata: { name: api, namespace: default }
spec:
  selector: { app: api }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: default }
spec:
  replicas: 2
  selector: { matchLabels: { app: api } }
  template:
    metadata: { labels: { app: api } }
    spec:
      containers:
        - name: api
          ports: [{ name: http, containerPort: 9090 }]
`;

describe.skipIf(skip)(`the lab's source of truth is mesh-control${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: TestLab;
  const weft = (args: string[]): Promise<RunResult> => controlCLI(lab, args);
  const podsNamed = async (prefix: string) => (await lab.json<LabStatus>(['status'])).pods.filter((p) => p.name.startsWith(prefix)).map((p) => p.name).sort();
  const waitFor = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 80; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  beforeAll(async () => {
    lab = await createTestLab();
    const dir = await lab.manifests({ 'client.yaml': podYAML('client', { node: 'node1', tcp: [8080] }) });
    await lab.json(['up', '--nodes', '2', '-f', dir]);
  });
  afterAll(async () => { await lab?.destroy(); });

  it('runs a Service and Deployment applied with `weft apply` through the control socket', async () => {
    const dir = await lab.manifests({ 'api.yaml': api });
    const applied = await weft(['apply', '-f', dir]);
    expect(applied).toMatchObject({ code: 0 });
    expect(applied.stdout).toContain('service/api created');
    expect(applied.stdout).toContain('deployment/api created');

    await waitFor('the api pods', async () => (await podsNamed('api-')).length === 2);
    const r = await probeJSON<LoadJSON>(lab, ['--from', 'default/client', '--to', 'default/api', '--count', '40']);
    expect(r).toMatchObject({ ok: 40, failed: 0 });
    expect(Object.keys(r.answeredBy).sort()).toEqual(['default/api-0', 'default/api-1']);

    const got = await weft(['get', 'endpointslices', '-o', 'json']);
    expect(got.code).toBe(0);
    const slices = (JSON.parse(got.stdout) as { items: EndpointSlice[] }).items.filter((s) => s.metadata.labels?.['kubernetes.io/service-name'] === 'api');
    const status = await lab.json<LabStatus>(['status']);
    const ips = Object.fromEntries(status.pods.map((p) => [p.name, p.ip]));
    expect(slices.flatMap((s) => s.endpoints.map((e) => `${e.targetRef?.name} ${e.addresses[0]} ${e.conditions?.ready}`)).sort())
      .toEqual([`api-0 ${ips['api-0']} true`, `api-1 ${ips['api-1']} true`]);
    expect(slices[0].ports).toEqual([{ name: 'http', protocol: 'TCP', port: 9090 }]);
    expect(status.services.find((s) => s.service === 'default/api')?.clusterIP).toMatch(/^10\.96\./);

    expect((await weft(['delete', '-f', dir])).code).toBe(0);
    await waitFor('the api pods to go', async () => (await podsNamed('api-')).length === 0);
  });
});

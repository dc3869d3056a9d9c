// Scaling a Deployment down drains its Service instead of failing requests: while clients send
// continuously (over keep-alive connections, and with a new connection per request), two of three
// replicas go away, by `lab apply` or by `weft apply` straight to the lab's mesh-control (its
// Deployment controller marks them terminating, the lab kubelet drains them); every request
// succeeds, and the removed pods' endpoints went through ready:false, serving:true,
// terminating:true before they disappeared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listObjects } from '../lab/control.ts';
import { labLayout } from '../lab/layout.ts';
import type { EndpointSlice } from '../mesh-control/model/types.ts';
import { controlCLI, createTestLab, labSkipReason, type LabStatus, type LoadJSON, podYAML, probeJSON, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();

const deployment = (replicas: number) => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: default }
spec:
  replicas: ${replicas}
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: web
          ports: [{ name: http, containerPort: 8080 }]
`;

const service = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
`;

for (const mode of ['nftables', 'iptables'] as const) {
  describe.skipIf(skip)(`draining on scale-down, ${mode} mode${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let lab: TestLab;

    beforeAll(async () => {
      lab = await createTestLab();
      const dir = await lab.manifests({ 'web.yaml': deployment(3), 'svc.yaml': service, 'client.yaml': podYAML('client', { node: 'node1', tcp: [8080] }) });
      await lab.json(['up', '--nodes', '3', '--proxy-mode', mode, '-f', dir]);
    });
    afterAll(async () => { await lab?.destroy(); });

    /** Runs load while `scaleDown` takes web from 3 replicas to 1 and resolves once the lab runs only web-0. */
    async function drainsUnderLoad(scaleDown: (dir: string) => Promise<void>): Promise<void> {
      // Bounded: at most 200k requests or 7 s per loop.
      const loop = (extra: string[]) => probeJSON<LoadJSON>(lab, ['--from', 'default/client', '--to', 'default/web', '--count', '200000', '--duration-ms', '7000', '--timeout-ms', '3000', ...extra]);
      const keepAlive = loop(['--concurrency', '8', '--keep-alive']);
      const fresh = loop(['--concurrency', '2']);

      // Watch mesh-control's EndpointSlices for the terminating endpoints while the scale-down runs.
      const seen = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        for (let i = 0; watching && i < 400; i++) {
          for (const s of await listObjects<EndpointSlice>(labLayout(lab.dir), 'EndpointSlice')) {
            for (const e of s.endpoints) if (e.conditions?.terminating) seen.add(`${e.targetRef?.name} ${JSON.stringify(e.conditions)}`);
          }
          await new Promise((r) => setTimeout(r, 25));
        }
      })();

      await new Promise((r) => setTimeout(r, 1_500));
      await scaleDown(await lab.manifests({ 'web.yaml': deployment(1) }));
      watching = false;
      await watcher;

      const [k, f] = [await keepAlive, await fresh];
      for (const r of [k, f]) {
        expect(r).toMatchObject({ failed: 0, errors: {} });
        expect(r.requests).toBeGreaterThan(100);
      }
      // New connections spread over all three; of the 8 keep-alive connections, some were held by a
      // removed pod (all 8 on web-0 is a (1/3)^8 event) and had to be drained.
      expect(Object.keys(f.answeredBy).sort()).toEqual(['default/web-0', 'default/web-1', 'default/web-2']);
      expect(Object.keys(k.answeredBy).filter((p) => p !== 'default/web-0')).not.toEqual([]);
      const conditions = JSON.stringify({ ready: false, serving: true, terminating: true });
      expect([...seen].sort()).toEqual([`web-1 ${conditions}`, `web-2 ${conditions}`]);

      const status = await lab.json<LabStatus>(['status']);
      expect(status.pods.map((p) => p.name).sort()).toEqual(['client', 'web-0']);
      const after = await probeJSON<LoadJSON>(lab, ['--from', 'default/client', '--to', 'default/web', '--count', '10']);
      expect(after).toMatchObject({ ok: 10, answeredBy: { 'default/web-0': 10 } });
    }

    it('loses no request while two of three replicas go away by `lab apply`', async () => {
      await drainsUnderLoad(async (dir) => {
        const applied = await lab.weft(['apply', '-f', dir]);
        expect(applied).toMatchObject({ code: 0 });
        expect(applied.stdout).toContain('2 terminated');
      });
    });

    it('loses no request while two of three replicas go away by `weft apply` to mesh-control', async () => {
      // Back to three replicas first (the lab creates web-1 and web-2 again).
      const up = await lab.weft(['apply', '-f', await lab.manifests({ 'web.yaml': deployment(3) })]);
      expect(up).toMatchObject({ code: 0 });
      await drainsUnderLoad(async (dir) => {
        const applied = await controlCLI(lab, ['apply', '-f', dir]);
        expect(applied).toMatchObject({ code: 0, stdout: 'deployment/web configured\n' });
        // The lab kubelet drains them: done once the lab runs web-0 alone (bounded: 20 s).
        for (let i = 0; i < 80; i++) {
          const pods = (await lab.json<LabStatus>(['status'])).pods.map((p) => p.name);
          if (!pods.includes('web-1') && !pods.includes('web-2')) return;
          await new Promise((r) => setTimeout(r, 250));
        }
        throw new Error('timed out waiting for the lab kubelet to remove web-1 and web-2');
      });
    });
  });
}

// A resolver that keeps one source port keeps one conntrack entry: when its endpoint goes away the
// agent must delete that entry, or every later datagram is DNATed to an address that is gone.
describe.skipIf(skip)(`UDP from a fixed source port after its endpoint goes away${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: TestLab;

  beforeAll(async () => {
    lab = await createTestLab();
    const dir = await lab.manifests({
      'pods.yaml': podYAML('dns-a', { node: 'node1', udp: [5353], labels: { app: 'dns' } }) + podYAML('dns-b', { node: 'node2', udp: [5353], labels: { app: 'dns' } })
        + podYAML('client', { node: 'node3', tcp: [8080] }),
      'svc.yaml': 'apiVersion: v1\nkind: Service\nmetadata: { name: dns, namespace: default }\nspec:\n  selector: { app: dns }\n  ports: [{ port: 53, protocol: UDP, targetPort: 5353 }]\n',
    });
    await lab.json(['up', '--nodes', '3', '-f', dir]);
  });
  afterAll(async () => { await lab?.destroy(); });

  it('answers from the remaining endpoint once the first is deleted', async () => {
    const ask = (count: string) => probeJSON<LoadJSON>(lab, ['--from', 'default/client', '--to', 'svc/default/dns', '--source-port', '40053', '--count', count, '--timeout-ms', '1500']);
    const before = await ask('5');
    // One 5-tuple, one conntrack entry: every datagram went to the same pod.
    expect(before).toMatchObject({ ok: 5, failed: 0 });
    const [first] = Object.keys(before.answeredBy);
    expect(Object.keys(before.answeredBy)).toEqual([first]);
    expect((await lab.weft(['delete', 'pod', first])).code).toBe(0);
    const after = await ask('5');
    const other = first === 'default/dns-a' ? 'default/dns-b' : 'default/dns-a';
    expect(after).toMatchObject({ ok: 5, failed: 0, answeredBy: { [other]: 5 } });
  });
});

// Services in the lab with real traffic, programmed by one `weft agent` per node: ClusterIP from
// pods on every node and from a node, NodePort / LoadBalancer IP / externalIP from an outside host,
// externalTrafficPolicy Local and its health-check node port, REJECT without endpoints, UDP.
// nftables runs everything; iptables a representative subset.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestLab, labSkipReason, type LabStatus, type LoadJSON, podYAML, probeJSON, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();

const services = `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: web-np, namespace: default }
spec:
  type: NodePort
  selector: { app: web }
  externalIPs: [192.0.2.10]
  ports: [{ name: http, port: 80, targetPort: http, nodePort: 30080 }]
---
apiVersion: v1
kind: Service
metadata: { name: edge, namespace: default }
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: { app: edge }
  ports: [{ name: http, port: 80, targetPort: 8080, nodePort: 30090 }]
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec:
  selector: { app: web }
  ports: [{ name: echo, port: 53, protocol: UDP, targetPort: 5353 }]
---
apiVersion: v1
kind: Service
metadata: { name: nothing, namespace: default }
spec:
  selector: { app: none }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: weft.dev/v1alpha1
kind: LabHost
metadata: { name: outside }
spec: {}
`;

// web-a and web-b serve "http" on 8080, web-c on 9090 (a named targetPort resolved per pod);
// the edge pod sits on node1 only; clients on every node are no endpoints (no hairpin NAT).
const pods = [
  podYAML('web-a', { node: 'node1', labels: { app: 'web' }, named: { http: 8080 }, udp: [5353] }),
  podYAML('web-b', { node: 'node2', labels: { app: 'web' }, named: { http: 8080 }, udp: [5353] }),
  podYAML('web-c', { node: 'node3', labels: { app: 'web' }, named: { http: 9090 }, udp: [5353] }),
  podYAML('edge', { node: 'node1', labels: { app: 'edge' }, tcp: [8080] }),
  ...[1, 2, 3].map((i) => podYAML(`client-${i}`, { node: `node${i}`, labels: { app: 'client' }, tcp: [8080] })),
].join('');

for (const mode of ['nftables', 'iptables'] as const) {
  const full = mode === 'nftables';
  describe.skipIf(skip)(`Services in the lab, ${mode} mode${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let lab: TestLab;
    let status: LabStatus;
    const pod = (name: string) => status.pods.find((p) => p.name === name) as LabStatus['pods'][number];
    const node = (name: string) => status.nodes.find((n) => n.name === name) as LabStatus['nodes'][number];
    const svc = (name: string) => status.services.find((s) => s.service === `default/${name}`) as LabStatus['services'][number];
    const load = (args: string[]) => probeJSON<LoadJSON>(lab, [...args, '--count', '30', '--timeout-ms', '2000']);

    beforeAll(async () => {
      lab = await createTestLab();
      const dir = await lab.manifests({ 'pods.yaml': pods, 'services.yaml': services });
      await lab.json(['up', '--nodes', '3', '--proxy-mode', mode, '-f', dir]);
      status = await lab.json<LabStatus>(['status']);
    });
    afterAll(async () => { await lab?.destroy(); });

    it('allocates addresses as the API server does and honors given ones', () => {
      expect(status.proxyMode).toBe(mode);
      for (const s of status.services) expect(s.clusterIP).toMatch(/^10\.96\./);
      expect(svc('web-np').ports).toEqual(['80:30080/TCP']);
      expect(svc('edge').ports).toEqual(['80:30090/TCP']);
      expect(svc('edge').external).toEqual(['172.30.255.1']);
      expect(svc('edge').healthCheckNodePort).toBeGreaterThanOrEqual(30000);
    });

    it('spreads ClusterIP traffic from pods on every node over all endpoints, keeping the client pod address', async () => {
      for (const i of full ? [1, 2, 3] : [3]) {
        const r = await load(['--from', `default/client-${i}`, '--to', 'default/web']);
        expect(r).toMatchObject({ requests: 30, ok: 30, failed: 0 });
        // Each of three endpoints gets 1/3 of 30 new connections: missing one entirely is a 1e-5 event.
        expect(Object.keys(r.answeredBy).sort()).toEqual(['default/web-a', 'default/web-b', 'default/web-c']);
        expect(r.clientAddresses).toEqual({ [pod(`client-${i}`).ip]: 30 });
      }
    });

    it('reaches a ClusterIP from a node', async () => {
      const r = await probeJSON(lab, ['--from', 'node/node2', '--to', 'svc/default/web']);
      expect(r).toMatchObject({ ok: true, answeredBy: expect.stringMatching(/^default\/web-[abc]$/) });
    });

    it('reaches a NodePort from an outside host, source NATed to the node (externalTrafficPolicy Cluster)', async () => {
      const r = await probeJSON(lab, ['--from', 'host/outside', '--to', node('node3').address, '--port', '30080']);
      expect(r).toMatchObject({ ok: true, answeredBy: expect.stringMatching(/^default\/web-[abc]$/) });
      expect([node('node3').address, '10.244.2.1']).toContain(r.clientAddress);
    });

    it.runIf(full)('reaches an externalIP from an outside host', async () => {
      const r = await probeJSON(lab, ['--from', 'host/outside', '--to', '192.0.2.10', '--port', '80']);
      expect(r).toMatchObject({ ok: true, answeredBy: expect.stringMatching(/^default\/web-[abc]$/) });
    });

    it('keeps the outside client address through a LoadBalancer IP with externalTrafficPolicy Local', async () => {
      const outside = status.hosts[0].ip;
      const r = await probeJSON(lab, ['--from', 'host/outside', '--to', '172.30.255.1', '--port', '80']);
      expect(r).toMatchObject({ ok: true, answeredBy: 'default/edge', clientAddress: outside });
      const np = await probeJSON(lab, ['--from', 'host/outside', '--to', node('node1').address, '--port', '30090']);
      expect(np).toMatchObject({ ok: true, answeredBy: 'default/edge', clientAddress: outside });
    });

    it.runIf(full)('drops external traffic on a node without a local endpoint (externalTrafficPolicy Local)', async () => {
      const r = await probeJSON(lab, ['--from', 'host/outside', '--to', node('node2').address, '--port', '30090', '--timeout-ms', '700']);
      expect(r).toMatchObject({ ok: false, error: 'timed out after 700 ms' });
    });

    it('answers the health-check node port with 200 and the local count, or 503 where no endpoint is', async () => {
      const hc = String(svc('edge').healthCheckNodePort);
      const withEndpoint = await probeJSON(lab, ['--from', 'host/outside', '--to', node('node1').address, '--port', hc]);
      expect(withEndpoint).toMatchObject({ ok: true, httpStatus: 200 });
      expect(JSON.parse(withEndpoint.body as string)).toMatchObject({ localEndpoints: 1 });
      const without = await probeJSON(lab, ['--from', 'host/outside', '--to', node('node2').address, '--port', hc]);
      expect(without).toMatchObject({ ok: false, httpStatus: 503 });
      expect(JSON.parse(without.body as string)).toMatchObject({ localEndpoints: 0 });
    });

    it('refuses a Service without endpoints at once', async () => {
      const start = Date.now();
      const r = await probeJSON(lab, ['--from', 'default/client-1', '--to', 'default/nothing', '--timeout-ms', '3000']);
      expect(r).toMatchObject({ ok: false, error: expect.stringContaining('ECONNREFUSED') });
      expect(Date.now() - start).toBeLessThan(2_500);
    });

    it('carries UDP through a Service', async () => {
      const r = await probeJSON<LoadJSON>(lab, ['--from', 'default/client-2', '--to', 'svc/default/echo', '--count', '12', '--timeout-ms', '1500']);
      expect(r).toMatchObject({ requests: 12, ok: 12, failed: 0, clientAddresses: { [pod('client-2').ip]: 12 } });
      expect(Object.keys(r.answeredBy).length).toBeGreaterThanOrEqual(2);
    });

    it.runIf(full)('programs a Service applied at runtime, and forgets it when deleted', async () => {
      const dir = await lab.manifests({ 'late.yaml': 'apiVersion: v1\nkind: Service\nmetadata: { name: late, namespace: default }\nspec:\n  clusterIP: 10.96.0.77\n  selector: { app: edge }\n  ports: [{ port: 81, targetPort: 8080 }]\n' });
      expect((await lab.weft(['apply', '-f', dir])).code).toBe(0);
      const on = await probeJSON(lab, ['--from', 'default/client-2', '--to', 'default/late']);
      expect(on).toMatchObject({ to: 'svc/default/late', port: 81, ok: true, answeredBy: 'default/edge' });
      expect((await lab.weft(['delete', 'service', 'default/late'])).code).toBe(0);
      await new Promise((r) => setTimeout(r, 500));
      const off = await probeJSON(lab, ['--from', 'default/client-2', '--to', '10.96.0.77', '--port', '81', '--timeout-ms', '500']);
      expect(off).toMatchObject({ ok: false });
    });
  });
}

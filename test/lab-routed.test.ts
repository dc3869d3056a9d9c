// The lab on a routed underlay: nodes share no L2 segment, so pod traffic between nodes must go
// through the VXLAN overlay (weft.1) and still keep its source address; LoadBalancer IPs reach the
// announcing node through the underlay router.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labLayout } from '../lab/layout.ts';
import { createTestLab, labSkipReason, type LabStatus, type MatrixJSON, podYAML, type ProbeJSON, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();

describe.skipIf(skip)(`lab on a routed underlay${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: TestLab;
  let status: LabStatus;

  beforeAll(async () => {
    lab = await createTestLab();
    const dir = await lab.manifests({
      'pods.yaml': ['a', 'b', 'c', 'd'].map((n) => podYAML(n, { tcp: [80], udp: [53], labels: { app: 'web' } })).join(''),
      'svc.yaml': 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector:\n    app: web\n  ports:\n    - port: 8000\n      targetPort: 80\n',
      'host.yaml': 'apiVersion: weft.dev/v1alpha1\nkind: LabHost\nmetadata:\n  name: gw\nspec:\n  ip: 192.0.2.10\n  ports:\n    - containerPort: 80\n',
    });
    status = await lab.json<LabStatus>(['up', '--nodes', '3', '--underlay', 'routed', '--cluster-cidr', '10.50.0.0/16', '--node-mask', '25', '-f', dir]);
  });
  afterAll(async () => { await lab?.destroy(); });

  it('puts each node in its own underlay subnet', () => {
    expect(status.nodes.map((n) => [n.name, n.address, n.podCIDR])).toEqual([
      ['node1', '172.30.1.2', '10.50.0.0/25'], ['node2', '172.30.2.2', '10.50.0.128/25'], ['node3', '172.30.3.2', '10.50.1.0/25'],
    ]);
    expect(status.pods.map((p) => p.node)).toEqual(['node1', 'node2', 'node3', 'node1']);
    expect(status.hosts).toEqual([{ name: 'gw', ip: '192.0.2.10' }]);
  });

  it('routes other nodes’ subnets through the VXLAN device', () => {
    const routes = execFileSync('ip', ['-n', labLayout(lab.dir).nodeNetns('node1'), 'route', 'show', 'proto', '87'], { encoding: 'utf8' });
    expect(routes).toContain('10.50.0.128/25 via 10.50.0.128 dev weft.1 onlink');
    expect(routes).toContain('10.50.1.0/25 via 10.50.1.0 dev weft.1 onlink');
  });

  it('connects every pod to every pod over TCP and UDP with source addresses kept', async () => {
    for (const protocol of ['TCP', 'UDP']) {
      const m = await lab.json<MatrixJSON>(['probe', '--matrix', '--port', protocol === 'TCP' ? '80' : '53', '--protocol', protocol, '--timeout-ms', '1000']);
      for (const from of ['a', 'b', 'c', 'd']) {
        for (const to of ['a', 'b', 'c', 'd', ...(protocol === 'TCP' ? ['host/gw'] : [])]) {
          const key = to.includes('/') ? to : `default/${to}`;
          expect({ protocol, from, to, ok: m.results[`default/${from}`][key] }).toEqual({ protocol, from, to, ok: true });
        }
      }
    }
    const ip = (n: string) => status.pods.find((p) => p.name === n)?.ip;
    const r = await lab.json<ProbeJSON>(['probe', '--from', 'default/a', '--to', 'default/c', '--port', '80']);
    expect(r).toMatchObject({ ok: true, answeredBy: 'default/c', clientAddress: ip('a') });
    const h = await lab.json<ProbeJSON>(['probe', '--from', 'default/b', '--to', 'host/gw', '--port', '80']);
    expect(h).toMatchObject({ ok: true, clientAddress: '172.30.2.2' });
  });

  it('reaches a LoadBalancer IP from the outside host through the underlay router, keeping its address', async () => {
    const layout = labLayout(lab.dir);
    const routes = execFileSync('ip', ['-n', layout.underlayNetns, 'route', 'show', 'proto', '77'], { encoding: 'utf8' });
    expect(routes.trim()).toBe('172.30.255.1 via 172.30.1.2 dev nd1');
    const r = await lab.json<ProbeJSON>(['probe', '--from', 'host/gw', '--to', '172.30.255.1', '--port', '8000']);
    expect(r).toMatchObject({ ok: true, answeredBy: expect.stringMatching(/^default\/[ad]$/), clientAddress: '192.0.2.10' });
  });
});

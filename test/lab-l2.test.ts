// The lab on an l2 underlay (host-gw routes) built from examples/: real namespaces, the real
// weft-cni binary, real pod servers.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labLayout } from '../lab/layout.ts';
import { createTestLab, labSkipReason, type LabStatus, type MatrixJSON, type ProbeJSON, ROOT, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();

describe.skipIf(skip)(`lab on an l2 underlay${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: TestLab;
  let status: LabStatus;
  const pod = (name: string) => status.pods.find((p) => p.name === name) as LabStatus['pods'][number];
  const node = (name: string) => status.nodes.find((n) => n.name === name) as LabStatus['nodes'][number];

  beforeAll(async () => {
    lab = await createTestLab();
    await lab.json(['up', '--nodes', '3', '-f', join(ROOT, 'examples')]);
    status = await lab.json<LabStatus>(['status']);
  });
  afterAll(async () => { await lab?.destroy(); });

  it('reports nodes, pods and hosts', () => {
    expect(status.nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3']);
    expect(status.nodes.map((n) => n.podCIDR)).toEqual(['10.244.0.0/24', '10.244.1.0/24', '10.244.2.0/24']);
    expect(status.nodes.map((n) => n.address)).toEqual(['172.30.0.11', '172.30.0.12', '172.30.0.13']);
    expect(status.pods.map((p) => `${p.namespace}/${p.name}`).sort()).toEqual(['shop/db', 'shop/dns', 'shop/web-0', 'shop/web-1', 'shop/web-2']);
    // Round-robin in manifest order (files by name: db is pinned, then dns, web-0..2).
    expect(new Set(['web-0', 'web-1', 'web-2'].map((n) => pod(n).node)).size).toBe(3);
    expect(pod('db')).toMatchObject({ node: 'node2', ip: '10.244.1.50' });
    expect(pod('dns').ports).toEqual(expect.arrayContaining([expect.objectContaining({ containerPort: 53, protocol: 'UDP' })]));
    expect(status.hosts).toEqual([{ name: 'outside', ip: '172.30.0.101' }]);
  });

  it('connects every pod to every pod and to the LabHost over TCP', async () => {
    const m = await lab.json<MatrixJSON>(['probe', '--matrix', '--port', '8080', '--protocol', 'TCP']);
    const keys = [...status.pods.map((p) => `${p.namespace}/${p.name}`), 'host/outside'];
    expect(Object.keys(m.results).sort()).toEqual([...keys].sort());
    for (const from of keys.filter((k) => !k.startsWith('host/'))) {
      for (const to of keys) expect({ from, to, ok: m.results[from][to] }).toEqual({ from, to, ok: true });
    }
    // An outside host reaches pods only through services (flannel's model): no route to pod subnets.
    expect(m.results['host/outside']['shop/web-0']).toBe(false);
    expect(m.results['host/outside']['host/outside']).toBe(true);
  });

  it('keeps the source address of pod-to-pod traffic across nodes', async () => {
    const [a, b] = ['web-0', 'web-1'].map(pod);
    expect(a.node).not.toBe(b.node);
    const r = await lab.json<ProbeJSON>(['probe', '--from', `shop/${a.name}`, '--to', `shop/${b.name}`, '--port', '8080']);
    expect(r).toEqual({ from: `shop/${a.name}`, to: `shop/${b.name}`, port: 8080, protocol: 'TCP', ok: true, answeredBy: `shop/${b.name}`, clientAddress: a.ip });
  });

  it('answers UDP probes, and probes to an IP', async () => {
    const r = await lab.json<ProbeJSON>(['probe', '--from', 'shop/web-2', '--to', pod('dns').ip, '--port', '53', '--protocol', 'UDP', '--timeout-ms', '1500']);
    expect(r).toMatchObject({ ok: true, answeredBy: 'shop/dns', clientAddress: pod('web-2').ip });
  });

  it('masquerades pod traffic to a LabHost to the node address', async () => {
    const r = await lab.json<ProbeJSON>(['probe', '--from', 'shop/db', '--to', 'host/outside', '--port', '8080']);
    expect(r).toMatchObject({ ok: true, answeredBy: 'host/outside', clientAddress: node('node2').address });
  });

  it('reports a failed probe to a closed port', async () => {
    const r = await lab.weft(['probe', '--from', 'shop/web-0', '--to', 'shop/web-1', '--port', '9', '--timeout-ms', '500', '--output', 'json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, answeredBy: null, clientAddress: null });
  });

  it('passes exit code and output of lab exec through', async () => {
    const r = await lab.weft(['exec', 'shop/db', '--', 'sh', '-c', 'ip -4 -o addr show dev eth0; echo oops >&2; exit 7']);
    expect(r.code).toBe(7);
    expect(r.stdout).toContain('10.244.1.50/24');
    expect(r.stderr).toContain('oops');
    const h = await lab.weft(['exec', 'host/outside', '--', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(h).toMatchObject({ code: 0 });
    expect(h.stdout).toContain('172.30.0.101/24');
  });

  it('names an unknown endpoint in the error', async () => {
    const r = await lab.weft(['probe', '--from', 'shop/nope', '--to', 'shop/web-0', '--port', '8080']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/"shop\/nope" names nothing in the lab .*shop\/web-0/);
  });

  it('prints a readable status table', async () => {
    const r = await lab.weft(['status']);
    expect(r.stdout).toMatch(/NODE\s+POD CIDR\s+ADDRESS\nnode1\s+10\.244\.0\.0\/24\s+172\.30\.0\.11/);
    expect(r.stdout).toMatch(/shop\/db\s+node2\s+10\.244\.1\.50\s+5432\/TCP,8080\/TCP/);
  });

  it('leaves no namespace and no directory after down', async () => {
    const { prefix } = labLayout(lab.dir);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).toContain(prefix);
    expect((await lab.weft(['down'])).code).toBe(0);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(prefix);
    expect(existsSync(lab.dir)).toBe(false);
    expect((await lab.weft(['status'])).stderr).toContain('no lab at');
  });
});

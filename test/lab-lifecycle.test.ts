// Lab lifecycle edges: a failed `up` removes what it created; `up` over a crashed lab starts clean.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labLayout } from '../lab/layout.ts';
import { createTestLab, labSkipReason, type LabStatus, podYAML, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();
const namespaces = (prefix: string) => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(prefix));

describe.skipIf(skip)(`lab lifecycle${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let lab: TestLab;
  beforeAll(async () => { lab = await createTestLab(); });
  afterAll(async () => { await lab?.destroy(); });

  it('cleans up after a pod the CNI plugin refuses, naming the pod and the cause', async () => {
    const dir = await lab.manifests({ 'p.yaml': podYAML('ok', { tcp: [80] }) + podYAML('bad', { node: 'node1', ip: '10.244.7.7' }) });
    const r = await lab.weft(['up', '--nodes', '2', '-f', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/weft-cni ADD of pod default\/bad on node node1 failed: .*10\.244\.7\.7/);
    expect(namespaces(labLayout(lab.dir).prefix)).toEqual([]);
    expect(existsSync(lab.dir)).toBe(false);
  });

  it('warns about SCTP ports, and starts clean over a lab whose processes were killed', async () => {
    const dir = await lab.manifests({ 'p.yaml': podYAML('a', { tcp: [80] }) + podYAML('s', { tcp: [80] }).replace('protocol: TCP', 'protocol: SCTP') });
    const first = await lab.weft(['up', '--nodes', '1', '-f', dir]);
    expect(first.stderr).toContain('warning: default/s declares SCTP port 80: not served');
    const { prefix } = labLayout(lab.dir);
    for (const ns of namespaces(prefix)) {
      for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    }
    const before = namespaces(prefix).length;
    const status = await lab.json<LabStatus>(['up', '--nodes', '1', '-f', dir]);
    expect(status.pods.map((p) => p.ip).sort()).toEqual(['10.244.0.2', '10.244.0.3']);
    expect(namespaces(prefix).length).toBe(before);
    expect((await lab.weft(['probe', '--from', 'default/s', '--to', 'default/a', '--port', '80'])).code).toBe(0);
  });
});

// Nodes join and leave a running lab: the other nodes' routes follow within seconds, and pods on
// the remaining nodes never lose connectivity to each other meanwhile.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labLayout } from '../lab/layout.ts';
import type { DialResult } from '../lab/dial.ts';
import { requestFrom } from '../lab/probe.ts';
import { resolveEndpoint } from '../lab/targets.ts';
import { loadState } from '../lab/state.ts';
import { createTestLab, labSkipReason, type LabStatus, podYAML, type TestLab } from './helpers/lab.ts';

const skip = labSkipReason();

async function until(what: string, check: () => boolean, timeoutMs = 8_000): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - start;
}

describe.skipIf(skip)(`lab node add/remove${skip ? ` (skipped: ${skip})` : ''}`, () => {
  for (const underlay of ['l2', 'routed']) {
    describe(`on a ${underlay} underlay`, () => {
      let lab: TestLab;

      beforeAll(async () => {
        lab = await createTestLab();
        const dir = await lab.manifests({ 'pods.yaml': podYAML('a', { node: 'node1', tcp: [80] }) + podYAML('b', { node: 'node2', tcp: [80] }) + podYAML('c', { node: 'node3', tcp: [80] }) });
        await lab.json(['up', '--nodes', '3', '--underlay', underlay, '-f', dir]);
      });
      afterAll(async () => { await lab?.destroy(); });

      it('keeps pods on the remaining nodes connected while nodes come and go', async () => {
        const layout = labLayout(lab.dir);
        const state = await loadState(layout);
        const [a, c] = ['default/a', 'default/c'].map((k) => resolveEndpoint(state, k));
        const routes = () => execFileSync('ip', ['-n', layout.nodeNetns('node1'), 'route', 'show', 'proto', '87'], { encoding: 'utf8' });
        // Probe a<->c continuously (bounded: at most 600 rounds or until stopped) during the changes.
        let stop = false;
        let rounds = 0;
        const failures: string[] = [];
        const prober = (async () => {
          while (!stop && rounds < 600) {
            rounds++;
            const [ac, ca] = await Promise.all([requestFrom<DialResult[]>(a, [{ ip: c.ip, port: 80, protocol: 'TCP', timeoutMs: 1000 }], 6000), requestFrom<DialResult[]>(c, [{ ip: a.ip, port: 80, protocol: 'TCP', timeoutMs: 1000 }], 6000)]);
            for (const r of [...ac, ...ca]) if (!r.ok || (r.clientAddress !== a.ip && r.clientAddress !== c.ip)) failures.push(JSON.stringify(r));
            await new Promise((r) => setTimeout(r, 20));
          }
        })();

        const added = await lab.weft(['node', 'add', 'node4']);
        expect(added).toMatchObject({ code: 0 });
        const status = await lab.json<LabStatus>(['status']);
        const node4 = status.nodes.find((n) => n.name === 'node4') as LabStatus['nodes'][number];
        expect(node4.podCIDR).toBe('10.244.3.0/24');
        await until('node1 to route to node4', () => routes().includes('10.244.3.0/24'));

        const node2CIDR = status.nodes.find((n) => n.name === 'node2')?.podCIDR as string;
        expect((await lab.weft(['node', 'remove', 'node2'])).code).toBe(0);
        await until('node1 to drop the route to node2', () => !routes().includes(node2CIDR));
        const after = await lab.json<LabStatus>(['status']);
        expect(after.nodes.map((n) => n.name)).toEqual(['node1', 'node3', 'node4']);
        expect(after.pods.map((p) => p.name)).toEqual(['a', 'c']);
        expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(layout.nodeNetns('node2'));

        await new Promise((r) => setTimeout(r, 300));
        stop = true;
        await prober;
        expect(rounds).toBeGreaterThan(5);
        expect(failures).toEqual([]);
      });

      it('refuses to add an existing node or remove an unknown one', async () => {
        expect((await lab.weft(['node', 'add', 'node1'])).stderr).toContain('failed to add node node1: it exists');
        expect((await lab.weft(['node', 'remove', 'nope'])).stderr).toContain('failed to remove node nope: no such node');
      });
    });
  }
});

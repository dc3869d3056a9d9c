// Graceful deletion of Pods in mesh-control: the rule (planDeletion), and the controllers and the
// delete API over a real embedded store: a scale-down or a delete leaves the pods terminating
// (deadline, grace period, terminating endpoints) instead of removing them; a force delete, a
// kubelet's report (grace 0) or the expiry of a pod whose node is gone removes them. And `weft
// delete` with kubectl's --grace-period/--force through a real control service.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { remove as deleteCommand } from '../mesh-control/cli.ts';
import { createControlClient, unary } from '../mesh-control/client.ts';
import { readClientConfig } from '../mesh-control/client-config.ts';
import { createControlServer } from '../mesh-control/server.ts';
import { createAdmission } from '../mesh-control/api/admission.ts';
import { createControllers, type Controllers } from '../mesh-control/controllers/run.ts';
import { planDeletion } from '../mesh-control/controllers/pod-termination.ts';
import type { Deployment, EndpointSlice, Pod } from '../mesh-control/model/types.ts';
import { createEmbeddedStore, type ObjectStore } from '../mesh-control/store/index.ts';
import { node, pod, service, tempDir, waitFor } from './helpers/control.ts';

const NOW = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const meta = (p: Pod | undefined) => p?.metadata;

describe('planDeletion', () => {
  const running = (grace?: number): Pod => {
    const p = pod('p', { node: 'n1', ip: '10.244.0.2' });
    return grace === undefined ? p : { ...p, spec: { ...p.spec, terminationGracePeriodSeconds: grace } };
  };

  it("terminates a running pod with its own grace period (default 30 s) or the one given", () => {
    expect(planDeletion(running(), NOW)).toMatchObject({ action: 'terminate', object: { metadata: { deletionTimestamp: iso(NOW + 30_000), deletionGracePeriodSeconds: 30 } } });
    expect(planDeletion(running(10), NOW)).toMatchObject({ action: 'terminate', object: { metadata: { deletionTimestamp: iso(NOW + 10_000), deletionGracePeriodSeconds: 10 } } });
    expect(planDeletion(running(10), NOW, 3)).toMatchObject({ action: 'terminate', object: { metadata: { deletionTimestamp: iso(NOW + 3_000), deletionGracePeriodSeconds: 3 } } });
  });

  it('never extends a deadline, may shorten it, and removes at once with grace 0', () => {
    const plan = planDeletion(running(10), NOW);
    if (plan.action !== 'terminate') throw new Error('not terminating');
    const terminating = plan.object;
    expect(planDeletion(terminating, NOW + 1_000)).toEqual({ action: 'keep' });
    expect(planDeletion(terminating, NOW + 1_000, 60)).toEqual({ action: 'keep' });
    expect(planDeletion(terminating, NOW + 1_000, 2)).toMatchObject({ action: 'terminate', object: { metadata: { deletionTimestamp: iso(NOW + 3_000), deletionGracePeriodSeconds: 2 } } });
    expect(planDeletion(terminating, NOW + 1_000, 0)).toEqual({ action: 'remove' });
  });

  it('removes at once what no kubelet runs (unscheduled, finished) and every other kind', () => {
    expect(planDeletion(pod('p'), NOW)).toEqual({ action: 'remove' });
    const done = running();
    expect(planDeletion({ ...done, status: { ...done.status, phase: 'Succeeded' } }, NOW)).toEqual({ action: 'remove' });
    expect(planDeletion(service('s'), NOW)).toEqual({ action: 'remove' });
  });
});

describe('graceful deletion in mesh-control', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function open(): Promise<{ store: ObjectStore; controllers: Controllers; admission: ReturnType<typeof createAdmission> }> {
    const t = await tempDir();
    const store = createEmbeddedStore({ dir: t.dir });
    await store.start();
    const controllers = createControllers({ debounceMs: 5 }, { store });
    controllers.start();
    const admission = createAdmission({}, { store });
    admission.start();
    cleanups.push(t.remove, () => store.stop(), () => controllers.stop());
    return { store, controllers, admission };
  }

  const deployment = (replicas: number): Deployment => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { terminationGracePeriodSeconds: 20, containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] } },
    },
  });

  /** What a kubelet reports for a pod it runs: bound to a node, an IP. */
  async function run(store: ObjectStore, name: string, ip: string): Promise<void> {
    const p = store.get(`Pod/default/${name}`) as Pod;
    await store.put({ ...p, spec: { ...p.spec, nodeName: 'n1' }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } }, { expectRevision: Number(p.metadata.resourceVersion) });
  }

  it('a scale-down leaves the surplus pods terminating with terminating endpoints; the kubelet removes them', async () => {
    const { store, controllers, admission } = await open();
    await store.put(node('n1'));
    await store.put(service('web'));
    await store.put(deployment(3));
    await controllers.idle();
    for (const i of [0, 1, 2]) await run(store, `web-${i}`, `10.244.0.${10 + i}`);
    await store.put(deployment(1));
    const before = Date.now();
    await waitFor('web-1 and web-2 terminating', () => ['web-1', 'web-2'].every((n) => (store.get(`Pod/default/${n}`) as Pod | undefined)?.metadata.deletionTimestamp));
    for (const n of ['web-1', 'web-2']) {
      const m = meta(store.get(`Pod/default/${n}`) as Pod);
      expect(m?.deletionGracePeriodSeconds).toBe(20);
      expect(Date.parse(m!.deletionTimestamp!)).toBeGreaterThanOrEqual(before + 20_000);
    }
    const slice = await waitFor('terminating endpoints', () => {
      const s = (store.list('EndpointSlice') as EndpointSlice[])[0];
      return s?.endpoints.filter((e) => e.conditions?.terminating).length === 2 ? s : undefined;
    });
    expect(slice.endpoints.map((e) => `${e.targetRef?.name} ${JSON.stringify(e.conditions)}`)).toEqual([
      'web-0 {"ready":true,"serving":true,"terminating":false}',
      'web-1 {"ready":false,"serving":true,"terminating":true}',
      'web-2 {"ready":false,"serving":true,"terminating":true}',
    ]);
    // The Deployment controller neither removes nor recreates them meanwhile; a re-apply of the
    // pod (as the lab republishes its pods) keeps the termination.
    await controllers.idle();
    expect(store.list('Pod').map((p) => p.metadata.name)).toEqual(['web-0', 'web-1', 'web-2']);
    const web1 = store.get('Pod/default/web-1') as Pod;
    const reapplied = { ...web1, metadata: { ...web1.metadata } };
    delete reapplied.metadata.deletionTimestamp;
    delete reapplied.metadata.resourceVersion;
    expect((await admission.apply([{ json: JSON.stringify(reapplied), source: 'test' }]))[0].outcome).toBe('unchanged');
    // The kubelet's report: a delete with grace 0.
    expect(await admission.remove(['Pod/default/web-1', 'Pod/default/web-2'], { gracePeriodSeconds: 0 })).toMatchObject([{ outcome: 'deleted' }, { outcome: 'deleted' }]);
    await controllers.idle();
    expect(store.list('Pod').map((p) => p.metadata.name)).toEqual(['web-0']);
  });

  it('a delete terminates a pod once; a second does not extend it; a pod whose node is gone expires at its deadline', async () => {
    const { store, admission } = await open();
    await store.put(node('n1'));
    await store.put(pod('p', { node: 'n1', ip: '10.244.0.2' }));
    const [first] = await admission.remove(['Pod/default/p'], { gracePeriodSeconds: 1 });
    expect(first.outcome).toBe('deleted');
    const deadline = meta(first.object as Pod)?.deletionTimestamp;
    expect(deadline).toBeDefined();
    const [second] = await admission.remove(['Pod/default/p']);
    expect(meta(second.object as Pod)?.deletionTimestamp).toBe(deadline);
    expect(store.get('Pod/default/p')).toBeDefined();
    // Its node still there: its kubelet has KUBELET_REPORT_SECONDS (30 s) more to report.
    await new Promise((r) => setTimeout(r, 1_200));
    expect(store.get('Pod/default/p')).toBeDefined();
    await store.delete('Node/n1');
    await waitFor('the expired pod removed', () => store.get('Pod/default/p') === undefined, 5_000);
    expect(await admission.remove(['Pod/default/p'])).toMatchObject([{ outcome: 'not found' }]);
  });

  it('deleting a Deployment terminates its pods', async () => {
    const { store, controllers, admission } = await open();
    await store.put(node('n1'));
    await store.put(deployment(2));
    await controllers.idle();
    for (const i of [0, 1]) await run(store, `web-${i}`, `10.244.0.${20 + i}`);
    await admission.remove(['Deployment/default/web']);
    await waitFor('both pods terminating', () => store.list('Pod').every((p) => p.metadata.deletionTimestamp) && store.list('Pod').length === 2);
  });
});

describe('weft delete --grace-period / --force', () => {
  it('terminates with the object\'s own grace period, shortens it, and force deletes', async () => {
    const t = await tempDir();
    const server = createControlServer({ listen: '127.0.0.1:0', dataDir: join(t.dir, 'data'), adminConfigPath: join(t.dir, 'admin.json'), log: () => {} });
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await server.start();
      const manifest = join(t.dir, 'pod.json');
      const p = pod('p', { node: 'n1', ip: '10.244.0.2' });
      await writeFile(manifest, JSON.stringify(p));
      const admin = createControlClient(server.address(), readClientConfig(join(t.dir, 'admin.json')));
      const get = async () => {
        const res = await unary<{ items: Buffer[] }>(admin, 'Get', { kind: 'Pod', namespace: 'default', name: '' }, 'get');
        return res.items.map((b) => JSON.parse(b.toString()) as Pod)[0];
      };
      try {
        await unary(admin, 'Apply', { items: [{ json: Buffer.from(JSON.stringify(p)), source: 'test' }] }, 'apply');
        const del = (...flags: string[]) => deleteCommand(['-f', manifest, '--config', join(t.dir, 'admin.json'), ...flags]);
        const before = Date.now();
        expect(await del()).toBe(0);
        expect(stdout).toHaveBeenLastCalledWith('pod/p deleted\n');
        const own = meta(await get());
        expect(own?.deletionGracePeriodSeconds).toBe(30);
        expect(Date.parse(own!.deletionTimestamp!)).toBeGreaterThanOrEqual(before + 30_000);
        // --grace-period=0 without --force is 1 (kubectl's guard): shorter, so it applies.
        expect(await del('--grace-period=0')).toBe(0);
        expect(meta(await get())?.deletionGracePeriodSeconds).toBe(1);
        expect(await del('--grace-period', '0', '--force')).toBe(0);
        expect(stdout).toHaveBeenLastCalledWith('pod/p force deleted\n');
        expect(stderr).toHaveBeenCalledWith(expect.stringMatching(/^warning: Immediate deletion does not wait/));
        expect(await get()).toBeUndefined();
      } finally {
        admin.close();
      }
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
      await server.stop();
      await t.remove();
    }
  });
});

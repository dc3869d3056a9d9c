// The node stream over real gRPC + mTLS: snapshot, deltas, ACK/NACK, scoping, resume, auth,
// fail static across a control restart, and API + controllers end to end; all of it twice: mTLS
// terminated by the control service, and by HAProxy in front of it (`--front haproxy`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlServer, type ControlServer } from '../mesh-control/server.ts';
import { createControlStateSource, type ControlStateSource } from '../mesh-control/agent-client.ts';
import { channelFor, createControlClient, unary, type ControlClient } from '../mesh-control/client.ts';
import { readClientConfig } from '../mesh-control/client-config.ts';
import { weftServices } from '../mesh-control/proto/load.ts';
import type { ClusterView } from '../proxy/agent/source.ts';
import type { ClusterObject, NetworkPolicy } from '../mesh-control/model/types.ts';
import { haproxySkipReason, node, ns, pod, service, slice, tempDir, waitFor } from './helpers/control.ts';

let dir: Awaited<ReturnType<typeof tempDir>>;
let server: ControlServer;
let admin: ControlClient;
const sources: ControlStateSource[] = [];

let front: 'none' | 'haproxy' = 'none';

async function startServer(listen = '127.0.0.1:0'): Promise<ControlServer> {
  const s = createControlServer({ listen, dataDir: `${dir.dir}/data`, adminConfigPath: `${dir.dir}/admin.json`, opsListen: '127.0.0.1:0', front, log: () => {} });
  await s.start();
  return s;
}

async function applyObjects(objects: ClusterObject[]): Promise<{ key: string; outcome: string }[]> {
  const items = objects.map((o) => ({ json: Buffer.from(JSON.stringify(o)), source: 'test' }));
  return (await unary<{ results: { key: string; outcome: string }[] }>(admin, 'Apply', { items }, 'apply')).results;
}

function agent(nodeName: string, opts: { validate?: (v: ClusterView) => string | undefined } = {}) {
  const views: ClusterView[] = [];
  const cfg = readClientConfig(`${dir.dir}/admin.json`);
  const src = createControlStateSource({ server: server.address(), node: nodeName, credentials: cfg, validate: opts.validate, backoff: { initialMs: 50, maxMs: 300 }, log: () => {} });
  sources.push(src);
  return { src, views, start: () => src.start((v) => views.push(v)), last: () => views[views.length - 1] };
}

const FRONTS = [{ front: 'none' as const }, { front: 'haproxy' as const, skip: haproxySkipReason }];

describe.each(FRONTS)('front $front', (variant) => {
  describe.skipIf(variant.skip !== undefined)(variant.skip ? `(skipped: ${variant.skip})` : 'real streams', () => {
    beforeAll(async () => {
      front = variant.front;
      dir = await tempDir();
      server = await startServer();
      admin = createControlClient(server.address(), readClientConfig(`${dir.dir}/admin.json`));
    }, 30_000);

    afterAll(async () => {
      for (const s of sources.splice(0)) await s.stop();
      admin?.close();
      await server?.stop();
      await dir?.remove();
    });

    describe('control API', () => {
      it('creates, reports unchanged and configured, allocates clusterIPs, validates server-side', async () => {
        expect(await applyObjects([ns('team'), service('web')])).toEqual([
          { key: 'Namespace/team', outcome: 'created', json: expect.anything() },
          { key: 'Service/default/web', outcome: 'created', json: expect.anything() },
        ].map(({ key, outcome }) => expect.objectContaining({ key, outcome })));
        expect((await applyObjects([service('web')]))[0].outcome).toBe('unchanged');
        expect((await applyObjects([service('web', { port: 81 })]))[0].outcome).toBe('configured');
        const got = await unary<{ items: Buffer[] }>(admin, 'Get', { kind: 'svc', namespace: 'default', name: 'web' }, 'get');
        const svc = JSON.parse(got.items[0].toString());
        expect(svc.spec.clusterIP).toMatch(/^10\.96\./);
        const bad = { ...service('bad'), spec: { ...service('bad').spec, ports: [{ port: 70000 }] } };
        await expect(applyObjects([bad as unknown as ClusterObject])).rejects.toMatchObject({
          code: 'WEFT_CONTROL_INVALID_OBJECT',
          message: expect.stringMatching(/test document 1 \(Service bad\): spec\.ports\[0\]\.port/),
        });
      });

      it('derives EndpointSlices from pods and allocates node subnets', async () => {
        await applyObjects([node('n1'), pod('w1', { node: 'n1', ip: '10.244.0.5' })]);
        const slices = await waitFor('a derived slice', async () => {
          const r = await unary<{ items: Buffer[] }>(admin, 'Get', { kind: 'endpointslices', namespace: 'default' }, 'get');
          const items = r.items.map((b) => JSON.parse(b.toString()));
          return items.find((s) => s.metadata.name.startsWith('web') && s.endpoints.length === 1);
        });
        expect(slices.endpoints[0].addresses).toEqual(['10.244.0.5']);
        const n = await waitFor('a podCIDR', async () => {
          const r = await unary<{ items: Buffer[] }>(admin, 'Get', { kind: 'no', name: 'n1' }, 'get');
          return JSON.parse(r.items[0].toString()).spec?.podCIDR;
        });
        expect(n).toMatch(/^10\.244\.\d+\.0\/24$/);
      });
    });

    describe('node stream', () => {
      it('sends a full snapshot, then deltas; the final view equals a fresh snapshot after random changes', async () => {
        const a = agent('n1');
        await a.start();
        await waitFor('first view', () => a.views.length > 0);
        const names = Array.from({ length: 8 }, (_, i) => `s${i}`);
        let seed = 7;
        const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
        for (let i = 0; i < 60; i++) {
          const name = names[rand(names.length)];
          if (rand(3) === 0) await unary(admin, 'Delete', { keys: [`EndpointSlice/default/${name}`] }, 'delete');
          else await applyObjects([slice(name, 'web', [`10.244.0.${rand(200) + 1}`])]);
        }
        const fresh = agent('n1-fresh');
        // Same scope as n1 for shared kinds: compare those.
        await fresh.start();
        const key = (v: ClusterView) => JSON.stringify([v.services, v.endpointSlices, v.nodes, v.namespaces].map((l) => [...l].sort((x, y) => (x.metadata.name < y.metadata.name ? -1 : 1))));
        await waitFor('converged', () => fresh.last() && a.last() && a.src.version() === fresh.src.version() && key(a.last()) === key(fresh.last()));
      });

      it('scopes pods: own pods in full, others only as policy peers and then projected', async () => {
        await applyObjects([pod('other', { node: 'n2', ip: '10.244.1.7', labels: { app: 'db' } })]);
        const a = agent('n1-scope');
        await applyObjects([pod('mine', { node: 'n1-scope', ip: '10.244.0.9', labels: { app: 'x' } })]);
        await a.start();
        await waitFor('own pod', () => a.last()?.pods.some((p) => p.metadata.name === 'mine'));
        expect(a.last().pods.some((p) => p.metadata.name === 'other')).toBe(false);
        const policy: NetworkPolicy = {
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: { name: 'from-db', namespace: 'default' },
          spec: { podSelector: { matchLabels: { app: 'x' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'db' } } }] }] },
        };
        await applyObjects([policy]);
        const peer = await waitFor('peer pod', () => a.last()?.pods.find((p) => p.metadata.name === 'other'));
        expect(peer.status?.podIP).toBe('10.244.1.7');
        expect(peer.spec.containers[0]).toEqual({ name: 'c', ports: expect.any(Array) });
        expect(peer.metadata.annotations).toBeUndefined();
        expect(peer.status?.conditions).toBeUndefined();
        // The policy change re-evaluated every pod: the own pod, hidden from other nodes (removed in
        // the shared part of the delta), is still here in full (upserted in this node's own part).
        const mine = a.last().pods.find((p) => p.metadata.name === 'mine');
        expect(mine?.status?.conditions).toEqual([{ type: 'Ready', status: 'True' }]);
        // An own pod that policies can select: projected for everyone, in full for its node only.
        const selectsMine: NetworkPolicy = { ...policy, metadata: { name: 'to-x', namespace: 'default' }, spec: { podSelector: {}, egress: [{ to: [{ podSelector: { matchLabels: { app: 'x' } } }] }] } };
        const b = agent('n2-scope');
        await b.start();
        await applyObjects([selectsMine]);
        const projected = await waitFor('own pod projected elsewhere', () => b.last()?.pods.find((p) => p.metadata.name === 'mine'));
        expect(projected.status?.conditions).toBeUndefined();
        await waitFor('the policy at n1-scope', () => a.last().networkPolicies.some((p) => p.metadata.name === 'to-x'));
        expect(a.last().pods.find((p) => p.metadata.name === 'mine')?.status?.conditions).toHaveLength(1);
        // Same in a snapshot (a new stream for the node, the old one stopped meanwhile).
        await a.src.stop();
        const fresh = agent('n1-scope');
        await fresh.start();
        await waitFor('a snapshot for n1-scope', () => fresh.last()?.networkPolicies.some((p) => p.metadata.name === 'to-x'));
        expect(fresh.last().pods.find((p) => p.metadata.name === 'mine')?.status?.conditions).toHaveLength(1);
        await fresh.src.stop();
        await a.start();
        await unary(admin, 'Delete', { keys: ['NetworkPolicy/default/to-x'] }, 'delete');
        await unary(admin, 'Delete', { keys: ['NetworkPolicy/default/from-db'] }, 'delete');
        await waitFor('peer pod gone', () => a.last() && !a.last().pods.some((p) => p.metadata.name === 'other'));
      });

      it('NACKs: the version is not re-sent, shows in status, and a newer version is', async () => {
        let reject = false;
        const a = agent('n-nack', { validate: (v) => (reject && v.services.some((s) => s.metadata.name === 'poison') ? 'poison service' : undefined) });
        await a.start();
        await waitFor('first view', () => a.views.length > 0);
        reject = true;
        await applyObjects([service('poison', { selector: { app: 'none' } })]);
        const st = await waitFor('NACK in status', async () => {
          const r = await unary<{ nodes: { node: string; nacked_version: string; last_error: string }[] }>(admin, 'Status', {}, 'status');
          return r.nodes.find((n) => n.node === 'n-nack' && n.nacked_version !== '');
        });
        expect(st.last_error).toBe('poison service');
        const seen = a.views.length;
        await new Promise((r) => setTimeout(r, 200));
        expect(a.views.length).toBe(seen);
        reject = false;
        await unary(admin, 'Delete', { keys: ['Service/default/poison'] }, 'delete');
        await waitFor('newer version accepted', () => a.views.length > seen && !a.last().services.some((s) => s.metadata.name === 'poison'));
      });

      it('never re-sends a NACKed snapshot, even while snapshots are reused across versions', async () => {
        let reject = true;
        const rejected: string[] = [];
        const views: ClusterView[] = [];
        const src = createControlStateSource({
          server: server.address(),
          node: 'n-nack-full',
          credentials: readClientConfig(`${dir.dir}/admin.json`),
          validate: () => (reject ? 'not ready' : undefined),
          log: (m) => rejected.push(/rejected version (\d+)/.exec(m)?.[1] ?? ''),
        });
        sources.push(src);
        await src.start((v) => views.push(v));
        await waitFor('the snapshot NACKed', () => rejected.length > 0);
        // A publish within the snapshot reuse window: the agent must get a newer snapshot, not the same.
        await applyObjects([service('during-nack', { selector: { app: 'none' } })]);
        await waitFor('the newer snapshot NACKed too', () => rejected.length > 1);
        await new Promise((r) => setTimeout(r, 300));
        // Only newer versions may follow a NACK (other tests' changes may publish some meanwhile).
        expect(rejected.map(Number)).toEqual([...new Set(rejected.map(Number))].sort((x, y) => x - y));
        expect(views).toHaveLength(0);
        reject = false;
        await applyObjects([service('after-nack', { selector: { app: 'none' } })]);
        await waitFor('a newer snapshot accepted', () => views[views.length - 1]?.services.some((x) => x.metadata.name === 'after-nack'));
        expect(Number(src.version())).toBeGreaterThan(Number(rejected[rejected.length - 1]));
      });

      it('rejects a node certificate streaming another node, and a client without a certificate', async () => {
        const token = (await unary<{ token: string }>(admin, 'CreateJoinToken', { node: 'joiner' }, 'token')).token;
        const { joinControl } = await import('../mesh-control/agent-client.ts');
        const creds = await joinControl(server.address(), 'joiner', token);
        await expect(joinControl(server.address(), 'joiner', token)).rejects.toMatchObject({ code: 'WEFT_CONTROL_UNAUTHENTICATED' });
        const own = createControlStateSource({ server: server.address(), node: 'joiner', credentials: creds, log: () => {} });
        sources.push(own);
        const ownViews: ClusterView[] = [];
        await own.start((v) => ownViews.push(v));
        await waitFor('own view', () => ownViews.length > 0);
        const logs: string[] = [];
        const other = createControlStateSource({ server: server.address(), node: 'n1', credentials: creds, log: (m) => logs.push(m), backoff: { initialMs: 1000 } });
        sources.push(other);
        await other.start(() => {});
        await waitFor('denied', () => logs.some((l) => /may not stream the view of node n1/.test(l)));
        const bare = channelFor(server.address(), { caPem: creds.caPem });
        const noCert = new (weftServices().Control)(server.address(), bare.credentials, bare.options) as unknown as ControlClient;
        await expect(unary(noCert, 'Status', {}, 'status')).rejects.toMatchObject({ code: 'WEFT_CONTROL_UNAUTHENTICATED' });
        noCert.close();
        const nodeAsAdmin = createControlClient(server.address(), creds);
        await expect(unary(nodeAsAdmin, 'Status', {}, 'status')).rejects.toMatchObject({ code: 'WEFT_CONTROL_PERMISSION_DENIED' });
        nodeAsAdmin.close();
      });

      it('keeps the last view while the control service is down, resumes and converges after restart', async () => {
        const a = agent('n-restart');
        await a.start();
        await waitFor('first view', () => a.views.length > 0);
        const before = a.last();
        const address = server.address();
        admin.close();
        await server.stop();
        await new Promise((r) => setTimeout(r, 300));
        expect(a.last()).toBe(before); // fail static: nothing replaced the view
        server = await startServer(address);
        admin = createControlClient(server.address(), readClientConfig(`${dir.dir}/admin.json`));
        await applyObjects([service('after-restart', { selector: { app: 'none' } })]);
        await waitFor('converged after restart', () => a.last().services.some((s) => s.metadata.name === 'after-restart'), 15_000);
        const metrics = await (await fetch(`http://${server.opsAddress()}/metrics`)).text();
        expect(metrics).toMatch(/weft_control_connected_agents \d+/);
        expect(metrics).toMatch(/weft_control_push_convergence_seconds_count/);
        expect((await fetch(`http://${server.opsAddress()}/readyz`)).status).toBe(200);
      }, 30_000);
    });
  });
});

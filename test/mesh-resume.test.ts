// Resuming a node stream across control restarts, over real gRPC streams: an agent resumes with a
// delta only from the store its version came from. A control service on another data dir (even
// one further along, whose revisions cover the agent's version) or on another etcd prefix answers
// with a full snapshot; one restarted on the same etcd prefix resumes with a delta, because the
// etcd store reads its recent history back at start.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createControlServer, type ControlServer, type ControlServerConfig } from '../mesh-control/server.ts';
import { createControlStateSource } from '../mesh-control/agent-client.ts';
import { createControlClient, unary } from '../mesh-control/client.ts';
import { readClientConfig } from '../mesh-control/client-config.ts';
import type { ClusterView } from '../proxy/agent/source.ts';
import { etcdSkipReason, startEtcd, type EtcdServer } from './helpers/etcd.ts';
import { service, tempDir, waitFor } from './helpers/control.ts';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** A control service on `store` at `listen`, sharing one PKI (so one admin credential serves all). */
async function control(base: string, listen: string, store: Pick<ControlServerConfig, 'dataDir' | 'etcdEndpoints' | 'etcdPrefix'>): Promise<ControlServer> {
  const s = createControlServer({ listen, ...store, pkiDir: join(base, 'pki'), adminConfigPath: join(base, 'admin.json'), opsListen: '127.0.0.1:0', log: () => {} });
  await s.start();
  cleanups.push(() => s.stop());
  return s;
}

async function apply(server: ControlServer, base: string, names: string[]): Promise<void> {
  const admin = createControlClient(server.address(), readClientConfig(join(base, 'admin.json')));
  try {
    const items = names.map((n) => ({ json: Buffer.from(JSON.stringify(service(n, { selector: { app: 'none' } }))), source: 'test' }));
    await unary(admin, 'Apply', { items }, 'apply', 30_000);
  } finally {
    admin.close();
  }
}

async function pushes(server: ControlServer, type: 'full' | 'delta'): Promise<number> {
  const text = await (await fetch(`http://${server.opsAddress()}/metrics`)).text();
  return Number(new RegExp(`weft_control_pushes_total\\{type="${type}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

function startAgent(server: ControlServer, base: string, node: string) {
  const views: ClusterView[] = [];
  const src = createControlStateSource({ server: server.address(), node, credentials: readClientConfig(join(base, 'admin.json')), backoff: { initialMs: 50, maxMs: 300 }, log: () => {} });
  cleanups.push(() => src.stop());
  const names = () => (views[views.length - 1]?.services ?? []).map((s) => s.metadata.name).sort();
  return { src, names, start: () => src.start((v) => views.push(v)) };
}

describe('resume against another store', () => {
  it('answers a version of another data dir with a full snapshot, even when its revisions reach that far', async () => {
    const dir = await tempDir();
    cleanups.push(dir.remove);
    let server = await control(dir.dir, '127.0.0.1:0', { dataDir: join(dir.dir, 'one') });
    const address = server.address();
    await apply(server, dir.dir, ['only-in-one']);
    const a = startAgent(server, dir.dir, 'n-other-store');
    await a.start();
    await waitFor('the first view', () => a.names().includes('only-in-one'));
    const acked = Number(a.src.version());
    await server.stop();

    // Another data dir, written further than the agent's version while the agent is away.
    server = await control(dir.dir, '127.0.0.1:0', { dataDir: join(dir.dir, 'two') });
    await apply(server, dir.dir, Array.from({ length: acked + 2 }, (_, i) => `two-${i}`));
    await server.stop();
    server = await control(dir.dir, address, { dataDir: join(dir.dir, 'two') });
    await waitFor('a view of the second store', () => a.names().includes('two-0') && !a.names().includes('only-in-one'), 15_000);
    expect(a.names()).toEqual(Array.from({ length: acked + 2 }, (_, i) => `two-${i}`).sort());
    expect(await pushes(server, 'full')).toBe(1);
    expect(await pushes(server, 'delta')).toBe(0);
  }, 60_000);
});

describe.skipIf(etcdSkipReason !== undefined)(`resume with the etcd store${etcdSkipReason ? ` (skipped: ${etcdSkipReason})` : ''}`, () => {
  let etcd: EtcdServer;

  it('resumes with a delta after a restart on the same prefix, and a snapshot on another prefix', async () => {
    etcd = await startEtcd();
    cleanups.push(() => etcd.stop());
    const dir = await tempDir();
    cleanups.push(dir.remove);
    const onPrefix = (prefix: string) => ({ etcdEndpoints: [etcd.endpoint], etcdPrefix: prefix });
    let server = await control(dir.dir, '127.0.0.1:0', onPrefix('/one/'));
    const address = server.address();
    await apply(server, dir.dir, ['a']);
    const agent = startAgent(server, dir.dir, 'n-etcd-resume');
    await agent.start();
    await waitFor('the first view', () => agent.names().includes('a'));
    const acked = Number(agent.src.version());

    await server.stop();
    server = await control(dir.dir, address, onPrefix('/one/'));
    await apply(server, dir.dir, ['b']);
    await waitFor('the change made after the restart', () => agent.names().includes('b'), 15_000);
    expect(Number(agent.src.version())).toBeGreaterThan(acked);
    // The restarted service knew the agent's version: deltas only.
    expect(await pushes(server, 'full')).toBe(0);
    expect(await pushes(server, 'delta')).toBeGreaterThan(0);

    // Same etcd (revisions go on), another prefix: another store, a snapshot.
    await server.stop();
    server = await control(dir.dir, address, onPrefix('/two/'));
    await waitFor('a snapshot of the other prefix', () => agent.names().length === 0, 15_000);
    expect(await pushes(server, 'full')).toBe(1);
  }, 60_000);
});

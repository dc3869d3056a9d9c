// etcd store specifics: key layout, endpoint failover, unreachable clusters, watch reconnects.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { createSubnetAllocator, isLeaseError, lookupNodeSubnet, openLeaseStore } from '../mesh-control/leases/index.ts';
import type { Lease, LeaseStore } from '../mesh-control/leases/index.ts';
import { createEtcdClient } from '../mesh-control/leases/etcd-client.ts';
import { etcdSkipReason, freePort, startEtcd } from './helpers/etcd.ts';
import type { EtcdServer } from './helpers/etcd.ts';

describe.skipIf(etcdSkipReason !== undefined)(`etcd lease store${etcdSkipReason ? ` (skipped: ${etcdSkipReason})` : ''}`, () => {
  let server: EtcdServer | undefined;
  let endpoint: string;
  beforeAll(async () => {
    server = await startEtcd();
    endpoint = server.endpoint;
  });
  const stores: LeaseStore[] = [];
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await server?.stop();
  });
  const prefix = () => `/weft-test/${randomUUID()}/`;
  const allocate = (source: { etcdEndpoints: string[]; etcdPrefix: string }) => {
    const store = openLeaseStore(source);
    stores.push(store);
    return createSubnetAllocator(store, { clusterCIDR: '10.244.0.0/16', nodeMask: 24 });
  };

  it('writes the node lease and the subnet claim under the prefix', async () => {
    const source = { etcdEndpoints: [endpoint], etcdPrefix: prefix() };
    await allocate(source).acquire('node-a', { owner: 'agent-1', attrs: { underlayIP: '192.0.2.3', vtepMAC: '02:00:00:00:00:03' } });
    const client = createEtcdClient({ endpoints: [endpoint] });
    try {
      const { kvs } = await client.range(source.etcdPrefix, { prefix: true });
      expect(kvs.map((kv) => kv.key)).toEqual([`${source.etcdPrefix}nodes/node-a`, `${source.etcdPrefix}subnets/10.244.0.0-24`]);
      expect(JSON.parse(kvs[0].value)).toMatchObject({ node: 'node-a', subnet: '10.244.0.0/24', owner: 'agent-1', attrs: { vtepMAC: '02:00:00:00:00:03' } });
      expect(kvs[1].value).toBe('node-a');
      // One transaction: both keys carry the same revision.
      expect(kvs[0].modRevision).toBe(kvs[1].modRevision);
    } finally {
      client.close();
    }
  });

  it('fails over to the next endpoint when one is unreachable', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const source = { etcdEndpoints: [dead, endpoint], etcdPrefix: prefix() };
    const store = openLeaseStore(source);
    const lease = await createSubnetAllocator(store, { clusterCIDR: '10.244.0.0/16', nodeMask: 24 }).acquire('node-a', { owner: 'o' });
    expect(await lookupNodeSubnet(source, 'node-a')).toBe(lease.subnet);
    const seen: Lease[][] = [];
    const stop = createSubnetAllocator(store, { clusterCIDR: '10.244.0.0/16', nodeMask: 24 }).watch((l) => seen.push(l));
    await waitFor(() => seen.at(-1)?.length === 1);
    stop();
    await store.close();
  });

  it('names every endpoint and the cause when none answers', async () => {
    const a = `http://127.0.0.1:${await freePort()}`;
    const b = `http://127.0.0.1:${await freePort()}`;
    const err = await lookupNodeSubnet({ etcdEndpoints: [a, b] }, 'node-a').catch((e: unknown) => e);
    expect(isLeaseError(err, 'WEFT_LEASE_ETCD_UNAVAILABLE'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`^failed to read /weft/leases/nodes/node-a on etcd \\(tried ${a}, ${b}\\): .*ECONNREFUSED`));
  });

  it('reports a gateway error with the endpoint', async () => {
    // An HTTP server that is not etcd: answers, but with an error, so no failover.
    const fake: Server = createServer((_req, res) => res.writeHead(404).end('404 page not found'));
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(fake.address() as { port: number }).port}`;
    try {
      const err = await lookupNodeSubnet({ etcdEndpoints: [url, endpoint] }, 'node-a').catch((e: unknown) => e);
      expect(isLeaseError(err, 'WEFT_LEASE_ETCD_REQUEST'), String(err)).toBe(true);
      expect((err as Error).message).toContain(`on etcd ${url}: HTTP 404`);
    } finally {
      fake.close();
    }
  });

  it('rejects endpoints that are not http(s) URLs', () => {
    expect(() => openLeaseStore({ etcdEndpoints: ['127.0.0.1:2379'] })).toThrow(/invalid lease etcd endpoint "127.0.0.1:2379"/);
    expect(() => openLeaseStore({ etcdEndpoints: ['unix:///run/etcd.sock'] })).toThrow(/must be http/);
  });

  it('resumes a watch after the stream breaks', async () => {
    // A proxy in front of etcd whose open streams we can cut.
    const source = { etcdEndpoints: [endpoint], etcdPrefix: prefix() };
    const { proxy, url, cut } = await cuttableProxy(endpoint);
    try {
      const store = openLeaseStore({ etcdEndpoints: [url], etcdPrefix: source.etcdPrefix });
      const seen: Lease[][] = [];
      store.watch((l) => seen.push(l));
      await waitFor(() => seen.length === 1);
      cut();
      await allocate(source).acquire('node-a', { owner: 'o' });
      await waitFor(() => seen.at(-1)?.length === 1);
      await store.close();
    } finally {
      proxy.closeAllConnections();
      proxy.close();
    }
  });
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the watch');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An HTTP pass-through to `target` whose in-flight responses `cut()` destroys. */
async function cuttableProxy(target: string): Promise<{ proxy: Server; url: string; cut(): void }> {
  const open = new Set<import('node:http').ServerResponse>();
  const proxy = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    req.on('end', async () => {
      try {
        const upstream = await fetch(new URL(req.url ?? '/', target), { method: 'POST', body: Buffer.concat(chunks), signal: ac.signal });
        res.writeHead(upstream.status, { 'content-type': 'application/json' });
        for await (const chunk of upstream.body ?? []) res.write(chunk);
        res.end();
      } catch {
        res.destroy();
      }
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  return {
    proxy,
    url,
    cut: () => {
      for (const res of open) res.destroy();
    },
  };
}

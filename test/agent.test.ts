// The node agent end to end: a file state source, the sync loop, the real kernel inside throwaway
// `wt-` namespaces (a ClusterIP served by TCP and UDP servers in a pod namespace), stale UDP flows, metrics,
// health-check node ports, full sync after a failed apply, canary removal, fail static.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeAgent, type NodeAgent } from '../proxy/agent/agent.ts';
import { staleUdpDeletions } from '../proxy/agent/conntrack.ts';
import type { ApplyText } from '../proxy/agent/dataplane.ts';
import { createIptablesDataplane } from '../proxy/agent/iptables-dataplane.ts';
import { createNftablesDataplane } from '../proxy/agent/nftables-dataplane.ts';
import { createFileStateSource, type ClusterView } from '../proxy/agent/source.ts';
import { buildProxyState } from '../proxy/model/build-proxy-state.ts';
import { nftApply } from '../proxy/nftables/apply.ts';
import { iptablesRestore } from '../proxy/iptables/apply.ts';
import { runCommand } from '../proxy/run-command.ts';
import type { ClusterObject, Service } from '../mesh-control/model/types.ts';
import { createNetns, netnsSkipReason, type Netns } from './helpers/netns.ts';
import { makeService, makeSlice, node, TEST_CLUSTER_CIDR, TEST_NODE, TEST_NODE_IP } from './helpers/proxy-fixtures.ts';

const skip = netnsSkipReason();
const p80 = [{ name: 'p80', port: 80, protocol: 'TCP' as const }];
const dns = [{ name: 'dns', port: 53, protocol: 'UDP' as const }];
const hcPort = 20000 + Math.floor(Math.random() * 20000);
const metricsPort = hcPort + 1;

function objects(endpoints: string[]): ClusterObject[] {
  const local = endpoints.map((ip) => ({ addresses: [ip], nodeName: TEST_NODE }));
  return [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: TEST_NODE }, status: { addresses: [{ type: 'InternalIP', address: TEST_NODE_IP }] } },
    makeService('ns1', 'web', { clusterIP: '172.30.0.41', ports: p80 }),
    makeService('ns1', 'lb', { type: 'LoadBalancer', clusterIP: '172.30.0.45', externalTrafficPolicy: 'Local', healthCheckNodePort: hcPort, ports: [{ ...p80[0], nodePort: 30080 }] }, ['5.6.7.8']),
    makeService('ns1', 'dns', { clusterIP: '172.30.0.10', ports: dns }),
    makeSlice('ns1', 'web', local),
    makeSlice('ns1', 'lb', local),
    makeSlice('ns1', 'dns', local, dns),
  ];
}

/** Replaces the state file atomically, as writers must. */
function writeState(path: string, items: ClusterObject[] | string): void {
  writeFileSync(`${path}.tmp`, typeof items === 'string' ? items : JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  renameSync(`${path}.tmp`, path);
}

interface NodeEnv { ns: Netns; pod: Netns; server: ChildProcess }

/**
 * A node namespace (the agent's) and a pod namespace joined by a veth pair, as the CNI plugin wires
 * them: the pod 10.180.0.1 serves TCP 80 and UDP 53 (echo), so DNATed traffic really leaves the
 * node namespace. The node carries TEST_NODE_IP and routes the service range out of a dummy veth.
 */
async function nodeNamespace(label: string): Promise<NodeEnv> {
  const ns = await createNetns(label);
  let pod: Netns | undefined;
  try {
    pod = await createNetns(`${label}-pod`);
    await ns.ip('link', 'add', 'wtv0', 'type', 'veth', 'peer', 'name', 'wtv1');
    await ns.ip('addr', 'add', `${TEST_NODE_IP}/24`, 'dev', 'wtv0');
    await ns.ip('link', 'set', 'wtv0', 'up');
    await ns.ip('link', 'set', 'wtv1', 'up');
    await ns.ip('route', 'add', '172.30.0.0/16', 'dev', 'wtv0');
    await ns.ip('link', 'add', 'wtpod0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name);
    await ns.ip('addr', 'add', '10.180.0.254/24', 'dev', 'wtpod0');
    await ns.ip('link', 'set', 'wtpod0', 'up');
    await pod.ip('addr', 'add', '10.180.0.1/24', 'dev', 'eth0');
    await pod.ip('link', 'set', 'eth0', 'up');
    await pod.ip('route', 'add', 'default', 'via', '10.180.0.254');
    const server = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', [
      "require('net').createServer((s)=>s.end('ok')).listen(80,'10.180.0.1',()=>{",
      "const u=require('dgram').createSocket('udp4');u.on('message',(m,r)=>u.send('ok',r.port,r.address));u.bind(53,'10.180.0.1',()=>console.log('listening'))})",
    ].join('')], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server did not start in 10 s')), 10_000);
      server.stdout?.once('data', () => { clearTimeout(t); resolve(); });
    });
    return { ns, pod, server };
  } catch (err) {
    await pod?.remove();
    await ns.remove();
    throw err;
  }
}

/** One UDP datagram from a fixed source port; the answer, or TIMEOUT. */
async function udpAsk(ns: Netns, ip: string, port: number, sourcePort: number): Promise<string> {
  const r = await ns.exec(process.execPath, ['-e',
    `const s=require('dgram').createSocket('udp4');s.bind(${sourcePort},()=>s.send('q',${port},'${ip}'));s.on('message',m=>{console.log(String(m));process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)});setTimeout(()=>{console.log('TIMEOUT');process.exit(0)},2000)`], { timeoutMs: 10_000 });
  return r.stdout.trim();
}

async function udpFlows(ns: Netns, vip: string): Promise<string> {
  const r = await runCommand('conntrack', ['-L', '-p', 'udp', '--orig-dst', vip], { netns: ns.name });
  return r.stdout.trim();
}

async function connect(ns: Netns, ip: string, port: number): Promise<string> {
  const r = await ns.exec(process.execPath, ['-e',
    `const s=require('net').connect(${port},'${ip}');s.setTimeout(2000,()=>{console.log('TIMEOUT');process.exit(0)});s.on('data',d=>{console.log(String(d));process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`], { timeoutMs: 10_000 });
  return r.stdout.trim();
}

async function get(port: number, path = '/'): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('stale UDP conntrack planning', () => {
  const udp = [{ name: 'dns', port: 53, protocol: 'UDP' as const }];
  const st = (ips: string[]) => buildProxyState({
    services: [makeService('kube-system', 'dns', { clusterIP: '172.30.0.10', ports: udp })],
    endpointSlices: [makeSlice('kube-system', 'dns', ips.map((ip) => ({ addresses: [ip] })), udp)],
    node: node(), clusterCIDR: TEST_CLUSTER_CIDR,
  });
  it('deletes flows DNATed to a removed endpoint, and everything to a service that gets its first endpoint', () => {
    expect(staleUdpDeletions(st(['10.180.0.1', '10.180.0.2']), st(['10.180.0.1']))).toEqual([
      ['-p', 'udp', '--orig-dst', '172.30.0.10', '--orig-port-dst', '53', '--reply-src', '10.180.0.2'],
    ]);
    expect(staleUdpDeletions(st([]), st(['10.180.0.1']))).toEqual([['-p', 'udp', '--orig-dst', '172.30.0.10', '--orig-port-dst', '53']]);
    expect(staleUdpDeletions(st(['10.180.0.1']), st(['10.180.0.1']))).toEqual([]);
  });
});

describe('file state source', () => {
  it('keeps the identity of unchanged objects across reads, so only changed services are rebuilt', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wt-source-'));
    const file = join(dir, 'state.json');
    const views: ClusterView[] = [];
    const source = createFileStateSource({ path: file, pollMs: 20, log: () => undefined });
    try {
      writeState(file, objects(['10.180.0.1']));
      await source.start((v) => views.push(v));
      const objs = objects(['10.180.0.1']);
      (objs[2] as Service).spec.ports = [{ name: 'p80', port: 81, protocol: 'TCP' }];
      writeState(file, objs);
      for (let i = 0; i < 100 && views.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      const [first, second] = views;
      expect(second.services[0]).toBe(first.services[0]);
      expect(second.services[1]).not.toBe(first.services[1]);
      expect(second.services[1].spec.ports?.[0].port).toBe(81);
      expect(second.endpointSlices).toEqual(first.endpointSlices);
      second.endpointSlices.forEach((slice, i) => expect(slice).toBe(first.endpointSlices[i]));
    } finally {
      await source.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip)(`node agent in a wt- namespace${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let env: NodeEnv | undefined;
  let dir = '';
  beforeAll(async () => {
    env = await nodeNamespace('agent');
    dir = mkdtempSync(join(tmpdir(), 'wt-agent-'));
  });
  afterAll(async () => {
    env?.server.kill();
    await env?.pod.remove();
    await env?.ns.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  function agentWith(mode: 'iptables' | 'nftables', file: string, apply?: ApplyText, extra: { syncPeriodMs?: number; metrics?: boolean } = {}): NodeAgent {
    const netns = env!.ns.name;
    const dataplane = mode === 'nftables' ? createNftablesDataplane({ netns }, { apply }) : createIptablesDataplane({ netns }, { apply });
    return createNodeAgent({
      node: TEST_NODE, clusterCIDR: TEST_CLUSTER_CIDR, netns, minSyncPeriodMs: 20, retryMs: 50, syncPeriodMs: extra.syncPeriodMs ?? 30_000,
      healthCheckBindAddress: '127.0.0.1', ...(extra.metrics ? { metricsListen: { host: '127.0.0.1', port: metricsPort } } : {}),
    }, { source: createFileStateSource({ path: file, pollMs: 50, log: () => undefined }), dataplane, log: () => undefined });
  }

  it('nftables: file changes drive the rules; REJECT without endpoints; metrics; health-check node port; fail static', async () => {
    const file = join(dir, 'state-nft.json');
    writeState(file, objects(['10.180.0.1']));
    const agent = agentWith('nftables', file, undefined, { metrics: true });
    const first = agent.synced();
    await agent.start();
    try {
      expect((await first).full).toBe(true);
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
      const hc = await get(hcPort);
      expect(hc.status).toBe(200);
      expect(JSON.parse(hc.body)).toEqual({ service: { namespace: 'ns1', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });
      const metrics = (await get(metricsPort, '/metrics')).body;
      for (const name of ['weft_proxy_sync_proxy_rules_duration_seconds', 'weft_proxy_sync_full_proxy_rules_duration_seconds', 'weft_proxy_sync_proxy_rules_last_timestamp_seconds',
        'weft_proxy_sync_proxy_rules_nftables_sync_failures_total', 'weft_proxy_sync_proxy_rules_total{type="full"} 1', 'process_cpu_seconds_total']) expect(metrics).toContain(name);
      expect((await get(metricsPort, '/healthz')).status).toBe(200);

      const second = agent.synced();
      writeState(file, objects([]));
      expect((await second).full).toBe(false);
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ECONNREFUSED');
      expect((await get(hcPort)).status).toBe(503);

      // A corrupt file is ignored: the rules stay as they were.
      writeState(file, '{"apiVersion":"v1","kind":"List","items":[{"kind":"Service"');
      await new Promise((r) => setTimeout(r, 300));
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ECONNREFUSED');
      const third = agent.synced();
      writeState(file, objects(['10.180.0.1']));
      expect((await third).full).toBe(false);
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
    } finally {
      await agent.stop();
    }
    // Fail static: the rules outlive the agent.
    expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
    await createNftablesDataplane({ netns: env!.ns.name }).cleanup();
    expect(await connect(env!.ns, '172.30.0.41', 80)).toMatch(/TIMEOUT|EHOSTUNREACH|ECONNREFUSED/);
  });

  it('nftables: removing a UDP endpoint deletes its conntrack flows in the node namespace', async () => {
    const file = join(dir, 'state-udp.json');
    writeState(file, objects(['10.180.0.1']));
    const agent = agentWith('nftables', file);
    const first = agent.synced();
    await agent.start();
    try {
      await first;
      const sourcePort = 40000 + Math.floor(Math.random() * 20000);
      expect(await udpAsk(env!.ns, '172.30.0.10', 53, sourcePort)).toBe('ok');
      const before = await udpFlows(env!.ns, '172.30.0.10');
      expect(before).toContain(`sport=${sourcePort}`);
      expect(before).toContain('src=10.180.0.1');
      const removed = agent.synced();
      writeState(file, objects([]));
      expect((await removed).error).toBeUndefined();
      // Deletions run after the sync's apply; give them a moment.
      for (let i = 0; i < 50 && (await udpFlows(env!.ns, '172.30.0.10')).includes(`sport=${sourcePort}`); i++) await new Promise((r) => setTimeout(r, 100));
      expect(await udpFlows(env!.ns, '172.30.0.10')).not.toContain(`sport=${sourcePort}`);
      expect(await udpAsk(env!.ns, '172.30.0.10', 53, sourcePort)).toMatch(/ECONNREFUSED|TIMEOUT/);
    } finally {
      await agent.stop();
      await createNftablesDataplane({ netns: env!.ns.name }).cleanup();
    }
  });

  it('nftables: a failed apply makes the next sync full', async () => {
    const file = join(dir, 'state-fail.json');
    writeState(file, objects(['10.180.0.1']));
    const netns = env!.ns.name;
    const scripts: string[] = [];
    let failNext = false;
    const apply: ApplyText = async (text) => {
      scripts.push(text);
      if (failNext) {
        failNext = false;
        throw new Error('injected failure');
      }
      await nftApply(text, { netns });
    };
    const agent = agentWith('nftables', file, apply);
    const first = agent.synced();
    await agent.start();
    try {
      await first;
      failNext = true;
      const failed = agent.synced();
      writeState(file, objects([]));
      expect((await failed).error?.message).toBe('injected failure');
      expect(scripts.at(-1)).not.toContain('delete table');
      expect((await agent.synced()).full).toBe(true);
      expect(scripts.at(-1)).toContain('delete table ip weft');
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ECONNREFUSED');
      expect((await agent.metrics.registry.getSingleMetricAsString('weft_proxy_sync_proxy_rules_nftables_sync_failures_total'))).toMatch(/ 1$/m);
    } finally {
      await agent.stop();
      await createNftablesDataplane({ netns }).cleanup();
    }
  });

  it('iptables: partial syncs, a removed canary forces a full sync, cleanup removes everything', async () => {
    const file = join(dir, 'state-ipt.json');
    writeState(file, objects(['10.180.0.1']));
    const netns = env!.ns.name;
    const agent = agentWith('iptables', file, undefined, { syncPeriodMs: 200 });
    const first = agent.synced();
    await agent.start();
    try {
      expect((await first).full).toBe(true);
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ok');
      const partial = agent.synced();
      writeState(file, objects([]));
      expect((await partial).full).toBe(false);
      expect(await connect(env!.ns, '172.30.0.41', 80)).toBe('ECONNREFUSED');
      const forced = agent.synced();
      await iptablesRestore('*mangle\n:WEFT-PROXY-CANARY - [0:0]\n-X WEFT-PROXY-CANARY\nCOMMIT\n', { netns });
      expect((await forced).full).toBe(true);
      expect((await runCommand('iptables', ['-t', 'mangle', '-S', 'WEFT-PROXY-CANARY'], { netns })).code).toBe(0);
    } finally {
      await agent.stop();
    }
    await createIptablesDataplane({ netns }).cleanup();
    for (const table of ['nat', 'filter', 'mangle']) {
      expect((await runCommand('iptables-save', ['-t', table], { netns })).stdout).not.toContain('WEFT-');
    }
  });
});

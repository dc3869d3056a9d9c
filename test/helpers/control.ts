// Helpers for mesh-control tests: a 3-member etcd cluster on loopback, temp dirs, small objects,
// and polling until a condition holds.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { etcdBinary, etcdSkipReason, freePort } from './etcd.ts';
import type { ClusterObject, EndpointSlice, Namespace, Node, Pod, Service } from '../../mesh-control/model/types.ts';

export { etcdSkipReason };

export async function tempDir(prefix = 'weft-control-'): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export interface EtcdMember {
  name: string;
  endpoint: string;
  kill(): Promise<void>;
}

export interface EtcdCluster {
  endpoints: string[];
  members: EtcdMember[];
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** Three etcd members forming one cluster on loopback; kill() stops one member with SIGKILL. */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  if (!etcdBinary) throw new Error(etcdSkipReason);
  const base = await mkdtemp(join(tmpdir(), 'weft-etcd-cluster-'));
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const token = `weft-${ports[0].peer}`;
  const initial = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
  const children: ChildProcess[] = [];
  const members: EtcdMember[] = ports.map((p, i) => {
    const endpoint = `http://127.0.0.1:${p.client}`;
    const peer = `http://127.0.0.1:${p.peer}`;
    const child = spawn(
      etcdBinary!,
      [
        '--name', `m${i}`, '--data-dir', join(base, `m${i}`),
        '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
        '--logger', 'zap', '--log-level', 'error',
        '--heartbeat-interval', '50', '--election-timeout', '500',
      ],
      { stdio: 'ignore' },
    );
    children.push(child);
    return {
      name: `m${i}`,
      endpoint,
      async kill() {
        child.kill('SIGKILL');
        await exited(child);
      },
    };
  });
  const stop = async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(children.map(exited));
    await rm(base, { recursive: true, force: true });
  };
  const endpoints = members.map((m) => m.endpoint);
  try {
    await waitFor('etcd cluster healthy', async () => {
      for (const e of endpoints) {
        const res = await fetch(`${e}/health`, { signal: AbortSignal.timeout(1000) });
        if (((await res.json()) as { health?: string }).health !== 'true') return false;
      }
      return true;
    }, 20_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoints, members, stop };
}

// Small, valid, defaulted objects for tests.
export function ns(name: string, labels: Record<string, string> = {}): Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { ...labels, 'kubernetes.io/metadata.name': name } } };
}

export function node(name: string, podCIDR?: string): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {} };
}

export function pod(name: string, opts: { node?: string; ip?: string; labels?: Record<string, string>; namespace?: string; ready?: boolean } = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.namespace ?? 'default', labels: opts.labels ?? { app: 'web' } },
    spec: { nodeName: opts.node, containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
    status: opts.ip
      ? { podIP: opts.ip, podIPs: [{ ip: opts.ip }], phase: 'Running', conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }] }
      : undefined,
  };
}

export function service(name: string, opts: { selector?: Record<string, string>; namespace?: string; port?: number; clusterIP?: string } = {}): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: opts.namespace ?? 'default' },
    spec: {
      type: 'ClusterIP',
      selector: opts.selector ?? { app: 'web' },
      clusterIP: opts.clusterIP,
      ports: [{ name: 'http', port: opts.port ?? 80, targetPort: 'http', protocol: 'TCP' }],
      sessionAffinity: 'None',
      internalTrafficPolicy: 'Cluster',
    },
  };
}

export function slice(name: string, service: string, addresses: string[], namespace = 'default'): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready: true, serving: true, terminating: false } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/** An object without the fields the server sets, for comparisons. */
export function strip<T extends ClusterObject>(o: T): T {
  const metadata = { ...o.metadata };
  delete metadata.resourceVersion;
  delete metadata.uid;
  delete metadata.creationTimestamp;
  return { ...o, metadata };
}

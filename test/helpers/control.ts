// Helpers for mesh-control tests: a 3-member etcd cluster on loopback, `weft control` in a child
// process, temp dirs, small objects, and polling until a condition holds.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { etcdBinary, etcdSkipReason, freePort } from './etcd.ts';
import type { ClusterObject, EndpointSlice, Namespace, Node, Pod, Service } from '../../mesh-control/model/types.ts';

export { etcdSkipReason };

/** Why tests of `weft control --front haproxy` cannot run here (scripts/ensure-deps.sh installs it). */
export const haproxySkipReason: string | undefined = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0 ? undefined : 'haproxy is not installed (Debian package haproxy)';

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

export interface ControlProcess {
  /** The gRPC address it serves on. */
  address: string;
  /** HOST:PORT of /healthz, /readyz, /metrics (when --ops-listen is given). */
  opsAddress?: string;
  child: ChildProcess;
  /** Sends the signal and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let bundled: Promise<string> | undefined;

/** `weft control` (mesh-control/cli.ts alone, bundled once per test run) in a child process. */
export async function startControlProcess(args: string[], timeoutMs = 20_000): Promise<ControlProcess> {
  bundled ??= (async () => {
    const { build } = await import('esbuild');
    // Inside the checkout, so the bundle finds mesh-control/proto/weft.proto above it.
    const outfile = join(root, 'node_modules', '.cache', 'weft-test', `control-${process.pid}.mjs`);
    await build({
      stdin: { contents: "import { control } from './mesh-control/cli.ts';\nprocess.exitCode = await control(process.argv.slice(2));\n", resolveDir: root, loader: 'ts' },
      outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning',
      banner: { js: "import { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);" },
    });
    return outfile;
  })();
  const child = spawn(process.execPath, [await bundled, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const [address, opsAddress] = await new Promise<[string, string | undefined]>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`weft control did not start within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const m = /serving on ([^\s,]+)(?:, operations on http:\/\/(\S+))?\n/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve([m[1], m[2]]);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`weft control exited (${signal ?? code}) before serving: ${stderr}`));
    });
  });
  return {
    address,
    opsAddress,
    child,
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited(child);
    },
  };
}

/** Removes the bundle startControlProcess built (afterAll). */
export async function removeControlBundle(): Promise<void> {
  if (bundled) await rm(await bundled, { force: true });
  bundled = undefined;
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

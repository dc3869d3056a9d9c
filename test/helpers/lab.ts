// Runs the built `weft lab` CLI against an isolated lab directory (its own WEFT_LAB_DIR, hence its
// own namespace prefix), so lab tests can run side by side and clean up after themselves.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const WEFT = join(ROOT, 'dist', 'weft.mjs');

/** Why a lab test cannot run here, or undefined when it can. */
export function labSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'lab tests need root (network namespaces)';
  if (!existsSync(WEFT) || !existsSync(join(ROOT, 'dist', 'pod-server.mjs'))) return 'dist/ is not built (run `npm run build`)';
  return undefined;
}

export interface RunResult { code: number; stdout: string; stderr: string }

export interface TestLab {
  dir: string;
  /** Writes manifests (file name → YAML) into a fresh directory and returns it. */
  manifests(files: Record<string, string>): Promise<string>;
  weft(args: string[]): Promise<RunResult>;
  /** Runs a command that must succeed with `--output json` and parses its output. */
  json<T>(args: string[]): Promise<T>;
  /** `weft lab down` and removal of the test directories. */
  destroy(): Promise<void>;
}

export async function createTestLab(): Promise<TestLab> {
  const base = await mkdtemp('/tmp/wt-lab-');
  const dir = join(base, 'lab');
  const env = { ...process.env, WEFT_LAB_DIR: dir };
  const weft = (args: string[]): Promise<RunResult> => new Promise((resolve) => {
    execFile(process.execPath, [WEFT, 'lab', ...args], { env, maxBuffer: 16 << 20, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
  return {
    dir,
    async manifests(files) {
      const m = await mkdtemp(join(base, 'manifests-'));
      await Promise.all(Object.entries(files).map(([name, text]) => writeFile(join(m, name), text)));
      return m;
    },
    weft,
    async json<T>(args: string[]) {
      const r = await weft([...args, '--output', 'json']);
      if (r.code !== 0) throw new Error(`weft lab ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    async destroy() {
      await weft(['down']);
      await rm(base, { recursive: true, force: true });
    },
  };
}

/**
 * `weft apply|get|delete ...` as a user runs them against the lab's mesh-control directly: its
 * control socket and admin credential.
 */
export function controlCLI(lab: TestLab, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const env = { ...process.env, WEFT_CONFIG: join(lab.dir, 'control', 'admin.json') };
    execFile(process.execPath, [WEFT, ...args, '--server', `unix:${join(lab.dir, 'control.sock')}`], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A pod manifest with TCP/UDP ports, pinned to a node when given. */
export function podYAML(name: string, opts: { node?: string; tcp?: number[]; udp?: number[]; namespace?: string; ip?: string; labels?: Record<string, string>; named?: Record<string, number> } = {}): string {
  const ports = [
    ...(opts.tcp ?? []).map((p) => `        - containerPort: ${p}\n          protocol: TCP`),
    ...(opts.udp ?? []).map((p) => `        - containerPort: ${p}\n          protocol: UDP`),
    ...Object.entries(opts.named ?? {}).map(([n, p]) => `        - name: ${n}\n          containerPort: ${p}\n          protocol: TCP`),
  ];
  return [
    '---',
    'apiVersion: v1',
    'kind: Pod',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${opts.namespace ?? 'default'}`,
    ...(opts.ip ? ['  annotations:', `    weft.dev/ip: ${opts.ip}`] : []),
    ...(opts.labels ? ['  labels:', ...Object.entries(opts.labels).map(([k, v]) => `    ${k}: ${v}`)] : []),
    'spec:',
    ...(opts.node ? [`  nodeName: ${opts.node}`] : []),
    '  containers:',
    '    - name: main',
    ...(ports.length ? ['      ports:', ...ports] : []),
    '',
  ].join('\n');
}

export interface LabStatus {
  nodes: { name: string; podCIDR: string; address: string }[];
  pods: { namespace: string; name: string; node: string; ip: string; ports: { containerPort: number; protocol?: string }[] }[];
  hosts: { name: string; ip: string }[];
  proxyMode: string;
  services: { service: string; type: string; clusterIP: string; external: string[]; ports: string[]; healthCheckNodePort?: number }[];
}

export interface ProbeJSON {
  from: string; to: string; port: number; protocol: string; ok: boolean; answeredBy: string | null; clientAddress: string | null;
  error?: string; httpStatus?: number; body?: string;
}

/** `lab probe --count N` output. */
export interface LoadJSON {
  from: string; to: string; port: number; protocol: string;
  requests: number; ok: number; failed: number; elapsedMs: number;
  answeredBy: Record<string, number>; clientAddresses: Record<string, number>; errors: Record<string, number>;
}

/** Runs a lab command that may fail (exit 1 for a failed probe) and parses its JSON output. */
export async function probeJSON<T = ProbeJSON>(lab: TestLab, args: string[]): Promise<T> {
  const r = await lab.weft(['probe', ...args, '--output', 'json']);
  if (r.code !== 0 && r.code !== 1) throw new Error(`weft lab probe ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
export interface MatrixJSON { port: number; protocol: string; results: Record<string, Record<string, boolean>> }

// `weft lab probe`: dials are made by the source's own pod server (it already runs inside the
// source namespace), asked over its unix control socket — no process start per probe, and a whole
// matrix row is one request. A node has no pod server: a dialer (`pod-server --dial`) is started in
// its namespace for the one request.
import { createConnection } from 'node:net';
import { type ControlRequest, type DialResult, type LoadResult, mapLimit } from './dial.ts';
import { LabError } from './errors.ts';
import { run } from './netns.ts';
import { distEntry } from './processes.ts';
import type { LabState } from './state.ts';
import { type Endpoint, endpointKeys, type ProbeProtocol, resolveEndpoint, resolveTarget } from './targets.ts';

export type { ProbeProtocol } from './targets.ts';

/** Matrix rows asked at once; each row fans out inside its pod server. */
const SOURCE_CONCURRENCY = 8;

export interface ProbeResult {
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
  ok: boolean;
  answeredBy: string | null;
  clientAddress: string | null;
  error?: string;
  httpStatus?: number;
  body?: string;
}

export interface LoadProbeResult extends LoadResult {
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
}

export interface MatrixResult {
  port: number;
  protocol: ProbeProtocol;
  results: Record<string, Record<string, boolean>>;
}

export interface ProbeOptions {
  port?: number;
  protocol?: ProbeProtocol;
  timeoutMs: number;
  /** More than one: a request loop whose answers are counted (see LoadRequest). */
  count?: number;
  concurrency?: number;
  keepAlive?: boolean;
  durationMs?: number;
  /** UDP only (see DialRequest.sourcePort). */
  sourcePort?: number;
}

/** Sends one control request from inside the source's namespace; resolves to its answer. */
export function requestFrom<T>(source: Endpoint, request: ControlRequest, budgetMs: number): Promise<T> {
  if (!source.control) {
    const argv = ['netns', 'exec', source.netns as string, process.execPath, distEntry('pod-server.mjs'), '--dial'];
    return run(`dial from ${source.key}`, 'ip', argv, JSON.stringify(request)).then((out) => JSON.parse(out) as T);
  }
  const socket = source.control;
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let out = '';
    const timer = setTimeout(() => { conn.destroy(); reject(new LabError('WEFT_LAB_PROCESS', `pod server of ${source.key} did not answer within ${budgetMs} ms`)); }, budgetMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(request) + '\n'));
    conn.on('data', (c: string) => { out += c; });
    conn.on('end', () => {
      clearTimeout(timer);
      try { resolve(JSON.parse(out) as T); } catch { reject(new LabError('WEFT_LAB_PROCESS', `pod server of ${source.key} sent a malformed reply`)); }
    });
    conn.on('error', (err) => { clearTimeout(timer); reject(new LabError('WEFT_LAB_PROCESS', `failed to reach the pod server of ${source.key} at ${socket}: ${err.message}`)); });
  });
}

export async function probe(state: LabState, from: string, to: string, opts: ProbeOptions): Promise<ProbeResult | LoadProbeResult> {
  const source = resolveEndpoint(state, from);
  const target = resolveTarget(state, to, opts.port, opts.protocol);
  if (opts.sourcePort !== undefined && target.protocol !== 'UDP') throw new LabError('WEFT_LAB_TARGET', `probe to ${target.key}: --source-port is for UDP probes only`);
  const dial = { ip: target.ip, port: target.port, protocol: target.protocol, timeoutMs: opts.timeoutMs, ...(opts.sourcePort ? { sourcePort: opts.sourcePort } : {}) };
  const head = { from: source.key, to: target.key, port: target.port, protocol: target.protocol };
  if ((opts.count ?? 1) > 1) {
    const durationMs = opts.durationMs ?? 60_000;
    const load = { ...dial, count: opts.count as number, concurrency: opts.concurrency ?? 1, keepAlive: opts.keepAlive ?? false, durationMs };
    return { ...head, ...await requestFrom<LoadResult>(source, { load }, durationMs + opts.timeoutMs + 5_000) };
  }
  const [r] = await requestFrom<DialResult[]>(source, [dial], opts.timeoutMs + 5_000);
  return {
    ...head, ok: r.ok, answeredBy: r.answeredBy ?? null, clientAddress: r.clientAddress ?? null,
    ...(r.error ? { error: r.error } : {}), ...(r.httpStatus !== undefined ? { httpStatus: r.httpStatus, body: r.body } : {}),
  };
}

/** Every pod and LabHost to every pod and LabHost (itself included). */
export async function probeMatrix(state: LabState, port: number, protocol: ProbeProtocol, timeoutMs: number): Promise<MatrixResult> {
  const keys = endpointKeys(state);
  const endpoints = keys.map((k) => resolveEndpoint(state, k));
  const dials = endpoints.map((t) => ({ ip: t.ip, port, protocol, timeoutMs }));
  const budget = timeoutMs * Math.ceil(dials.length / 16) + 5_000;
  const rows = await mapLimit(endpoints, SOURCE_CONCURRENCY, (src) => requestFrom<DialResult[]>(src, dials, budget));
  const results: Record<string, Record<string, boolean>> = {};
  keys.forEach((from, i) => { results[from] = Object.fromEntries(keys.map((to, j) => [to, rows[i][j].ok])); });
  return { port, protocol, results };
}

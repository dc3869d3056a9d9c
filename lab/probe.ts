// `weft lab probe`: dials are made by the source's own pod server (it already runs inside the
// source namespace), asked over its unix control socket — no process start per probe, and a whole
// matrix row is one request.
import { createConnection } from 'node:net';
import { type DialRequest, type DialResult, mapLimit } from './dial.ts';
import { LabError } from './errors.ts';
import type { LabState } from './state.ts';
import { type Endpoint, endpointKeys, resolveEndpoint } from './targets.ts';

export type ProbeProtocol = 'TCP' | 'UDP';

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
}

export interface MatrixResult {
  port: number;
  protocol: ProbeProtocol;
  results: Record<string, Record<string, boolean>>;
}

/** Sends dials to a pod server's control socket; resolves to their results in order. */
export function dialFrom(source: Endpoint, dials: DialRequest[]): Promise<DialResult[]> {
  const socket = source.control as string;
  const budget = Math.max(0, ...dials.map((d) => d.timeoutMs)) * Math.ceil(dials.length / 16) + 5_000;
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let out = '';
    const timer = setTimeout(() => { conn.destroy(); reject(new LabError('WEFT_LAB_PROCESS', `pod server of ${source.key} did not answer within ${budget} ms`)); }, budget);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(dials) + '\n'));
    conn.on('data', (c: string) => { out += c; });
    conn.on('end', () => {
      clearTimeout(timer);
      try { resolve(JSON.parse(out) as DialResult[]); } catch { reject(new LabError('WEFT_LAB_PROCESS', `pod server of ${source.key} sent a malformed reply`)); }
    });
    conn.on('error', (err) => { clearTimeout(timer); reject(new LabError('WEFT_LAB_PROCESS', `failed to reach the pod server of ${source.key} at ${socket}: ${err.message}`)); });
  });
}

export async function probe(state: LabState, from: string, to: string, port: number, protocol: ProbeProtocol, timeoutMs: number): Promise<ProbeResult> {
  const source = resolveEndpoint(state, from, false);
  const target = resolveEndpoint(state, to, true);
  const [r] = await dialFrom(source, [{ ip: target.ip, port, protocol, timeoutMs }]);
  return { from: source.key, to: target.key, port, protocol, ok: r.ok, answeredBy: r.answeredBy ?? null, clientAddress: r.clientAddress ?? null, ...(r.error ? { error: r.error } : {}) };
}

/** Every pod and LabHost to every pod and LabHost (itself included). */
export async function probeMatrix(state: LabState, port: number, protocol: ProbeProtocol, timeoutMs: number): Promise<MatrixResult> {
  const keys = endpointKeys(state);
  const endpoints = keys.map((k) => resolveEndpoint(state, k, false));
  const dials = endpoints.map((t) => ({ ip: t.ip, port, protocol, timeoutMs }));
  const rows = await mapLimit(endpoints, SOURCE_CONCURRENCY, (src) => dialFrom(src, dials));
  const results: Record<string, Record<string, boolean>> = {};
  keys.forEach((from, i) => { results[from] = Object.fromEntries(keys.map((to, j) => [to, rows[i][j].ok])); });
  return { port, protocol, results };
}

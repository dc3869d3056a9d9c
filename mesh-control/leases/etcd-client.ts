// A minimal etcd v3 client over the JSON/HTTP gateway (/v3/kv/range, /v3/kv/txn, /v3/watch):
// keys and values travel base64-encoded, int64s as decimal strings. Requests go to the first
// endpoint that answers; on a connection error or 503 the next endpoint is tried.

import type { Agent, ClientRequest, RequestOptions } from 'node:http';
import { causeText, leaseError } from './errors.ts';

export interface EtcdKv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
}

/** An equality compare: CREATE 0 means "absent", MOD n means "unchanged since revision n". */
export interface EtcdCompare {
  key: string;
  target: 'CREATE' | 'MOD';
  revision: number;
}

export type EtcdOp = { put: { key: string; value: string } } | { delete: { key: string } };

/** One change from a watch: a DELETE's kv carries the key and the deletion's revision (modRevision). */
export interface EtcdEvent {
  type: 'PUT' | 'DELETE';
  kv: EtcdKv;
}

/** The events of one watch response, revisions ascending; `revision` is the response header's. */
export interface EtcdWatchBatch {
  revision: number;
  events: EtcdEvent[];
}

export interface EtcdClient {
  readonly endpoints: readonly string[];
  /** One key, or every key starting with `key` when `prefix` is set. */
  range(key: string, opts?: { prefix?: boolean }): Promise<{ revision: number; kvs: EtcdKv[] }>;
  txn(compares: EtcdCompare[], success: EtcdOp[]): Promise<{ succeeded: boolean; revision: number }>;
  /**
   * Streams changes under `prefix` from `startRevision`; `onChange` gets the revision of each
   * batch, `onEnd` is called once when the stream ends or fails. Returns a cancel function.
   */
  watchPrefix(prefix: string, startRevision: number, onChange: (revision: number) => void, onEnd: (err?: Error) => void): () => void;
  /**
   * As watchPrefix, with the events themselves (O(1) per change for the watcher). A start revision
   * already compacted ends the stream with a WEFT_LEASE_ETCD_REQUEST error whose
   * `compactRevision` is the oldest revision etcd keeps: the watcher relists and watches from the
   * revision of that read, or starts its history there.
   */
  watchEvents(prefix: string, startRevision: number, onBatch: (batch: EtcdWatchBatch) => void, onEnd: (err?: Error) => void): () => void;
  close(): void;
}

export interface EtcdClientOptions {
  endpoints: string[];
  /** Per-request timeout (default 5 s). */
  timeoutMs?: number;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');

/** The smallest key greater than every key with this prefix (etcd's range_end for a prefix). */
function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix, 'utf8');
  for (let i = buf.length - 1; i >= 0; i--) {
    if (buf[i] < 0xff) {
      buf[i]++;
      return buf.subarray(0, i + 1).toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

class Unreachable extends Error {}

interface Transport {
  request(url: URL, opts: RequestOptions): ClientRequest;
  agent: Agent;
}

interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
}

const toKv = (kv: RawKv): EtcdKv => ({
  key: unb64(kv.key),
  value: unb64(kv.value),
  createRevision: Number(kv.create_revision ?? 0),
  modRevision: Number(kv.mod_revision ?? 0),
});

export function createEtcdClient(opts: EtcdClientOptions): EtcdClient {
  if (opts.endpoints.length === 0) {
    throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'etcd endpoints', value: '', cause: 'at least one endpoint is required' });
  }
  const endpoints = opts.endpoints.map((e) => {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'etcd endpoint', value: e, cause: 'not a URL' });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw leaseError('WEFT_LEASE_INVALID_CONFIG', { what: 'etcd endpoint', value: e, cause: 'must be http:// or https://' });
    }
    return url;
  });
  const timeoutMs = opts.timeoutMs ?? 5000;
  const transports = new Map<string, Promise<Transport>>();
  const streams = new Set<ClientRequest>();
  let current = 0;

  // node:http costs ~5 ms to load and node:https twice that: loaded on first use, so the CNI
  // plugin's file-store lookup (same bundle) does not pay for them.
  function transport(protocol: string): Promise<Transport> {
    let t = transports.get(protocol);
    if (!t) {
      t = (protocol === 'https:' ? import('node:https') : import('node:http')).then((m) => ({
        request: m.request as Transport['request'],
        agent: new m.Agent({ keepAlive: true }),
      }));
      transports.set(protocol, t);
    }
    return t;
  }

  async function send(url: URL, path: string, body: unknown, timeout: number): Promise<ClientRequest> {
    const { request, agent } = await transport(url.protocol);
    const payload = JSON.stringify(body);
    const req = request(new URL(path, url), {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      timeout,
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeout} ms`)));
    req.end(payload);
    return req;
  }

  async function once(url: URL, path: string, body: unknown): Promise<unknown> {
    const req = await send(url, path, body, timeoutMs);
    return new Promise((resolve, reject) => {
      req.on('error', (err) => reject(new Unreachable(causeText(err))));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new Unreachable(causeText(err))));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 503) return reject(new Unreachable(`HTTP 503 ${text}`));
          let json: { error?: string; message?: string } | undefined;
          try {
            json = JSON.parse(text) as typeof json;
          } catch {
            json = undefined;
          }
          if (res.statusCode !== 200 || !json || json.error) {
            return reject(new Error(json?.message ?? json?.error ?? `HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          }
          resolve(json);
        });
      });
    });
  }

  async function post(verb: string, path: string, body: unknown): Promise<unknown> {
    const causes: string[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const idx = (current + i) % endpoints.length;
      try {
        const out = await once(endpoints[idx], path, body);
        current = idx;
        return out;
      } catch (err) {
        if (!(err instanceof Unreachable)) {
          throw leaseError('WEFT_LEASE_ETCD_REQUEST', { verb, endpoint: endpoints[idx].origin, cause: causeText(err) }, err);
        }
        causes.push(`${endpoints[idx].origin}: ${err.message}`);
      }
    }
    throw leaseError('WEFT_LEASE_ETCD_UNAVAILABLE', {
      verb,
      endpoints: endpoints.map((u) => u.origin).join(', '),
      cause: causes.join('; '),
    });
  }

  function watchEvents(prefix: string, startRevision: number, onBatch: (batch: EtcdWatchBatch) => void, onEnd: (err?: Error) => void): () => void {
    let ended = false;
    let req: ClientRequest | undefined;
    const end = (err?: Error) => {
      if (ended) return;
      ended = true;
      if (req) {
        streams.delete(req);
        req.destroy();
      }
      onEnd(err);
    };
    const body = { create_request: { key: b64(prefix), range_end: prefixEnd(prefix), start_revision: String(startRevision) } };
    // A watch stream is long-lived: no request timeout, and it rotates endpoints on reconnect.
    const url = endpoints[current];
    const listen = (r: ClientRequest) => {
      r.on('error', (err) => {
        current = (endpoints.indexOf(url) + 1) % endpoints.length;
        end(leaseError('WEFT_LEASE_ETCD_UNAVAILABLE', { verb: `watch ${prefix}`, endpoints: url.origin, cause: causeText(err) }, err));
      });
      r.on('response', (res) => {
        if (res.statusCode !== 200) {
          end(leaseError('WEFT_LEASE_ETCD_REQUEST', { verb: `watch ${prefix}`, endpoint: url.origin, cause: `HTTP ${res.statusCode}` }));
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (!line) continue;
            let msg: { result?: { header?: { revision?: string }; events?: { type?: string; kv?: RawKv }[]; canceled?: boolean; compact_revision?: string }; error?: unknown };
            try {
              msg = JSON.parse(line) as typeof msg;
            } catch (err) {
              end(leaseError('WEFT_LEASE_ETCD_REQUEST', { verb: `watch ${prefix}`, endpoint: url.origin, cause: causeText(err) }, err));
              return;
            }
            if (msg.error || msg.result?.canceled) {
              const err = leaseError('WEFT_LEASE_ETCD_REQUEST', { verb: `watch ${prefix}`, endpoint: url.origin, cause: JSON.stringify(msg.error ?? msg.result) });
              const compacted = Number(msg.result?.compact_revision ?? 0);
              if (compacted > 0) err.compactRevision = compacted;
              end(err);
              return;
            }
            const events = msg.result?.events;
            if (events?.length) {
              // The JSON gateway leaves out the default enum value: no type is a PUT.
              onBatch({ revision: Number(msg.result!.header?.revision ?? 0), events: events.map((e) => ({ type: e.type === 'DELETE' ? 'DELETE' : 'PUT', kv: toKv(e.kv ?? {}) })) });
            }
          }
        });
        res.on('end', () => end());
        res.on('error', (err) => end(err));
      });
    };
    send(url, '/v3/watch', body, 0).then((r) => {
      if (ended) return void r.destroy();
      req = r;
      streams.add(r);
      listen(r);
    }, end);
    return () => end();
  }

  return {
    endpoints: endpoints.map((u) => u.origin),

    async range(key, o) {
      const body = o?.prefix ? { key: b64(key), range_end: prefixEnd(key) } : { key: b64(key) };
      const res = (await post(`read ${key}`, '/v3/kv/range', body)) as { header: { revision: string }; kvs?: RawKv[] };
      return {
        revision: Number(res.header.revision),
        kvs: (res.kvs ?? []).map(toKv),
      };
    },

    async txn(compares, success) {
      const body = {
        compare: compares.map((c) => ({
          key: b64(c.key),
          target: c.target,
          result: 'EQUAL',
          [c.target === 'CREATE' ? 'create_revision' : 'mod_revision']: String(c.revision),
        })),
        success: success.map((op) =>
          'put' in op
            ? { request_put: { key: b64(op.put.key), value: b64(op.put.value) } }
            : { request_delete_range: { key: b64(op.delete.key) } },
        ),
      };
      const keys = success.map((op) => ('put' in op ? op.put.key : op.delete.key)).join(', ');
      const res = (await post(`write ${keys}`, '/v3/kv/txn', body)) as { header: { revision: string }; succeeded?: boolean };
      return { succeeded: res.succeeded === true, revision: Number(res.header.revision) };
    },

    watchPrefix(prefix, startRevision, onChange, onEnd) {
      return watchEvents(prefix, startRevision, (batch) => onChange(batch.revision), onEnd);
    },

    watchEvents,

    close() {
      for (const req of streams) req.destroy();
      streams.clear();
      for (const t of transports.values()) void t.then((x) => x.agent.destroy());
      transports.clear();
    },
  };
}

// NodeUpdate (proto/weft.proto) encoded by hand, in parts, so one encoding serves every agent:
// a protobuf message is a sequence of fields, and concatenated encodings decode as one message
// (repeated fields append in order, scalars: last wins). An update on the wire is
//   head (version, nonce: per agent) + shared body (what every agent at that base receives) + own parts (per node)
// and the NodeSync service writes such a list of Buffers as is (`preEncodedService`).
import { deflateRawSync } from 'node:zlib';
import type { ServiceDefinition } from '@grpc/grpc-js';

/** An update as the server writes it: parts concatenated into one NodeUpdate message. */
export type EncodedUpdate = readonly Buffer[];

const LEN = 2;
const VARINT = 0;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/** Length-delimited fields, one after the other: [field number, bytes or string] pairs. */
function fields(...pairs: [number, Buffer | string][]): Buffer {
  const bodies = pairs.map(([f, v]) => [f, typeof v === 'string' ? Buffer.from(v, 'utf8') : v] as const);
  let size = 0;
  for (const [f, b] of bodies) size += varintSize((f << 3) | LEN) + varintSize(b.length) + b.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [f, b] of bodies) {
    at = writeVarint(out, at, (f << 3) | LEN);
    at = writeVarint(out, at, b.length);
    at += b.copy(out, at);
  }
  return out;
}

/** Field 5 (`repeated Resource resources`) holding one resource. */
export function resourceField(kind: string, key: string, json: Buffer): Buffer {
  return fields([5, fields([1, kind], [2, key], [3, json])]);
}

/** Field 6 (`repeated string removed`) holding one key. */
export function removedField(key: string): Buffer {
  return fields([6, key]);
}

/** Bodies at least this large travel compressed (JSON endpoints compress ~10×: less to encrypt and copy per agent). */
export const PACK_BYTES = 64 * 1024;

/** Resource and removal fields, as is or (from PACK_BYTES) compressed into field 7 (`packed`). */
export function itemsFields(items: Buffer[]): Buffer {
  const plain = Buffer.concat(items);
  return plain.length < PACK_BYTES ? plain : fields([7, deflateRawSync(plain, { level: 1 })]);
}

/** version (1) + nonce (2): the only per-agent bytes of an update. */
export function headFields(version: string, nonce: string): Buffer {
  return fields([1, version], [2, nonce]);
}

/** store_id (8): the store the versions belong to (the same for every update of a service). */
export function storeIdField(storeId: string): Buffer {
  return fields([8, storeId]);
}

/** full (3) and base_version (4); a delta's `full` is the default (false) and is left out. */
export function kindFields(full: boolean, baseVersion: string): Buffer {
  const base = baseVersion === '' ? Buffer.alloc(0) : fields([4, baseVersion]);
  if (!full) return base;
  const flag = Buffer.alloc(2);
  writeVarint(flag, writeVarint(flag, 0, (3 << 3) | VARINT), 1);
  return Buffer.concat([flag, base]);
}

/**
 * Version and nonce of an encoded NodeUpdate, without decoding its resources (simulated agents in
 * the benchmark ACK without paying for a decode a real agent does anyway).
 */
/** A cursor over protobuf wire bytes: `varint()` is -1 past the end. */
function wireReader(buf: Buffer) {
  const r = {
    at: 0,
    varint(): number {
      let n = 0;
      let mul = 1;
      for (;;) {
        if (r.at >= buf.length) return -1;
        const b = buf[r.at++];
        n += (b & 0x7f) * mul;
        if (b < 0x80) return n;
        mul *= 128;
      }
    },
  };
  return r;
}

export function readHead(buf: Buffer): { version: string; nonce: string } {
  let version = '';
  let nonce = '';
  const r = wireReader(buf);
  while (r.at < buf.length) {
    const tag = r.varint();
    if ((tag & 7) === VARINT) {
      r.varint();
      continue;
    }
    const len = r.varint();
    if (len < 0 || r.at + len > buf.length) break;
    if (tag >> 3 === 1) version = buf.toString('utf8', r.at, r.at + len);
    else if (tag >> 3 === 2) nonce = buf.toString('utf8', r.at, r.at + len);
    r.at += len;
  }
  return { version, nonce };
}

/** NodeRequest fields read by hand: node, resume_version, version, response_nonce, error_detail (all strings). */
const REQUEST_FIELDS = ['', 'node', 'resume_version', 'version', 'response_nonce', 'error_detail'] as const;

/**
 * A NodeRequest decoder for the ACK path: the string fields 1–5 by hand, over the schema's
 * defaults; a message with any other field goes to `full` (the generated decoder), so fields added
 * to the schema still arrive. An ACK costs a few string slices instead of a reflective decode.
 */
export function requestDecoder(full: (buf: Buffer) => object): (buf: Buffer) => object {
  const defaults = full(Buffer.alloc(0));
  return (buf) => {
    const out: Record<string, unknown> = { ...defaults };
    const r = wireReader(buf);
    while (r.at < buf.length) {
      const tag = r.varint();
      const field = tag >> 3;
      if (tag < 0 || (tag & 7) !== LEN || field < 1 || field >= REQUEST_FIELDS.length) return full(buf);
      const len = r.varint();
      if (len < 0 || r.at + len > buf.length) return full(buf);
      out[REQUEST_FIELDS[field]] = buf.toString('utf8', r.at, r.at + len);
      r.at += len;
    }
    return out;
  };
}

/**
 * The NodeSync service definition with a response serializer that writes pre-encoded parts and the
 * hand decoder for requests.
 */
export function preEncodedService(def: ServiceDefinition): ServiceDefinition {
  const stream = def.Stream;
  return {
    ...def,
    Stream: {
      ...stream,
      requestDeserialize: requestDecoder(stream.requestDeserialize as (buf: Buffer) => object),
      responseSerialize: (parts: EncodedUpdate) => (parts.length === 1 ? parts[0] : Buffer.concat(parts)),
    },
  };
}

// nf_tables set elements as netlink messages (NFT_MSG_NEWSETELEM inside NFNL_MSG_BATCH_BEGIN/END),
// encoded straight from the renderer's element runs: no element text or object is built. Pure;
// nft-batch.c sends the bytes. Layout from linux/netfilter/nf_tables.h, nfnetlink.h and libnftnl:
// a key (or map value) is the concatenation of its fields, each padded to a 4-byte register;
// addresses and ports in network order, `numgen` results and other integers in host order.
import { endianness } from 'node:os';
import type { NftElementRun, NftElementSet, NftField, NftFieldValue } from '../render.ts';

const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLA_F_NESTED = 0x8000;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFPROTO_IPV4 = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
/** nla_len is 16 bits: the elements nest of one message must stay below 64 KiB (nft splits the same way). */
const MAX_ELEMENTS_NEST = 60_000;

const VERDICTS: Record<string, number> = { accept: 1, drop: 0, jump: -3, goto: -4, return: -5 };
const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };
const LITTLE_ENDIAN = endianness() === 'LE';

/** One set's elements for a batch: its name in the kernel, its layout, and the runs of its elements. */
export type NftElementBatchSet = NftElementSet;


export interface NftBatches {
  /**
   * One transaction each, in order, encoded as they are taken (views into one buffer), so that
   * the kernel can load one batch while the next is encoded. Iterate once.
   */
  batches: Iterable<Buffer>;
  /** Sequence number → the set its message fills, to name the set when the kernel rejects a message; filled as batches are encoded. */
  messages: Map<number, string>;
  /** Elements encoded. */
  elements: number;
}

/** Bytes of `value` as a NUL-terminated string attribute, padded to 4. */
const stringAttrBytes = (value: string): number => (4 + Buffer.byteLength(value) + 1 + 3) & ~3;

// Netlink headers and attribute headers are in host order, addresses and ports in network order.
// Everything an element holds is a whole 4-byte word, so elements are written word by word.
/** An attribute header (nla_len, nla_type) as one word. */
const attr = LITTLE_ENDIAN ? (len: number, type: number): number => len | (type << 16) : (len: number, type: number): number => (len << 16) | type;
/** A port in network order, zero-padded to its register, as one word. */
const portWord = LITTLE_ENDIAN ? (p: number): number => (p >>> 8) | ((p & 0xff) << 8) : (p: number): number => p << 16;

/** An IPv4 address in network order as one word; throws naming `what` on anything but a dotted quad. */
function ipv4Word(s: string, what: string): number {
  let word = 0, part = 0, n = 0, digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i === s.length ? 46 : s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || part > 255 || n > 3) break;
      word = LITTLE_ENDIAN ? word | (part << (8 * n)) : (word << 8) | part;
      n++;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + c - 48;
      digits++;
    } else {
      n = -1;
      break;
    }
  }
  if (n !== 4) throw new Error(`failed to encode ${what}: invalid IPv4 address ${s}`);
  return word;
}

/** One key or value field as a word. */
function fieldWord(kind: NftField, v: NftFieldValue, what: string): number {
  switch (kind) {
    case 'ipv4': return ipv4Word(v as string, what);
    case 'proto': {
      const p = PROTOCOLS[v as string];
      if (p === undefined) throw new Error(`failed to encode ${what}: unknown protocol ${String(v)}`);
      return LITTLE_ENDIAN ? p : p << 24; // one byte, zero-padded to the register
    }
    case 'port': return portWord(v as number);
    case 'int': return v as number;
  }
}

/**
 * Netlink messages in one buffer, sized up front from the element count and grown only if that
 * estimate was short. Elements are stored word by word through a Uint32Array: this runs once per
 * element (~170k at 10k services × 10 endpoints), often before the JIT has optimized it.
 */
class Writer {
  buf: Buffer;
  words: Uint32Array;
  /** Bytes written; a multiple of 4 between attributes. */
  len = 0;

  constructor(size: number) {
    // Never a slice of the shared pool: the buffer starts word-aligned.
    this.buf = Buffer.allocUnsafeSlow(size);
    this.words = new Uint32Array(this.buf.buffer, this.buf.byteOffset, size >>> 2);
  }

  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Writer(size);
    this.buf.copy(next.buf, 0, 0, this.len);
    this.buf = next.buf;
    this.words = next.words;
  }

  word(v: number): void {
    this.words[this.len >>> 2] = v;
    this.len += 4;
  }

  /** Starts an attribute whose length end() patches; returns its offset. */
  begin(type: number): number {
    const at = this.len;
    this.word(attr(0, type));
    return at;
  }

  end(at: number): void {
    this.words[at >>> 2] = attr(this.len - at, this.words[at >>> 2] >>> (LITTLE_ENDIAN ? 16 : 0) & 0xffff);
  }

  string(type: number, value: string): void {
    const at = this.len;
    const bytes = this.buf.write(value, at + 4, 'utf8');
    this.words[at >>> 2] = attr(4 + bytes + 1, type);
    this.len = at + 4 + bytes;
    do this.buf[this.len++] = 0; while (this.len % 4 !== 0);
  }

  /** A netlink message header and nfgenmsg; returns the offset to patch the length at. */
  message(type: number, flags: number, seq: number, family: number, resId: number): number {
    const at = this.len;
    this.word(NLMSG_HDRLEN + NFGENMSG_LEN);
    this.word(LITTLE_ENDIAN ? type | (flags << 16) : (type << 16) | flags);
    this.word(seq);
    this.word(0);
    // nfgenmsg: family, version (NFNETLINK_V0), res_id in network order.
    this.buf[this.len] = family;
    this.buf[this.len + 1] = 0;
    this.buf[this.len + 2] = resId >>> 8;
    this.buf[this.len + 3] = resId & 0xff;
    this.len += 4;
    return at;
  }

  endMessage(at: number): void {
    this.words[at >>> 2] = this.len - at;
  }
}

const NO_WORDS = new Uint32Array(0);
const runLength = (run: NftElementRun): number => (run.kind === 'one' ? 1 : run.endpoints.length);

/** Elements [from, from + count) of a `slots` run: `key . index : ip . port`, the key's prefix converted once. */
function writeSlots(w: Writer, run: NftElementRun, keyFields: readonly NftField[], from: number, count: number, what: string): void {
  const k = keyFields.length;
  const prefix: number[] = [];
  for (let f = 0; f < k - 1; f++) prefix.push(fieldWord(keyFields[f], run.key[f], what));
  const elem = attr(4 + 8 + 4 * k + 4 + 4 + 8, NFTA_LIST_ELEM | NLA_F_NESTED);
  const key = attr(8 + 4 * k, NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  const keyValue = attr(4 + 4 * k, NFTA_DATA_VALUE);
  const data = attr(16, NFTA_SET_ELEM_DATA | NLA_F_NESTED);
  const dataValue = attr(12, NFTA_DATA_VALUE);
  const words = w.words;
  let o = w.len >>> 2;
  for (let i = from; i < from + count; i++) {
    const ep = run.endpoints[i];
    words[o++] = elem;
    words[o++] = key;
    words[o++] = keyValue;
    for (let f = 0; f < k - 1; f++) words[o++] = prefix[f];
    words[o++] = i; // the numgen result: host order
    words[o++] = data;
    words[o++] = dataValue;
    words[o++] = ipv4Word(ep.ip, what);
    words[o++] = portWord(ep.port);
  }
  w.len = o << 2;
}

/** Elements [from, from + count) of a `pairs` run: `ip . ip`. */
function writePairs(w: Writer, run: NftElementRun, from: number, count: number, what: string): void {
  const elem = attr(20, NFTA_LIST_ELEM | NLA_F_NESTED);
  const key = attr(16, NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  const keyValue = attr(12, NFTA_DATA_VALUE);
  const words = w.words;
  let o = w.len >>> 2;
  for (let i = from; i < from + count; i++) {
    const ip = ipv4Word(run.endpoints[i].ip, what);
    words[o++] = elem;
    words[o++] = key;
    words[o++] = keyValue;
    words[o++] = ip;
    words[o++] = ip;
  }
  w.len = o << 2;
}

/**
 * What follows the key in every element of a verdict map with this verdict: the data nest with the
 * verdict code (network order) and chain, as words.
 */
function verdictWords(text: string, what: string): Uint32Array {
  const space = text.indexOf(' ');
  const code = VERDICTS[space === -1 ? text : text.slice(0, space)];
  if (code === undefined) throw new Error(`failed to encode ${what}: unknown verdict "${text}"`);
  const chain = space === -1 ? '' : text.slice(space + 1);
  const bytes = 4 + 4 + 8 + (chain ? stringAttrBytes(chain) : 0);
  const w = new Writer(bytes);
  const data = w.begin(NFTA_SET_ELEM_DATA | NLA_F_NESTED);
  const verdict = w.begin(NFTA_DATA_VERDICT | NLA_F_NESTED);
  w.word(attr(8, NFTA_VERDICT_CODE));
  w.buf.writeInt32BE(code, w.len);
  w.len += 4;
  if (chain) w.string(NFTA_VERDICT_CHAIN, chain);
  w.end(verdict);
  w.end(data);
  return w.words;
}

/** The element of a `one` run: its key, then `tail` (a verdict, or nothing in a set). */
function writeOne(w: Writer, run: NftElementRun, keyFields: readonly NftField[], tail: Uint32Array, what: string): void {
  const k = keyFields.length;
  const words = w.words;
  let o = w.len >>> 2;
  words[o++] = attr(4 + 8 + 4 * k + 4 * tail.length, NFTA_LIST_ELEM | NLA_F_NESTED);
  words[o++] = attr(8 + 4 * k, NFTA_SET_ELEM_KEY | NLA_F_NESTED);
  words[o++] = attr(4 + 4 * k, NFTA_DATA_VALUE);
  for (let f = 0; f < k; f++) words[o++] = fieldWord(keyFields[f], run.key[f], what);
  words.set(tail, o);
  w.len = (o + tail.length) << 2;
}

/**
 * NEWSETELEM messages ("add element": NLM_F_CREATE without NLM_F_EXCL, each with NLM_F_ACK) for
 * every set, cut into batches of about `maxBatchBytes` (each batch is a transaction of its own).
 */
export function encodeElementBatches(table: string, sets: Iterable<NftElementBatchSet>, opts: { maxBatchBytes?: number; firstSeq?: number } = {}): NftBatches {
  const list = [...sets];
  let elements = 0;
  for (const set of list) for (const run of set.runs) elements += runLength(run);
  const messages = new Map<number, string>();
  return { batches: encode(table, list, elements, messages, opts.maxBatchBytes ?? 1 << 20, opts.firstSeq ?? 1), messages, elements };
}

function* encode(table: string, list: readonly NftElementBatchSet[], elements: number, messages: Map<number, string>, maxBatch: number, firstSeq: number): Generator<Buffer> {
  // 48 bytes cover an endpoint slot or a pair; the few verdict elements may grow the buffer once.
  const w = new Writer(elements * 48 + 65536);
  let seq = firstSeq;
  let batchStart = -1;
  const control = (type: number): void => {
    w.reserve(NLMSG_HDRLEN + NFGENMSG_LEN);
    w.endMessage(w.message(type, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES));
  };
  for (const set of list) {
    const { key: keyFields, value } = set.layout;
    const what = `an element of ${value === undefined ? 'set' : 'map'} ${set.name}`;
    if (value !== undefined && value !== 'verdict' && (value.length !== 2 || value[0] !== 'ipv4' || value[1] !== 'port')) {
      throw new Error(`failed to encode ${what}: map values other than verdicts must be ipv4 . port`);
    }
    const header = NLMSG_HDRLEN + NFGENMSG_LEN + stringAttrBytes(table) + stringAttrBytes(set.name) + 4;
    // Verdicts repeat (a few chains per endpoint count): encoded once each.
    const verdicts = new Map<string, Uint32Array>();
    let msg = -1;
    let nest = -1;
    for (const run of set.runs) {
      const keyLength = run.kind === 'one' ? run.key.length : run.kind === 'slots' ? run.key.length + 1 : 2;
      if ((run.kind === 'slots') !== (value !== undefined && value !== 'verdict') || keyLength !== keyFields.length) {
        throw new Error(`failed to encode ${what}: a ${run.kind} run of ${keyLength} key fields does not fit its layout`);
      }
      let tail: Uint32Array = NO_WORDS;
      if (value === 'verdict') {
        tail = verdicts.get(run.verdict) ?? verdictWords(run.verdict, what);
        verdicts.set(run.verdict, tail);
      }
      const bytes = 4 + 8 + 4 * keyFields.length + (run.kind === 'slots' ? 4 + 4 + 8 : 4 * tail.length);
      const n = runLength(run);
      for (let i = 0; i < n;) {
        // As many elements as the message's elements attribute has room for (its length is 16 bits).
        const room = msg === -1 ? 0 : Math.floor((MAX_ELEMENTS_NEST - (w.len - nest)) / bytes);
        if (room > 0) {
          const count = Math.min(n - i, room);
          w.reserve(count * bytes);
          if (run.kind === 'slots') writeSlots(w, run, keyFields, i, count, what);
          else if (run.kind === 'pairs') writePairs(w, run, i, count, what);
          else writeOne(w, run, keyFields, tail, what);
          i += count;
          continue;
        }
        if (msg !== -1) {
          w.end(nest);
          w.endMessage(msg);
          if (w.len - batchStart >= maxBatch) {
            control(NFNL_MSG_BATCH_END);
            yield w.buf.subarray(batchStart, w.len);
            batchStart = -1;
          }
        }
        w.reserve(header + 2 * (NLMSG_HDRLEN + NFGENMSG_LEN));
        if (batchStart === -1) {
          batchStart = w.len;
          control(NFNL_MSG_BATCH_BEGIN);
        }
        messages.set(seq, set.name);
        msg = w.message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq++, NFPROTO_IPV4, 0);
        w.string(NFTA_SET_ELEM_LIST_TABLE, table);
        w.string(NFTA_SET_ELEM_LIST_SET, set.name);
        nest = w.begin(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
      }
    }
    if (msg !== -1) {
      w.end(nest);
      w.endMessage(msg);
    }
  }
  if (batchStart !== -1) {
    control(NFNL_MSG_BATCH_END);
    yield w.buf.subarray(batchStart, w.len);
  }
}

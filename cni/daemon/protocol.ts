// The wire format between the exec'd C shim (cni/shim/weft-cni.c) and the CNI daemon. Pure
// encode/decode; the C side mirrors these constants, so change both together and bump VERSION.
//
// Every frame: magic "WCNI", version (u8), kind (u8), then fields `tag (u8), length (u32 BE),
// bytes`, ended by the END field (tag 0, length 0). One request per connection: the shim writes
// a REQUEST and half-closes; the daemon answers with one of
//   ACCEPTED header (6 bytes, sent before the verb runs), then EXIT, STDOUT, STDERR, END;
//   REFUSED, REASON, END (the verb did not run: the shim runs the fallback plugin instead).
// A shim that sees EOF before any reply byte knows the verb never ran and may fall back too; a
// reply cut short after ACCEPTED means the verb may have run half-way: the shim reports code 11.

export const MAGIC = Buffer.from('WCNI', 'latin1');
export const VERSION = 1;
export const HEADER_LENGTH = 6;

export const Kind = { REQUEST: 1, ACCEPTED: 2, REFUSED: 3 } as const;
export const Tag = { END: 0, NETNS: 1, ENV: 2, STDIN: 3, EXIT: 4, STDOUT: 5, STDERR: 6, REASON: 7 } as const;

/** Bounds that keep a garbage or hostile peer from costing the daemon memory. */
export const Limits = { maxRequestBytes: 8 << 20, maxEnv: 64, maxNetnsBytes: 256 } as const;

const ENV_ENTRY = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s;

export interface ShimRequest {
  /** The shim's network namespace identity, readlink("/proc/self/ns/net"), e.g. "net:[4026531840]". */
  netns: string;
  env: Record<string, string>;
  stdin: string;
}

export type DaemonReply =
  | { kind: 'accepted'; exitCode: number; stdout: string; stderr: string }
  | { kind: 'refused'; reason: string };

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

interface Field { tag: number; body: Buffer }

function header(kind: number): Buffer {
  return Buffer.concat([MAGIC, Buffer.from([VERSION, kind])]);
}

function field(tag: number, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(tag, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

const END = field(Tag.END, Buffer.alloc(0));

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

function utf8(body: Buffer, what: string): string {
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  try {
    return text.decode(body);
  } catch {
    throw new ProtocolError(`${what} is not valid UTF-8`);
  }
}

/** Checks magic, version and kind; returns the fields. Throws ProtocolError naming the first problem. */
function parseFrame(buf: Buffer, kinds: number[]): { kind: number; fields: Field[] } {
  if (buf.length < HEADER_LENGTH) throw new ProtocolError(`frame is ${buf.length} bytes, shorter than the ${HEADER_LENGTH}-byte header`);
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new ProtocolError('frame does not start with the magic "WCNI"');
  const version = buf[4];
  if (version !== VERSION) throw new ProtocolError(`unsupported protocol version ${version} (this side speaks ${VERSION})`);
  const kind = buf[5];
  if (!kinds.includes(kind)) throw new ProtocolError(`unexpected frame kind ${kind}`);
  const fields: Field[] = [];
  let at = HEADER_LENGTH;
  for (;;) {
    if (at + 5 > buf.length) throw new ProtocolError(`frame ends inside a field header at byte ${at} (missing END field)`);
    const tag = buf[at];
    const length = buf.readUInt32BE(at + 1);
    at += 5;
    if (length > buf.length - at) throw new ProtocolError(`field ${tag} claims ${length} bytes but only ${buf.length - at} remain`);
    if (tag === Tag.END) {
      if (length !== 0) throw new ProtocolError(`END field has length ${length}, expected 0`);
      if (at !== buf.length) throw new ProtocolError(`${buf.length - at} bytes follow the END field`);
      return { kind, fields };
    }
    fields.push({ tag, body: buf.subarray(at, at + length) });
    at += length;
  }
}

function single(fields: Field[], tag: number, name: string, required: boolean): Buffer | undefined {
  const found = fields.filter((f) => f.tag === tag);
  if (found.length > 1) throw new ProtocolError(`${name} field appears ${found.length} times`);
  if (required && found.length === 0) throw new ProtocolError(`${name} field is missing`);
  return found[0]?.body;
}

function rejectUnknown(fields: Field[], allowed: number[]): void {
  const bad = fields.find((f) => !allowed.includes(f.tag));
  if (bad) throw new ProtocolError(`unknown field tag ${bad.tag}`);
}

export function encodeRequest(req: ShimRequest): Buffer {
  const env = Object.entries(req.env).map(([k, v]) => field(Tag.ENV, Buffer.from(`${k}=${v}`)));
  return Buffer.concat([header(Kind.REQUEST), field(Tag.NETNS, Buffer.from(req.netns)), ...env, field(Tag.STDIN, Buffer.from(req.stdin)), END]);
}

export function decodeRequest(buf: Buffer): ShimRequest {
  if (buf.length > Limits.maxRequestBytes) throw new ProtocolError(`request is ${buf.length} bytes, more than the ${Limits.maxRequestBytes}-byte limit`);
  const { fields } = parseFrame(buf, [Kind.REQUEST]);
  rejectUnknown(fields, [Tag.NETNS, Tag.ENV, Tag.STDIN]);
  const netnsBody = single(fields, Tag.NETNS, 'NETNS', true)!;
  if (netnsBody.length > Limits.maxNetnsBytes) throw new ProtocolError(`NETNS field is ${netnsBody.length} bytes, more than ${Limits.maxNetnsBytes}`);
  const envFields = fields.filter((f) => f.tag === Tag.ENV);
  if (envFields.length > Limits.maxEnv) throw new ProtocolError(`request carries ${envFields.length} ENV fields, more than ${Limits.maxEnv}`);
  const env: Record<string, string> = {};
  for (const f of envFields) {
    const m = ENV_ENTRY.exec(utf8(f.body, 'ENV field'));
    if (!m) throw new ProtocolError(`ENV field "${f.body.toString('utf8', 0, 40)}" is not NAME=VALUE`);
    if (Object.hasOwn(env, m[1])) throw new ProtocolError(`ENV field ${m[1]} appears twice`);
    env[m[1]] = m[2];
  }
  return {
    netns: utf8(netnsBody, 'NETNS field'),
    env,
    stdin: utf8(single(fields, Tag.STDIN, 'STDIN', true)!, 'STDIN field'),
  };
}

/** The 6 bytes the daemon sends once it has decided to run the verb (see the file comment). */
export function encodeAcceptedHeader(): Buffer {
  return header(Kind.ACCEPTED);
}

/** What follows the ACCEPTED header: the verb's outcome. */
export function encodeResult(res: { exitCode: number; stdout: string; stderr: string }): Buffer {
  return Buffer.concat([
    field(Tag.EXIT, u32(res.exitCode)),
    field(Tag.STDOUT, Buffer.from(res.stdout)),
    field(Tag.STDERR, Buffer.from(res.stderr)),
    END,
  ]);
}

export function encodeRefused(reason: string): Buffer {
  return Buffer.concat([header(Kind.REFUSED), field(Tag.REASON, Buffer.from(reason)), END]);
}

export function decodeReply(buf: Buffer): DaemonReply {
  const { kind, fields } = parseFrame(buf, [Kind.ACCEPTED, Kind.REFUSED]);
  if (kind === Kind.REFUSED) {
    rejectUnknown(fields, [Tag.REASON]);
    return { kind: 'refused', reason: utf8(single(fields, Tag.REASON, 'REASON', true)!, 'REASON field') };
  }
  rejectUnknown(fields, [Tag.EXIT, Tag.STDOUT, Tag.STDERR]);
  const exit = single(fields, Tag.EXIT, 'EXIT', true)!;
  if (exit.length !== 4) throw new ProtocolError(`EXIT field has length ${exit.length}, expected 4`);
  return {
    kind: 'accepted',
    exitCode: exit.readUInt32BE(0),
    stdout: utf8(single(fields, Tag.STDOUT, 'STDOUT', true)!, 'STDOUT field'),
    stderr: utf8(single(fields, Tag.STDERR, 'STDERR', true)!, 'STDERR field'),
  };
}

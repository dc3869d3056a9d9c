import { describe, expect, it } from 'vitest';
import {
  decodeReply, decodeRequest, encodeAcceptedHeader, encodeRefused, encodeRequest, encodeResult, Limits, ProtocolError, Tag,
} from '../cni/daemon/protocol.ts';

const request = {
  netns: 'net:[4026531840]',
  env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_ARGS: 'A=1;B=x=y' },
  stdin: '{"cniVersion":"1.0.0","name":"weft","note":"é ✓"}',
};

function field(tag: number, body: Buffer | string): Buffer {
  const b = Buffer.from(body);
  const head = Buffer.alloc(5);
  head[0] = tag;
  head.writeUInt32BE(b.length, 1);
  return Buffer.concat([head, b]);
}

const head = (version = 1, kind = 1) => Buffer.concat([Buffer.from('WCNI'), Buffer.from([version, kind])]);
const end = field(Tag.END, '');

describe('CNI daemon protocol', () => {
  it('round-trips a request, including "=" in values and non-ASCII stdin', () => {
    expect(decodeRequest(encodeRequest(request))).toEqual(request);
  });

  it('round-trips an accepted reply and a refusal', () => {
    const res = { exitCode: 1, stdout: '{"code":7,"msg":"bad"}\n', stderr: 'log line\n' };
    expect(decodeReply(Buffer.concat([encodeAcceptedHeader(), encodeResult(res)]))).toEqual({ kind: 'accepted', ...res });
    expect(decodeReply(encodeRefused('wrong network namespace'))).toEqual({ kind: 'refused', reason: 'wrong network namespace' });
  });

  it('puts the field layout where the C shim expects it', () => {
    const buf = encodeRequest({ netns: 'n', env: { CNI_COMMAND: 'DEL' }, stdin: '{}' });
    expect(buf.subarray(0, 6)).toEqual(head());
    expect(buf.subarray(6)).toEqual(Buffer.concat([field(Tag.NETNS, 'n'), field(Tag.ENV, 'CNI_COMMAND=DEL'), field(Tag.STDIN, '{}'), end]));
  });

  const garbage: Array<[string, Buffer, RegExp]> = [
    ['empty input', Buffer.alloc(0), /shorter than the 6-byte header/],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /magic/],
    ['another version', Buffer.concat([head(2), end]), /unsupported protocol version 2/],
    ['a reply kind', Buffer.concat([head(1, 2), end]), /unexpected frame kind 2/],
    ['no END field', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.STDIN, '{}')]), /missing END/],
    ['a length past the end', Buffer.concat([head(), Buffer.from([Tag.STDIN, 0xff, 0xff, 0xff, 0xff]), Buffer.from('{}')]), /claims 4294967295 bytes/],
    ['bytes after END', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.STDIN, '{}'), end, Buffer.from('x')]), /follow the END/],
    ['a missing STDIN', Buffer.concat([head(), field(Tag.NETNS, 'n'), end]), /STDIN field is missing/],
    ['a missing NETNS', Buffer.concat([head(), field(Tag.STDIN, '{}'), end]), /NETNS field is missing/],
    ['two STDIN fields', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.STDIN, '{}'), field(Tag.STDIN, '{}'), end]), /appears 2 times/],
    ['an unknown tag', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(99, 'x'), field(Tag.STDIN, '{}'), end]), /unknown field tag 99/],
    ['a reply field in a request', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.EXIT, 'xxxx'), field(Tag.STDIN, '{}'), end]), /unknown field tag 4/],
    ['an ENV without "="', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.ENV, 'CNI_COMMAND'), field(Tag.STDIN, '{}'), end]), /not NAME=VALUE/],
    ['a repeated ENV name', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.ENV, 'A=1'), field(Tag.ENV, 'A=2'), field(Tag.STDIN, '{}'), end]), /A appears twice/],
    ['invalid UTF-8 stdin', Buffer.concat([head(), field(Tag.NETNS, 'n'), field(Tag.STDIN, Buffer.from([0xc3, 0x28])), end]), /STDIN field is not valid UTF-8/],
    ['a long NETNS', Buffer.concat([head(), field(Tag.NETNS, 'n'.repeat(Limits.maxNetnsBytes + 1)), field(Tag.STDIN, '{}'), end]), /NETNS field is 257 bytes/],
    ['too many ENV fields', Buffer.concat([head(), field(Tag.NETNS, 'n'), ...Array.from({ length: Limits.maxEnv + 1 }, (_, i) => field(Tag.ENV, `V${i}=1`)), field(Tag.STDIN, '{}'), end]), /65 ENV fields/],
  ];
  it.each(garbage)('rejects %s with a ProtocolError naming the problem', (_name, buf, message) => {
    expect(() => decodeRequest(buf)).toThrow(ProtocolError);
    expect(() => decodeRequest(buf)).toThrow(message);
  });

  it('rejects an oversized request before parsing it', () => {
    expect(() => decodeRequest(Buffer.alloc(Limits.maxRequestBytes + 1))).toThrow(/more than the 8388608-byte limit/);
  });

  it('rejects replies with a wrong EXIT length or a missing STDERR', () => {
    expect(() => decodeReply(Buffer.concat([head(1, 2), field(Tag.EXIT, 'xx'), field(Tag.STDOUT, ''), field(Tag.STDERR, ''), end]))).toThrow(/EXIT field has length 2/);
    expect(() => decodeReply(Buffer.concat([head(1, 2), field(Tag.EXIT, 'xxxx'), field(Tag.STDOUT, ''), end]))).toThrow(/STDERR field is missing/);
  });
});

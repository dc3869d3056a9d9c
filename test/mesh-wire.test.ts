// The hand encoding of NodeUpdate (mesh-control/push/wire.ts) against the checked-in schema:
// concatenated parts decode as one message, in order, and the benchmark's head reader agrees.
import { describe, expect, it } from 'vitest';
import { weftServices } from '../mesh-control/proto/load.ts';
import { inflateRawSync } from 'node:zlib';
import { headFields, itemsFields, kindFields, PACK_BYTES, readHead, removedField, resourceField } from '../mesh-control/push/wire.ts';
import type { NodeUpdate } from '../mesh-control/push/node-sync.ts';

const decode = (b: Buffer) => weftServices().NodeSync.service.Stream.responseDeserialize(b) as NodeUpdate;

describe('NodeUpdate wire parts', () => {
  it('decode as the message the schema describes, resources and removals in order', () => {
    const big = Buffer.alloc(300_000, 'x'); // multi-byte lengths
    const parts = [
      headFields('1234', 'n0nce'),
      kindFields(false, '1200'),
      resourceField('Service', 'Service/default/web', Buffer.from('{"a":1}')),
      removedField('Pod/default/gone'),
      resourceField('Pod', 'Pod/default/p', Buffer.from('{"projection":true}')),
      resourceField('Pod', 'Pod/default/p', big),
    ];
    const u = decode(Buffer.concat(parts));
    expect(u.version).toBe('1234');
    expect(u.nonce).toBe('n0nce');
    expect(u.full).toBe(false);
    expect(u.base_version).toBe('1200');
    expect(u.removed).toEqual(['Pod/default/gone']);
    expect(u.resources.map((r) => [r.kind, r.key, r.json.length])).toEqual([
      ['Service', 'Service/default/web', 7],
      ['Pod', 'Pod/default/p', 19],
      ['Pod', 'Pod/default/p', 300_000],
    ]);
    expect(readHead(Buffer.concat(parts))).toEqual({ version: '1234', nonce: 'n0nce' });
    // Cut anywhere, the head reader stops at the end instead of reading past it.
    const head = headFields('1234', 'n0nce');
    for (let n = 0; n < head.length; n++) expect(readHead(head.subarray(0, n)).version).toMatch(/^(|1234)$/);
  });

  it('compresses large item lists into `packed`, leaving small ones as they are', () => {
    const small = [resourceField('Service', 'Service/default/a', Buffer.from('{}'))];
    expect(itemsFields(small)).toEqual(Buffer.concat(small));
    const many = Array.from({ length: 2000 }, (_, i) => resourceField('EndpointSlice', `EndpointSlice/default/s${i}`, Buffer.from(JSON.stringify({ endpoints: [{ addresses: [`10.0.${i >> 8}.${i & 255}`] }] }))));
    const u = decode(Buffer.concat([headFields('9', 'n'), kindFields(true, ''), itemsFields([...many, removedField('Pod/default/x')]), resourceField('Pod', 'Pod/default/own', Buffer.from('{}'))]));
    expect(Buffer.concat(many).length).toBeGreaterThan(PACK_BYTES);
    expect(u.packed.length).toBeLessThan(Buffer.concat(many).length / 4);
    const inner = decode(inflateRawSync(u.packed));
    expect(inner.resources).toHaveLength(2000);
    expect(inner.resources[1999].key).toBe('EndpointSlice/default/s1999');
    expect(inner.removed).toEqual(['Pod/default/x']);
    expect(u.resources.map((r) => r.key)).toEqual(['Pod/default/own']);
    expect(readHead(Buffer.concat([headFields('9', 'n'), kindFields(true, ''), itemsFields(many)]))).toEqual({ version: '9', nonce: 'n' });
  });

  it('marks a snapshot full with no base version', () => {
    const u = decode(Buffer.concat([headFields('7', 'n'), kindFields(true, '')]));
    expect(u).toMatchObject({ version: '7', full: true, base_version: '', resources: [], removed: [] });
  });
});

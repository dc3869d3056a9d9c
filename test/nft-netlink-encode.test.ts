// Golden bytes of the nf_tables set-element encoder (proxy/nftables/netlink/encode.ts): one element
// of every shape weft loads, framed in NFNL_MSG_BATCH_BEGIN/END. The kernel test
// (nft-netlink.test.ts) checks that what these bytes load lists exactly as nft's own text does.
import { describe, expect, it } from 'vitest';
import { endianness } from 'node:os';
import { encodeElementBatches, type NftElementBatchSet } from '../proxy/nftables/netlink/encode.ts';
import type { ProxyEndpoint } from '../proxy/model/types.ts';
import type { NftElementRun, NftLayout } from '../proxy/nftables/render.ts';

const BEGIN = '14000000' + '1000' + '0100' + '01000000' + '00000000' + '00' + '00' + '000a';
const end = (seq: string) => '14000000' + '1100' + '0100' + seq + '00000000' + '00' + '00' + '000a';
/** NEWSETELEM (0x0a0c), NLM_F_REQUEST|NLM_F_ACK|NLM_F_CREATE, seq 2, NFPROTO_IPV4, then table "weft". */
const msg = (len: string) => len + '0c0a' + '0504' + '02000000' + '00000000' + '02' + '00' + '0000' + '09000100' + '7765667400000000';

/** An endpoint as the model has it; the encoder reads only its ip and port. */
const ep = (ip: string, port: number) => ({ ip, port }) as ProxyEndpoint;
const run = (r: Partial<NftElementRun>): NftElementRun => ({ kind: 'one', map: 'm', key: [], verdict: '', endpoints: [], ...r });

function one(name: string, layout: NftLayout, element: NftElementRun): string {
  const set: NftElementBatchSet = { name, layout, runs: [element] };
  const encoded = encodeElementBatches('weft', [set]);
  const batches = [...encoded.batches];
  const messages = encoded.messages;
  expect(batches).toHaveLength(1);
  expect(messages.get(2)).toBe(name);
  return batches[0].toString('hex');
}

describe.skipIf(endianness() !== 'LE')('nf_tables set element encoding (little-endian host)', () => {
  it('endpoint map: ipv4 . port . numgen slot → ipv4 . port, one element per endpoint (ports big-endian, the slot host-endian, each padded to 4 bytes)', () => {
    expect(one('endpoints-cluster-ip-tcp-2-a', { key: ['ipv4', 'port', 'int'], value: ['ipv4', 'port'] }, run({ kind: 'slots', key: ['172.30.0.1', 80], endpoints: [ep('10.9.9.9', 1), ep('10.1.0.2', 8080)] }))).toBe(
      BEGIN + msg('98000000') + '21000200' + Buffer.from('endpoints-cluster-ip-tcp-2-a\0').toString('hex') + '000000'
      + '54000380' + '28000180' + '14000180' + '10000100' + 'ac1e0001' + '00500000' + '00000000'
      + '10000280' + '0c000100' + '0a090909' + '00010000'
      + '28000180' + '14000180' + '10000100' + 'ac1e0001' + '00500000' + '01000000'
      + '10000280' + '0c000100' + '0a010002' + '1f900000' + end('03000000'));
  });

  it('verdict map: ipv4 . inet_proto . inet_service → goto chain', () => {
    expect(one('service-ips-a', { key: ['ipv4', 'proto', 'port'], value: 'verdict' }, run({ key: ['172.30.0.1', 'tcp', 80], verdict: 'goto pick-x' }))).toBe(
      BEGIN + msg('6c000000') + '12000200' + Buffer.from('service-ips-a\0').toString('hex') + '0000'
      + '38000380' + '34000180' + '14000180' + '10000100' + 'ac1e0001' + '06000000' + '00500000'
      + '1c000280' + '18000280' + '08000100' + 'fffffffc' + '0b000200' + Buffer.from('pick-x\0').toString('hex') + '00' + end('03000000'));
  });

  it('node port verdict map: inet_proto . inet_service → drop (no chain)', () => {
    expect(one('no-endpoint-nodeports', { key: ['proto', 'port'], value: 'verdict' }, run({ key: ['udp', 30053], verdict: 'drop' }))).toBe(
      BEGIN + msg('64000000') + '1a000200' + Buffer.from('no-endpoint-nodeports\0').toString('hex') + '0000'
      + '28000380' + '24000180' + '10000180' + '0c000100' + '11000000' + '75650000'
      + '10000280' + '0c000280' + '08000100' + '00000000' + end('03000000'));
  });

  it('set: ipv4 . ipv4, no data', () => {
    expect(one('hairpin', { key: ['ipv4', 'ipv4'] }, run({ kind: 'pairs', endpoints: [ep('10.1.0.2', 80)] }))).toBe(
      BEGIN + msg('44000000') + '0c000200' + Buffer.from('hairpin\0').toString('hex')
      + '18000380' + '14000180' + '10000180' + '0c000100' + '0a010002' + '0a010002' + end('03000000'));
  });
});

describe('nf_tables batch framing', () => {
  it('keeps every elements attribute below 64 KiB and cuts batches between messages', () => {
    const runs = Array.from({ length: 2_000 }, (_, i) => run({ kind: 'slots', key: [`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, 80], endpoints: Array.from({ length: 10 }, () => ep('10.1.0.2', 8080)) }));
    const encoded = encodeElementBatches('weft', [{ name: 'eps', layout: { key: ['ipv4', 'port', 'int'], value: ['ipv4', 'port'] }, runs }], { maxBatchBytes: 256 * 1024 });
    const batches = [...encoded.batches];
    const messages = encoded.messages;
    expect(encoded.elements).toBe(20_000);
    expect(batches.length).toBeGreaterThan(1);
    let elementsSeen = 0;
    for (const b of batches) {
      expect(b.readUInt16LE(4)).toBe(0x10);
      for (let o = 20; o < b.length;) {
        const len = b.readUInt32LE(o);
        const type = b.readUInt16LE(o + 4);
        if (type === 0x11) { expect(o + len).toBe(b.length); break; }
        expect(type).toBe(0x0a0c);
        expect(messages.get(b.readUInt32LE(o + 8))).toBe('eps');
        const nest = o + 20 + 12 + 8; // header, nfgenmsg, table "weft", set "eps"
        expect(b.readUInt16LE(nest + 2)).toBe(0x8003);
        expect(b.readUInt16LE(nest)).toBeLessThan(65536);
        elementsSeen += (b.readUInt16LE(nest) - 4) / 40; // each element: 40 bytes
        o += len;
      }
    }
    expect(elementsSeen).toBe(20_000);
  });

  it('names the set and the value it cannot encode', () => {
    const bad = (element: NftElementRun) => () => [...encodeElementBatches('weft', [{ name: 'service-ips', layout: { key: ['ipv4', 'proto', 'port'], value: 'verdict' }, runs: [element] }]).batches];
    expect(bad(run({ key: ['172.30.0.300', 'tcp', 80], verdict: 'drop' }))).toThrow('failed to encode an element of map service-ips: invalid IPv4 address 172.30.0.300');
    expect(bad(run({ key: ['172.30.0.1', 'icmp', 80], verdict: 'drop' }))).toThrow('unknown protocol icmp');
    expect(bad(run({ key: ['172.30.0.1', 'tcp', 80], verdict: 'queue' }))).toThrow('failed to encode an element of map service-ips: unknown verdict "queue"');
  });
});

import { describe, expect, it } from 'vitest';
import {
  broadcast, contains, containsCidr, formatCidr, formatIPv4, isIPv4, overlaps, parseCidr, parseInterfaceAddress,
  parseIPv4, subnetAt, subnetCount, subnetIndex,
} from '../mesh-control/model/cidr.ts';

describe('IPv4 addresses', () => {
  it('round-trips addresses at both ends of the range', () => {
    for (const a of ['0.0.0.0', '10.244.1.2', '255.255.255.255', '192.168.0.1']) expect(formatIPv4(parseIPv4(a))).toBe(a);
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
  });
  it('rejects malformed text', () => {
    for (const bad of ['256.0.0.1', '10.0.0', '10.0.0.1.2', '01.2.3.4', '1.2.3.00', '1.2.3.1000', '1..2.3', '.1.2.3', '1.2.3.', 'a.b.c.d', '', ' 10.0.0.1', '10.0.0.1 ']) {
      expect(isIPv4(bad)).toBe(false);
      expect(() => parseIPv4(bad)).toThrow(/is not an IPv4 address/);
    }
  });
});

describe('CIDRs', () => {
  it('parses strictly and names the network when host bits are set', () => {
    expect(formatCidr(parseCidr('10.244.0.0/16'))).toBe('10.244.0.0/16');
    expect(() => parseCidr('10.244.1.5/24')).toThrow(/host bits set \(network is 10\.244\.1\.0\/24\)/);
    expect(formatCidr(parseCidr('10.244.1.5/24', false))).toBe('10.244.1.0/24');
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/invalid prefix/);
    expect(() => parseCidr('10.0.0.0')).toThrow(/not a CIDR/);
  });
  it('keeps the address of an interface address', () => {
    const { ip, cidr } = parseInterfaceAddress('10.244.1.5/24');
    expect(formatIPv4(ip)).toBe('10.244.1.5');
    expect(formatCidr(cidr)).toBe('10.244.1.0/24');
  });
  it('answers containment and overlap', () => {
    const c = parseCidr('10.244.0.0/16');
    expect(contains(c, parseIPv4('10.244.255.255'))).toBe(true);
    expect(contains(c, parseIPv4('10.245.0.0'))).toBe(false);
    expect(containsCidr(c, parseCidr('10.244.3.0/24'))).toBe(true);
    expect(containsCidr(parseCidr('10.244.3.0/24'), c)).toBe(false);
    expect(overlaps(parseCidr('10.0.0.0/8'), parseCidr('10.1.0.0/16'))).toBe(true);
    expect(overlaps(parseCidr('10.1.0.0/16'), parseCidr('10.2.0.0/16'))).toBe(false);
    expect(contains(parseCidr('0.0.0.0/0'), parseIPv4('1.2.3.4'))).toBe(true);
    expect(formatIPv4(broadcast(parseCidr('10.244.1.0/24')))).toBe('10.244.1.255');
  });
  it('splits a cluster CIDR into node subnets and finds them again', () => {
    const cluster = parseCidr('10.244.0.0/16');
    expect(subnetCount(cluster, 24)).toBe(256);
    expect(formatCidr(subnetAt(cluster, 24, 0))).toBe('10.244.0.0/24');
    expect(formatCidr(subnetAt(cluster, 24, 255))).toBe('10.244.255.0/24');
    expect(subnetIndex(cluster, parseCidr('10.244.7.0/24'))).toBe(7);
    expect(subnetIndex(cluster, parseCidr('10.245.7.0/24'))).toBe(-1);
    expect(() => subnetAt(cluster, 24, 256)).toThrow(/outside 0\.\.255/);
    expect(() => subnetAt(cluster, 8, 0)).toThrow(/cannot split/);
  });
});

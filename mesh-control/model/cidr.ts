// IPv4 address and prefix arithmetic on unsigned 32-bit integers. Pure; shared by the CNI IPAM,
// node subnet leases, the lab and the service proxy.

export interface Cidr {
  /** Network address (host bits cleared), as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
}

/**
 * Dotted-quad IPv4 (no leading zeros, each octet ≤ 255) as a uint32, or -1. A character scan:
 * the proxy parses every endpoint address on each full sync.
 */
function scanIPv4(text: string): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return -1; // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

export function isIPv4(text: string): boolean {
  return scanIPv4(text) >= 0;
}

export function parseIPv4(text: string): number {
  const n = scanIPv4(text);
  if (n < 0) throw new RangeError(`"${text}" is not an IPv4 address`);
  return n;
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses "a.b.c.d/n". With `strict`, host bits must be zero (as Kubernetes requires of podCIDR). */
export function parseCidr(text: string, strict = true): Cidr {
  const slash = text.indexOf('/');
  if (slash === -1) throw new RangeError(`"${text}" is not a CIDR (expected address/prefix)`);
  const addr = parseIPv4(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) throw new RangeError(`"${text}" has an invalid prefix length`);
  const prefix = Number(prefixText);
  const network = (addr & maskOf(prefix)) >>> 0;
  if (strict && network !== addr) throw new RangeError(`"${text}" has host bits set (network is ${formatIPv4(network)}/${prefix})`);
  return { network, prefix };
}

/** Parses "a.b.c.d/n" keeping the address: an interface address such as 10.244.1.5/24. */
export function parseInterfaceAddress(text: string): { ip: number; cidr: Cidr } {
  const cidr = parseCidr(text, false);
  return { ip: parseIPv4(text.slice(0, text.indexOf('/'))), cidr };
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.network)}/${c.prefix}`;
}

export function size(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function broadcast(c: Cidr): number {
  return (c.network + size(c) - 1) >>> 0;
}

export function contains(c: Cidr, ip: number): boolean {
  return ((ip & maskOf(c.prefix)) >>> 0) === c.network;
}

export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && contains(outer, inner.network);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return contains(a, b.network) || contains(b, a.network);
}

/** The i-th subnet of length `prefix` inside `parent`. */
export function subnetAt(parent: Cidr, prefix: number, index: number): Cidr {
  if (prefix < parent.prefix || prefix > 32) throw new RangeError(`cannot split /${parent.prefix} into /${prefix} subnets`);
  const count = subnetCount(parent, prefix);
  if (index < 0 || index >= count) throw new RangeError(`subnet index ${index} is outside 0..${count - 1}`);
  return { network: (parent.network + index * 2 ** (32 - prefix)) >>> 0, prefix };
}

export function subnetCount(parent: Cidr, prefix: number): number {
  return 2 ** (prefix - parent.prefix);
}

/** Index of `child` among the /child.prefix subnets of `parent`, or -1 when it is not inside. */
export function subnetIndex(parent: Cidr, child: Cidr): number {
  if (!containsCidr(parent, child)) return -1;
  return (child.network - parent.network) / 2 ** (32 - child.prefix);
}

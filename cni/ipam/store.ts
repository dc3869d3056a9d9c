// The node-local address store: one file per allocated IP under <dataDir>/<network>/, holding
// "containerID\r\nifname" (host-local's layout, so operators' habits and tools carry over).
//
// A reservation is made by writing a private temp file and link()ing it to the IP's name. link()
// fails with EEXIST atomically, so two processes can never own one address, and a reservation
// file is never empty or half-written: no lock is needed, and a process killed at any point
// leaves either a complete reservation (released by DEL or GC) or an unlinked temp file (swept by GC).
// The calls are synchronous on purpose: each is a few microseconds, and a reservation done in one
// uninterrupted run cannot interleave with another in the same process.
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { broadcast, contains, formatCidr, formatIPv4, isIPv4, parseIPv4, type Cidr } from '../../mesh-control/model/cidr.ts';
import type { AttachmentKey } from '../config.ts';
import { cniError } from '../errors.ts';

export interface Allocation extends AttachmentKey { ip: string }

export interface AddressRange {
  subnet: Cidr;
  /** Never handed out: it belongs to the bridge. */
  gateway: number;
}

export interface AddressStore {
  readonly dir: string;
  /** Reserves `requested`, or the next free address after the last one handed out. */
  reserve(key: AttachmentKey, range: AddressRange, requested?: number): number;
  /** Releases every address held by `key` (checking `hint` first); returns what was released. */
  release(key: AttachmentKey, hint?: string): string[];
  find(key: AttachmentKey): Allocation | undefined;
  list(): Allocation[];
  /** Removes temp files left by killed processes. Only safe while no reservation is in flight (GC). */
  sweepTemp(): number;
}

const LAST_RESERVED = 'last_reserved_ip.0';
const TEMP_PREFIX = '.tmp-';

/** Number of addresses a range can hand out: all but network, broadcast and gateway. */
export function capacity(range: AddressRange): number {
  return broadcast(range.subnet) - range.subnet.network - 1 - (isAssignable(range, range.gateway) ? 1 : 0);
}

function isAssignable(range: AddressRange, ip: number): boolean {
  return contains(range.subnet, ip) && ip !== range.subnet.network && ip !== broadcast(range.subnet);
}

/** Rejects a requested address the range cannot hand out (code 7: it came from the runtime's arguments). */
export function assertAssignable(range: AddressRange, ip: number): void {
  if (isAssignable(range, ip) && ip !== range.gateway) return;
  throw cniError('WEFT_CNI_INVALID_CONFIG', `invalid config: ips: requested address ${formatIPv4(ip)} is not assignable in the node subnet ${formatCidr(range.subnet)}` +
    (ip === range.gateway ? ' (it is the gateway)' : ''));
}

function keyText(key: AttachmentKey): string {
  return `${key.containerID}\r\n${key.ifname}`;
}

function parseOwner(text: string): AttachmentKey {
  const [containerID, ifname = ''] = text.split('\r\n');
  return { containerID: containerID.trim(), ifname: ifname.trim() };
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

export function openAddressStore(opts: { dataDir: string; network: string }): AddressStore {
  const dir = join(opts.dataDir, opts.network);

  const storeError = (verb: string, path: string, err: unknown): never => {
    throw cniError('WEFT_CNI_STORE', `failed to ${verb} ${path}: ${(err as Error).message}`);
  };

  const readOwner = (name: string): AttachmentKey | undefined => {
    try {
      return parseOwner(readFileSync(join(dir, name), 'utf8'));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      return storeError('read reservation', join(dir, name), err);
    }
  };

  const ipNames = (): string[] => {
    try {
      return readdirSync(dir).filter(isIPv4);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      return storeError('list', dir, err);
    }
  };

  const matches = (owner: AttachmentKey | undefined, key: AttachmentKey): boolean =>
    owner !== undefined && owner.containerID === key.containerID && owner.ifname === key.ifname;

  const find = (key: AttachmentKey): Allocation | undefined => {
    for (const ip of ipNames()) {
      const owner = readOwner(ip);
      if (matches(owner, key)) return { ip, ...key };
    }
    return undefined;
  };

  const readLastReserved = (): number | undefined => {
    try {
      const text = readFileSync(join(dir, LAST_RESERVED), 'utf8').trim();
      return isIPv4(text) ? parseIPv4(text) : undefined;
    } catch {
      return undefined;
    }
  };

  const writeLastReserved = (ip: number): void => {
    // Best effort: losing it only restarts the round-robin from the subnet's start.
    const tmp = join(dir, `${TEMP_PREFIX}last-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      writeFileSync(tmp, formatIPv4(ip));
      renameSync(tmp, join(dir, LAST_RESERVED));
    } catch {
      try { unlinkSync(tmp); } catch { /* already gone */ }
    }
  };

  /** link() the prepared temp file to the IP's name; false when someone owns it. */
  const tryLink = (tmp: string, ip: number): boolean => {
    try {
      linkSync(tmp, join(dir, formatIPv4(ip)));
      return true;
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') return false;
      return storeError('reserve', join(dir, formatIPv4(ip)), err);
    }
  };

  return {
    dir,

    reserve(key, range, requested) {
      if (requested !== undefined) assertAssignable(range, requested);
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (err) {
        storeError('create store directory', dir, err);
      }
      const existing = find(key);
      if (existing) {
        throw cniError('WEFT_CNI_ADDRESS_IN_USE', `${existing.ip} has been allocated to ${key.containerID}/${key.ifname}, duplicate allocation is not allowed`);
      }
      const tmp = join(dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
      try {
        writeFileSync(tmp, keyText(key), { flag: 'wx', mode: 0o600 });
      } catch (err) {
        storeError('write reservation', tmp, err);
      }
      try {
        if (requested !== undefined) {
          if (tryLink(tmp, requested)) return requested;
          const owner = readOwner(formatIPv4(requested));
          throw cniError('WEFT_CNI_ADDRESS_IN_USE', `requested address ${formatIPv4(requested)} is already allocated` +
            (owner ? ` to ${owner.containerID}/${owner.ifname}` : ''));
        }
        const first = range.subnet.network + 1;
        const count = broadcast(range.subnet) - first;
        const last = readLastReserved();
        const start = last !== undefined && isAssignable(range, last) ? last - first + 1 : 0;
        for (let i = 0; i < count; i++) {
          const ip = first + ((start + i) % count);
          if (ip === range.gateway) continue;
          if (tryLink(tmp, ip)) {
            writeLastReserved(ip);
            return ip;
          }
        }
        throw cniError('WEFT_CNI_ADDRESSES_EXHAUSTED', `no free address in ${formatCidr(range.subnet)}: all ${capacity(range)} in use`);
      } finally {
        try { unlinkSync(tmp); } catch { /* a crash-leftover is swept by GC */ }
      }
    },

    release(key, hint) {
      const released: string[] = [];
      const candidates = hint && isIPv4(hint) ? [hint, ...ipNames().filter((n) => n !== hint)] : ipNames();
      for (const ip of candidates) {
        if (!matches(readOwner(ip), key)) continue;
        try {
          unlinkSync(join(dir, ip));
          released.push(ip);
        } catch (err) {
          if (errnoOf(err) !== 'ENOENT') storeError('release', join(dir, ip), err);
        }
        if (ip === hint) break;
      }
      return released;
    },

    find,

    list() {
      const out: Allocation[] = [];
      for (const ip of ipNames()) {
        const owner = readOwner(ip);
        if (owner) out.push({ ip, ...owner });
      }
      return out;
    },

    sweepTemp() {
      let removed = 0;
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        return 0;
      }
      for (const name of names) {
        if (!name.startsWith(TEMP_PREFIX)) continue;
        try {
          unlinkSync(join(dir, name));
          removed++;
        } catch { /* raced with another sweeper */ }
      }
      return removed;
    },
  };
}

// Assigns Service clusterIPs and nodePorts the way the API server does: requested values are
// honored (or rejected with the API server's wording), missing ones are allocated. Pure state, no I/O.
//
// Dynamic allocation prefers the upper part of each range and uses the lower band only when the
// upper one is full (KEP-3070 for IPs, KEP-3668 for node ports), so that addresses and ports users
// pick by hand (10.96.0.10 for DNS, 30080 for a demo) rarely collide with allocated ones.
import type { Service, ServicePort } from '../mesh-control/model/types.ts';
import { broadcast, formatCidr, formatIPv4, isIPv4, parseCidr, parseIPv4, contains, type Cidr } from '../mesh-control/model/cidr.ts';
import { ProxyError } from './errors.ts';

export interface ServiceIPAllocatorConfig {
  /** Default 10.96.0.0/16. */
  serviceCIDR?: string;
  /** Inclusive "min-max", default "30000-32767". */
  nodePortRange?: string;
}

export interface ServiceIPAllocator {
  /**
   * Returns a copy of `service` with spec.clusterIP/clusterIPs, spec.ports[].nodePort and
   * spec.healthCheckNodePort filled in, and records them as held by namespace/name. Allocating a
   * service again (an update) keeps what it already holds unless the update asks for other values.
   * Throws ProxyError on a conflict; nothing is recorded then.
   */
  allocate(service: Service): Service;
  /** Frees everything held by namespace/name (no-op when nothing is held). */
  release(namespace: string, name: string): void;
}

interface Holdings {
  ip?: number;
  /** nodePort by port key (name, or port/protocol for unnamed ports). */
  nodePorts: Map<string, number>;
  healthCheckNodePort?: number;
}

interface BandAllocator {
  isFree(value: number, owner: string): boolean;
  inRange(value: number): boolean;
  /** Lowest-risk free value (upper band first, next-fit), or undefined when full. */
  next(taken: ReadonlySet<number>): number | undefined;
  hold(value: number, owner: string): void;
  free(value: number, owner: string): void;
}

function createBandAllocator(first: number, last: number, lowerBand: number): BandAllocator {
  const owners = new Map<number, string>();
  const upperStart = Math.min(first + lowerBand, last);
  let cursor = upperStart;
  const scan = (from: number, to: number, taken: ReadonlySet<number>): number | undefined => {
    for (let v = from; v <= to; v++) if (!owners.has(v) && !taken.has(v)) return v;
    return undefined;
  };
  return {
    inRange: (v) => v >= first && v <= last,
    isFree: (v, owner) => (owners.get(v) ?? owner) === owner,
    next(taken) {
      const found = scan(cursor, last, taken) ?? scan(upperStart, cursor - 1, taken) ?? scan(first, upperStart - 1, taken);
      if (found !== undefined && found >= upperStart) cursor = found + 1 > last ? upperStart : found + 1;
      return found;
    },
    hold: (v, owner) => void owners.set(v, owner),
    free(v, owner) {
      if (owners.get(v) === owner) owners.delete(v);
    },
  };
}

function parsePortRange(text: string): { min: number; max: number } {
  const m = /^(\d+)-(\d+)$/.exec(text);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2]) : NaN;
  if (!(min >= 1 && max <= 65535 && min <= max)) {
    throw new ProxyError('WEFT_PROXY_INVALID_CONFIG', `failed to parse node port range "${text}": expected min-max within 1-65535`);
  }
  return { min, max };
}

function portKey(p: ServicePort): string {
  return p.name ? `name:${p.name}` : `${p.port}/${p.protocol ?? 'TCP'}`;
}

export function createServiceIPAllocator(config: ServiceIPAllocatorConfig = {}): ServiceIPAllocator {
  const cidrText = config.serviceCIDR ?? '10.96.0.0/16';
  let cidr: Cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch (err) {
    throw new ProxyError('WEFT_PROXY_INVALID_CONFIG', `failed to parse service CIDR "${cidrText}": ${(err as Error).message}`);
  }
  if (cidr.prefix > 30) throw new ProxyError('WEFT_PROXY_INVALID_CONFIG', `failed to use service CIDR ${cidrText}: it must hold at least 2 addresses (/30 or larger)`);
  const rangeText = config.nodePortRange ?? '30000-32767';
  const range = parsePortRange(rangeText);
  // Network and broadcast addresses are never handed out, as the API server does for IPv4.
  const firstIP = cidr.network + 1;
  const lastIP = broadcast(cidr) - 1;
  const ipCount = lastIP - firstIP + 1;
  const ips = createBandAllocator(firstIP, lastIP, Math.min(Math.max(16, Math.floor(ipCount / 16)), 256));
  const portCount = range.max - range.min + 1;
  const ports = createBandAllocator(range.min, range.max, Math.min(Math.max(16, Math.floor(portCount / 32)), 128));
  const held = new Map<string, Holdings>();
  const rangeDesc = formatCidr(cidr);

  function claimIP(owner: string, requested: string | undefined, previous: number | undefined): number {
    if (requested) {
      if (!isIPv4(requested)) throw new ProxyError('WEFT_PROXY_IP_NOT_IN_RANGE', `failed to allocate IP ${requested} for service ${owner}: spec.clusterIP: Invalid value: "${requested}": must be a valid IPv4 address`);
      const ip = parseIPv4(requested);
      if (!contains(cidr, ip) || !ips.inRange(ip)) {
        throw new ProxyError('WEFT_PROXY_IP_NOT_IN_RANGE', `failed to allocate IP ${requested} for service ${owner}: the provided IP (${requested}) is not in the valid range. The range of valid IPs is ${rangeDesc}`);
      }
      if (!ips.isFree(ip, owner)) throw new ProxyError('WEFT_PROXY_IP_ALLOCATED', `failed to allocate IP ${requested} for service ${owner}: provided IP is already allocated`);
      return ip;
    }
    if (previous !== undefined) return previous;
    const ip = ips.next(new Set());
    if (ip === undefined) throw new ProxyError('WEFT_PROXY_IP_RANGE_FULL', `failed to allocate a clusterIP for service ${owner}: range ${rangeDesc} is full`);
    return ip;
  }

  function checkPort(owner: string, field: string, port: number): void {
    if (!ports.inRange(port)) {
      throw new ProxyError('WEFT_PROXY_PORT_NOT_IN_RANGE', `failed to allocate node port for service ${owner}: ${field}: Invalid value: ${port}: provided port is not in the valid range. The range of valid ports is ${range.min}-${range.max}`);
    }
    if (!ports.isFree(port, owner)) {
      throw new ProxyError('WEFT_PROXY_PORT_ALLOCATED', `failed to allocate node port for service ${owner}: ${field}: Invalid value: ${port}: provided port is already allocated`);
    }
  }

  function nextPort(owner: string, taken: Set<number>): number {
    const port = ports.next(taken);
    if (port === undefined) throw new ProxyError('WEFT_PROXY_PORT_RANGE_FULL', `failed to allocate a node port for service ${owner}: range ${range.min}-${range.max} is full`);
    taken.add(port);
    return port;
  }

  function releaseHoldings(owner: string, h: Holdings): void {
    if (h.ip !== undefined) ips.free(h.ip, owner);
    for (const p of h.nodePorts.values()) ports.free(p, owner);
    if (h.healthCheckNodePort !== undefined) ports.free(h.healthCheckNodePort, owner);
  }

  return {
    allocate(service) {
      const owner = `${service.metadata.namespace ?? 'default'}/${service.metadata.name}`;
      const previous = held.get(owner);
      const spec = { ...service.spec, ports: (service.spec.ports ?? []).map((p) => ({ ...p })) };
      const out: Service = { ...service, spec };
      const type = spec.type ?? 'ClusterIP';
      const next: Holdings = { nodePorts: new Map() };
      if (type === 'ExternalName') {
        if (previous) releaseHoldings(owner, previous);
        held.delete(owner);
        return out;
      }
      const requestedIP = spec.clusterIP || spec.clusterIPs?.[0];
      if (requestedIP !== 'None') {
        next.ip = claimIP(owner, requestedIP, previous?.ip);
        spec.clusterIP = formatIPv4(next.ip);
        spec.clusterIPs = [spec.clusterIP];
      }
      // Ports this service takes in this call: a requested port may be shared only by ports of
      // the same service that differ in protocol (TCP and UDP 53 on one nodePort).
      const taken = new Set<number>();
      const byPortNumber = new Map<number, number>();
      if (type === 'NodePort' || type === 'LoadBalancer') {
        const seen = new Map<string, number>();
        spec.ports.forEach((p, i) => {
          if (p.nodePort === undefined) return;
          const field = `spec.ports[${i}].nodePort`;
          checkPort(owner, field, p.nodePort);
          const dupKey = `${p.nodePort}/${p.protocol ?? 'TCP'}`;
          if (seen.has(dupKey)) throw new ProxyError('WEFT_PROXY_PORT_ALLOCATED', `failed to allocate node port for service ${owner}: ${field}: Duplicate value: ${p.nodePort}/${p.protocol ?? 'TCP'}`);
          seen.set(dupKey, i);
          taken.add(p.nodePort);
          byPortNumber.set(p.port, p.nodePort);
        });
        for (const p of spec.ports) {
          if (p.nodePort === undefined) {
            const kept = previous?.nodePorts.get(portKey(p));
            p.nodePort = kept ?? byPortNumber.get(p.port) ?? nextPort(owner, taken);
            taken.add(p.nodePort);
            byPortNumber.set(p.port, p.nodePort);
          }
          next.nodePorts.set(portKey(p), p.nodePort);
        }
        if (type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local') {
          if (spec.healthCheckNodePort !== undefined) {
            checkPort(owner, 'spec.healthCheckNodePort', spec.healthCheckNodePort);
            if (taken.has(spec.healthCheckNodePort)) {
              throw new ProxyError('WEFT_PROXY_PORT_ALLOCATED', `failed to allocate node port for service ${owner}: spec.healthCheckNodePort: Invalid value: ${spec.healthCheckNodePort}: provided port is already allocated`);
            }
          } else {
            spec.healthCheckNodePort = previous?.healthCheckNodePort ?? nextPort(owner, taken);
          }
          next.healthCheckNodePort = spec.healthCheckNodePort;
        } else {
          delete spec.healthCheckNodePort;
        }
      } else {
        for (const p of spec.ports) delete p.nodePort;
        delete spec.healthCheckNodePort;
      }
      if (previous) releaseHoldings(owner, previous);
      if (next.ip !== undefined) ips.hold(next.ip, owner);
      for (const p of next.nodePorts.values()) ports.hold(p, owner);
      if (next.healthCheckNodePort !== undefined) ports.hold(next.healthCheckNodePort, owner);
      held.set(owner, next);
      return out;
    },
    release(namespace, name) {
      const owner = `${namespace}/${name}`;
      const h = held.get(owner);
      if (!h) return;
      releaseHoldings(owner, h);
      held.delete(owner);
    },
  };
}

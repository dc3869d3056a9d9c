// The lab checks Services as the API server would and plays the cloud's load-balancer controller:
// nodePorts and healthCheckNodePorts come from proxy/service-ip-allocator.ts (given values are
// honored), and LoadBalancer Services without an ingress IP get one from the lab's LB pool.
// Pure: the lab checks Services with it before writing them to mesh-control (control.ts).
import { contains, formatIPv4, isIPv4, parseCidr, parseIPv4 } from '../mesh-control/model/cidr.ts';
import { namespacedName } from '../mesh-control/model/objects.ts';
import type { Service } from '../mesh-control/model/types.ts';
import { createServiceIPAllocator } from '../proxy/service-ip-allocator.ts';
import { LabError } from './errors.ts';

export const DEFAULT_SERVICE_CIDR = '10.96.0.0/16';
/**
 * LoadBalancer IPs: inside the lab's 172.30.0.0/16 but outside every underlay address it hands out
 * (l2 uses 172.30.0.0/24, routed 172.30.1-254.0/24), so an LB IP never shadows a node or host.
 */
export const LB_POOL = '172.30.255.0/24';

export function inLoadBalancerPool(ip: string): boolean {
  return isIPv4(ip) && contains(parseCidr(LB_POOL), parseIPv4(ip));
}

export function ingressIPs(svc: Service): string[] {
  return (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '').filter(isIPv4);
}

/**
 * `existing` are Services allocated before (their values are held again, so an update keeps its
 * clusterIP and nodePorts); `incoming` create or replace Services by namespace/name. Returns the
 * whole list: existing order, replaced in place, new ones appended. Throws a LabError naming the
 * Service on a conflict (an address or port already taken, out of range, pool exhausted).
 */
export function allocateServices(existing: readonly Service[], incoming: readonly Service[], serviceCIDR = DEFAULT_SERVICE_CIDR): Service[] {
  const allocator = createServiceIPAllocator({ serviceCIDR });
  const out = new Map<string, Service>();
  const attempt = (svc: Service): Service => {
    try {
      return allocator.allocate(svc);
    } catch (err) {
      throw new LabError('WEFT_LAB_PLAN', `failed to allocate addresses for Service ${namespacedName(svc)}: ${(err as Error).message}`);
    }
  };
  for (const svc of existing) out.set(namespacedName(svc), attempt(svc));
  const lbTaken = new Set([...out.values()].flatMap(ingressIPs));
  for (const svc of incoming) {
    const key = namespacedName(svc);
    const before = out.get(key);
    // Allocating the same owner again keeps what it holds unless the update asks for other values.
    const allocated = attempt(before && svc.spec.clusterIP === undefined ? { ...svc, spec: { ...svc.spec, clusterIP: before.spec.clusterIP } } : svc);
    const ingress = loadBalancerIngress(allocated, before, lbTaken);
    const { status: _dropped, ...rest } = allocated;
    out.set(key, ingress.length ? { ...rest, status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip })) } } } : rest);
  }
  return [...out.values()];
}

/** What the LB controller publishes: the user's ingress, else spec.loadBalancerIP, else the previous or a fresh pool IP. */
export function loadBalancerIngress(svc: Service, before: Service | undefined, taken: Set<string>): string[] {
  if ((svc.spec.type ?? 'ClusterIP') !== 'LoadBalancer') return [];
  const given = ingressIPs(svc);
  if (given.length) return given;
  if (svc.spec.loadBalancerIP) return [svc.spec.loadBalancerIP];
  const kept = before ? ingressIPs(before) : [];
  if (kept.length) return kept;
  const pool = parseCidr(LB_POOL);
  for (let ip = pool.network + 1; ip < pool.network + 255; ip++) {
    const text = formatIPv4(ip);
    if (taken.has(text)) continue;
    taken.add(text);
    return [text];
  }
  throw new LabError('WEFT_LAB_PLAN', `failed to allocate a LoadBalancer IP for Service ${namespacedName(svc)}: pool ${LB_POOL} is full`);
}

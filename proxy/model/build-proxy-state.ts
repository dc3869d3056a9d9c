// Services + EndpointSlices + this node → the proxy's normalized view (ProxyState). Pure and
// linear in the number of service ports and endpoints.
import type { EndpointSlice, Node, ObjectMeta, Service, ServicePort } from '../../mesh-control/model/types.ts';
import { SERVICE_NAME_LABEL } from '../../mesh-control/model/types.ts';
import { contains, formatCidr, isIPv4, parseCidr, parseIPv4 } from '../../mesh-control/model/cidr.ts';
import { categorizeEndpoints } from './categorize-endpoints.ts';
import type { L4Protocol, ProxyEndpoint, ProxyServicePort, ProxyState } from './types.ts';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds (3 hours). */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

export interface ProxyStateInput {
  services: readonly Service[];
  endpointSlices: readonly EndpointSlice[];
  /** The node this proxy runs on: its name decides which endpoints are local, its zone label topology. */
  node: { metadata: ObjectMeta; status?: Node['status'] };
  /** Default: the node's InternalIP and ExternalIP addresses. */
  nodeIPs?: readonly string[];
  /** The cluster's pod CIDR; without it no "off-cluster source" masquerade or pod short-circuit is written. */
  clusterCIDR?: string;
}

/** Shared by the (many) endpoints without topology hints. */
const NO_HINTS: readonly string[] = [];

const byAddress = (a: ProxyEndpoint, b: ProxyEndpoint): number => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0);

/** Trims and normalizes; invalid entries are ignored, as kube-proxy ignores them. */
function normalizeSourceRanges(ranges: readonly string[] | undefined): string[] {
  const out: string[] = [];
  for (const raw of ranges ?? []) {
    const text = raw.trim();
    try {
      out.push(formatCidr(parseCidr(text.includes('/') ? text : `${text}/32`, false)));
    } catch {
      // An invalid range is an API validation problem, not a reason to drop the service.
    }
  }
  return out;
}

function endpointsForPort(slices: readonly EndpointSlice[], port: ServicePort, nodeName: string): ProxyEndpoint[] {
  const portName = port.name ?? '';
  const protocol = port.protocol ?? 'TCP';
  const all: ProxyEndpoint[] = [];
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4') continue;
    // The slice's port carries the targetPort resolved for the pods in that slice, so a named
    // targetPort resolves per endpoint.
    const sp = slice.ports?.find((p) => (p.name ?? '') === portName && (p.protocol ?? 'TCP') === protocol);
    if (sp?.port === undefined) continue;
    for (const ep of slice.endpoints) {
      const ip = ep.addresses[0];
      if (ip === undefined || !isIPv4(ip)) continue;
      const c = ep.conditions ?? {};
      const ready = c.ready ?? true;
      const address = `${ip}:${sp.port}`;
      all.push({
        ip,
        port: sp.port,
        address,
        isLocal: ep.nodeName !== undefined && ep.nodeName === nodeName,
        ready,
        serving: c.serving ?? true,
        terminating: c.terminating ?? false,
        nodeName: ep.nodeName,
        zone: ep.zone,
        zoneHints: ep.hints?.forZones?.map((z) => z.name) ?? NO_HINTS,
        nodeHints: ep.hints?.forNodes?.map((n) => n.name) ?? NO_HINTS,
      });
    }
  }
  // Sorted stably, an address listed twice (in two slices, or twice in one) has its entries side by side.
  all.sort(byAddress);
  for (let i = 1; i < all.length; i++) if (all[i].address === all[i - 1].address) return withoutDuplicates(all);
  return all;
}

/** One entry per address of a sorted list: the last ready one, else the first. */
function withoutDuplicates(sorted: readonly ProxyEndpoint[]): ProxyEndpoint[] {
  const out: ProxyEndpoint[] = [];
  for (const ep of sorted) {
    const last = out.length - 1;
    if (last < 0 || out[last].address !== ep.address) out.push(ep);
    else if (ep.ready) out[last] = ep;
  }
  return out;
}

function countLocalReady(endpoints: readonly ProxyEndpoint[]): number {
  let n = 0;
  for (const ep of endpoints) if (ep.isLocal && ep.ready && !ep.terminating) n++;
  return n;
}

interface BuildContext {
  nodeName: string;
  zone: string | undefined;
  nodeIPs: readonly string[];
}

function nodeContext(input: ProxyStateInput): BuildContext {
  const nodeIPs = input.nodeIPs ?? (input.node.status?.addresses ?? []).filter((a) => a.type !== 'Hostname').map((a) => a.address);
  return { nodeName: input.node.metadata.name, zone: input.node.metadata.labels?.[ZONE_LABEL], nodeIPs };
}

const serviceKey = (svc: Service): string => `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
const sliceServiceKey = (slice: EndpointSlice): string | undefined => {
  const svc = slice.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc ? `${slice.metadata.namespace ?? 'default'}/${svc}` : undefined;
};

/** Keys of objects seen before: the same string instance each sync, so map lookups do not rehash it. */
function memoKey<T extends object>(memo: WeakMap<T, string | undefined>, key: (o: T) => string | undefined): (o: T) => string | undefined {
  return (o) => {
    if (memo.has(o)) return memo.get(o);
    const k = key(o);
    memo.set(o, k);
    return k;
  };
}

function slicesByService(endpointSlices: readonly EndpointSlice[], keyOf: (slice: EndpointSlice) => string | undefined = sliceServiceKey): Map<string, EndpointSlice[]> {
  const out = new Map<string, EndpointSlice[]>();
  for (const slice of endpointSlices) {
    const key = keyOf(slice);
    if (!key) continue;
    const list = out.get(key);
    if (list) list.push(slice);
    else out.set(key, [slice]);
  }
  return out;
}

/** The service ports of one Service; empty for headless and ExternalName services. */
function buildServicePorts(svc: Service, slices: readonly EndpointSlice[], ctx: BuildContext): ProxyServicePort[] {
  const { nodeName, zone, nodeIPs } = ctx;
  const spec = svc.spec;
  const type = spec.type ?? 'ClusterIP';
  const clusterIP = spec.clusterIP ?? spec.clusterIPs?.[0] ?? '';
  // Headless and ExternalName services have no virtual IP to program.
  if (type === 'ExternalName' || !isIPv4(clusterIP)) return [];
  const namespace = svc.metadata.namespace ?? 'default';
  const service = `${namespace}/${svc.metadata.name}`;
  const externalIPs = (spec.externalIPs ?? []).filter(isIPv4);
  const loadBalancerIPs = type === 'LoadBalancer' ? (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '').filter(isIPv4) : [];
  const hasNodePorts = type === 'NodePort' || type === 'LoadBalancer';
  const loadBalancerSourceRanges = loadBalancerIPs.length > 0 ? normalizeSourceRanges(spec.loadBalancerSourceRanges) : [];
  const sourceRangesAllowNode = loadBalancerSourceRanges.some((r) => nodeIPs.some((ip) => isIPv4(ip) && contains(parseCidr(r), parseIPv4(ip))));
  const affinityTimeoutSeconds = spec.sessionAffinity === 'ClientIP' ? (spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS) : 0;
  const out: ProxyServicePort[] = [];
  for (const port of spec.ports ?? []) {
    const nodePort = hasNodePorts ? (port.nodePort ?? 0) : 0;
    const externallyAccessible = nodePort !== 0 || externalIPs.length > 0 || loadBalancerIPs.length > 0;
    const externalPolicyLocal = externallyAccessible && spec.externalTrafficPolicy === 'Local';
    const internalPolicyLocal = spec.internalTrafficPolicy === 'Local';
    // External traffic needs the Cluster set even under eTP=Local: pods and the node itself are
    // short-circuited to all endpoints.
    const usesClusterEndpoints = !internalPolicyLocal || externallyAccessible;
    const usesLocalEndpoints = internalPolicyLocal || externalPolicyLocal;
    const endpoints = endpointsForPort(slices, port, nodeName);
    const cat = categorizeEndpoints(endpoints, { cluster: usesClusterEndpoints, local: usesLocalEndpoints }, nodeName, zone);
    const portName = port.name ?? '';
    const key = portName ? `${service}:${portName}` : service;
    const protocol = (port.protocol ?? 'TCP').toLowerCase() as L4Protocol;
    out.push({
      service,
      namespace,
      name: svc.metadata.name,
      portName,
      key,
      id: `${key}/${protocol}`,
      protocol,
      clusterIP,
      port: port.port,
      nodePort,
      externalIPs,
      loadBalancerIPs,
      loadBalancerSourceRanges,
      sourceRangesAllowNode,
      externalPolicyLocal,
      internalPolicyLocal,
      healthCheckNodePort: (type === 'LoadBalancer' || type === 'NodePort') && externalPolicyLocal ? (spec.healthCheckNodePort ?? 0) : 0,
      affinityTimeoutSeconds,
      externallyAccessible,
      ...cat,
      localReadyEndpoints: countLocalReady(endpoints),
      usesClusterEndpoints,
      usesLocalEndpoints,
    });
  }
  return out;
}

const byId = (a: ProxyServicePort, b: ProxyServicePort): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function assemble(ctx: BuildContext, clusterCIDR: string | undefined, servicePorts: ProxyServicePort[]): ProxyState {
  servicePorts.sort(byId);
  let endpointCount = 0;
  for (const sp of servicePorts) endpointCount += sp.reachableEndpoints.length;
  return { nodeName: ctx.nodeName, nodeIPs: ctx.nodeIPs, clusterCIDR, servicePorts, endpointCount };
}

export function buildProxyState(input: ProxyStateInput): ProxyState {
  const ctx = nodeContext(input);
  const slices = slicesByService(input.endpointSlices);
  const servicePorts: ProxyServicePort[] = [];
  for (const svc of input.services) {
    servicePorts.push(...buildServicePorts(svc, slices.get(serviceKey(svc)) ?? [], ctx));
  }
  return assemble(ctx, input.clusterCIDR, servicePorts);
}

export interface ProxyStateBuilder {
  build(input: ProxyStateInput): ProxyState;
}

/**
 * buildProxyState with memory: a Service whose object and EndpointSlice objects are the very same
 * objects as in the previous build (sources keep unchanged objects, as informer caches do) keeps
 * its ProxyServicePort objects, so renderers can recognise unchanged service ports by identity.
 * When the input arrays differ from the previous ones only in objects replaced in place (the
 * common one-service change), only the services they belong to are looked at.
 */
export function createProxyStateBuilder(): ProxyStateBuilder {
  type Entry = { svc: Service; slices: readonly EndpointSlice[]; ports: ProxyServicePort[] };
  let cache = new Map<string, Entry>();
  let lastContext = '';
  let lastServices: readonly Service[] = [];
  let lastSlices: readonly EndpointSlice[] = [];
  let slicesByKey = new Map<string, EndpointSlice[]>();
  // The last sorted result and each id's place in it: a sync that only replaces service ports
  // with same-id ones patches that array instead of sorting 10k ids again.
  let last: ProxyState | undefined;
  let indexOf = new Map<string, number>();
  const keyOfService = memoKey(new WeakMap<Service, string | undefined>(), serviceKey);
  const keyOfSlice = memoKey(new WeakMap<EndpointSlice, string | undefined>(), sliceServiceKey);

  const remember = (input: ProxyStateInput, state: ProxyState): ProxyState => {
    lastServices = input.services.slice();
    lastSlices = input.endpointSlices.slice();
    last = state;
    return state;
  };

  /** The patched state, or undefined when the change is not a same-place replacement of objects. */
  function patch(input: ProxyStateInput, ctx: BuildContext): ProxyState | undefined {
    if (!last || input.services.length !== lastServices.length || input.endpointSlices.length !== lastSlices.length) return undefined;
    const dirty = new Map<string, Service | undefined>();
    for (let i = 0; i < input.services.length; i++) {
      const svc = input.services[i];
      if (svc === lastServices[i]) continue;
      const key = keyOfService(svc) as string;
      if (key !== keyOfService(lastServices[i])) return undefined;
      dirty.set(key, svc);
    }
    const sliceChanges: [string, EndpointSlice, EndpointSlice][] = [];
    for (let i = 0; i < input.endpointSlices.length; i++) {
      const slice = input.endpointSlices[i];
      if (slice === lastSlices[i]) continue;
      const key = keyOfSlice(slice);
      if (key !== keyOfSlice(lastSlices[i])) return undefined;
      if (key === undefined) continue;
      sliceChanges.push([key, lastSlices[i], slice]);
    }
    for (const [key, before, after] of sliceChanges) {
      slicesByKey.set(key, (slicesByKey.get(key) ?? []).map((s) => (s === before ? after : s)));
      if (!dirty.has(key)) dirty.set(key, cache.get(key)?.svc);
    }
    const servicePorts = last.servicePorts.slice();
    let endpointCount = last.endpointCount;
    for (const [key, svc] of dirty) {
      const before = cache.get(key);
      if (!before || !svc) return undefined;
      const own = slicesByKey.get(key) ?? [];
      const ports = buildServicePorts(svc, own, ctx);
      if (ports.length !== before.ports.length || ports.some((sp, i) => sp.id !== before.ports[i].id)) return undefined;
      cache.set(key, { svc, slices: own, ports });
      ports.forEach((sp, i) => {
        servicePorts[indexOf.get(sp.id) as number] = sp;
        endpointCount += sp.reachableEndpoints.length - before.ports[i].reachableEndpoints.length;
      });
    }
    return { nodeName: ctx.nodeName, nodeIPs: ctx.nodeIPs, clusterCIDR: input.clusterCIDR, servicePorts, endpointCount };
  }

  return {
    build(input) {
      const ctx = nodeContext(input);
      const contextKey = JSON.stringify([ctx, input.clusterCIDR]);
      if (contextKey !== lastContext) {
        cache = new Map();
        last = undefined;
      }
      lastContext = contextKey;
      const patched = patch(input, ctx);
      if (patched) return remember(input, patched);
      slicesByKey = slicesByService(input.endpointSlices, keyOfSlice);
      const next = new Map<string, Entry>();
      const servicePorts: ProxyServicePort[] = [];
      for (const svc of input.services) {
        const key = keyOfService(svc) as string;
        const own = slicesByKey.get(key) ?? [];
        const before = cache.get(key);
        const entry = before && before.svc === svc && before.slices.length === own.length && before.slices.every((s, i) => s === own[i])
          ? before
          : { svc, slices: own, ports: buildServicePorts(svc, own, ctx) };
        next.set(key, entry);
        for (const sp of entry.ports) servicePorts.push(sp);
      }
      cache = next;
      const state = assemble(ctx, input.clusterCIDR, servicePorts);
      indexOf = new Map(state.servicePorts.map((sp, i) => [sp.id, i]));
      return remember(input, state);
    },
  };
}

// The EndpointSlice controller as a pure function: Services with a selector get slices derived from
// the pods they select, as kube-controller-manager's EndpointSlice controller writes them
// (pkg/controller/endpointslice: podToEndpoint, getEndpointPorts, one slice per port mapping).
// Services without a selector keep the slices their users wrote. Used by the lab and mesh-control.
import { isIPv4 } from '../model/cidr.ts';
import { matchesServiceSelector } from '../model/selector.ts';
import {
  type Endpoint,
  type EndpointPort,
  type EndpointSlice,
  type Pod,
  SERVICE_NAME_LABEL,
  type Service,
  type ServicePort,
} from '../model/types.ts';

/** The managed-by label, as `endpointslice-controller.k8s.io` marks the upstream controller's slices. */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY = 'endpointslice-controller.weft.dev';

const namespaceOf = (o: { metadata: { namespace?: string } }): string => o.metadata.namespace ?? 'default';

/**
 * A pod without an explicit Ready condition counts as ready: weft runs no kubelet probes, so a pod
 * that has an IP is serving unless its status says otherwise.
 */
function podReady(pod: Pod): boolean {
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  return ready === undefined || ready.status === 'True';
}

/** Terminal pods (Succeeded/Failed) and pods without an IPv4 address are never endpoints. */
function podIP(pod: Pod): string | undefined {
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  const ip = pod.status?.podIP ?? pod.status?.podIPs?.[0]?.ip;
  return ip !== undefined && isIPv4(ip) ? ip : undefined;
}

/** podutil.FindPort: a number is taken as is; a name must match a container port of that protocol. */
function resolveTargetPort(pod: Pod, port: ServicePort): number | undefined {
  const target = port.targetPort ?? port.port;
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  const protocol = port.protocol ?? 'TCP';
  for (const c of pod.spec.containers) {
    for (const cp of c.ports ?? []) if (cp.name === target && (cp.protocol ?? 'TCP') === protocol) return cp.containerPort;
  }
  return undefined;
}

function endpointPorts(service: Service, pod: Pod): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const p of service.spec.ports ?? []) {
    const port = resolveTargetPort(pod, p);
    // A pod lacking a named port is left out of that port's slice (as upstream).
    if (port === undefined) continue;
    out.push({ name: p.name ?? '', protocol: p.protocol ?? 'TCP', port, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) });
  }
  return out;
}

const portMapKey = (ports: EndpointPort[]): string => ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(',');

function podToEndpoint(service: Service, pod: Pod, ip: string): Endpoint {
  // As upstream: serving follows readiness, ready is never true while terminating, and
  // publishNotReadyAddresses makes both true regardless.
  const publish = service.spec.publishNotReadyAddresses === true;
  const serving = publish || podReady(pod);
  const terminating = pod.metadata.deletionTimestamp !== undefined;
  return {
    addresses: [ip],
    conditions: { ready: publish || (serving && !terminating), serving, terminating },
    ...(pod.spec.nodeName ? { nodeName: pod.spec.nodeName } : {}),
    targetRef: { kind: 'Pod', namespace: namespaceOf(pod), name: pod.metadata.name, ...(pod.metadata.uid ? { uid: pod.metadata.uid } : {}) },
  };
}

function managedBySelf(slice: EndpointSlice): boolean {
  return slice.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY;
}

/** Slices of one service, one per distinct resolved port mapping; names reuse `existing` ones. */
function slicesFor(service: Service, pods: readonly Pod[], existing: readonly EndpointSlice[]): EndpointSlice[] {
  const namespace = namespaceOf(service);
  const name = service.metadata.name;
  const groups = new Map<string, { ports: EndpointPort[]; endpoints: Endpoint[] }>();
  for (const pod of pods) {
    if (namespaceOf(pod) !== namespace || !matchesServiceSelector(service.spec.selector, pod.metadata.labels)) continue;
    const ip = podIP(pod);
    if (ip === undefined) continue;
    const ports = endpointPorts(service, pod);
    const key = portMapKey(ports);
    const group = groups.get(key) ?? { ports, endpoints: [] };
    group.endpoints.push(podToEndpoint(service, pod, ip));
    groups.set(key, group);
  }
  // A selector that matches nothing still gets one empty slice, as upstream keeps a placeholder.
  if (groups.size === 0) groups.set(portMapKey([]), { ports: [], endpoints: [] });

  const previous = new Map<string, string>();
  for (const s of existing) {
    if (managedBySelf(s) && namespaceOf(s) === namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === name) previous.set(portMapKey(s.ports ?? []), s.metadata.name);
  }
  const used = new Set<string>();
  const ordered = [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const named = ordered.map(([key, g]) => {
    const kept = previous.get(key);
    if (kept !== undefined) used.add(kept);
    return { key, g, name: kept };
  });
  let n = 1;
  const freshName = (): string => {
    for (;; n++) {
      const candidate = n === 1 ? `${name}-weft` : `${name}-weft-${n}`;
      if (!used.has(candidate)) {
        used.add(candidate);
        return candidate;
      }
    }
  };
  return named.map(({ g, name: sliceName }) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: sliceName ?? freshName(),
      namespace,
      labels: { [SERVICE_NAME_LABEL]: name, [MANAGED_BY_LABEL]: MANAGED_BY },
    },
    addressType: 'IPv4',
    endpoints: g.endpoints.sort((a, b) => (a.addresses[0] < b.addresses[0] ? -1 : a.addresses[0] > b.addresses[0] ? 1 : 0)),
    ports: g.ports,
  }));
}

/**
 * The EndpointSlices of the cluster: derived ones for every Service with a selector (replacing the
 * slices this controller made before), plus every slice not made by this controller, untouched
 * (the user's slices for selector-less Services, and any other hand-written ones).
 */
export function deriveEndpointSlices(services: Service[], pods: Pod[], existing: EndpointSlice[] = []): EndpointSlice[] {
  const out: EndpointSlice[] = existing.filter((s) => !managedBySelf(s));
  for (const service of services) {
    if ((service.spec.type ?? 'ClusterIP') === 'ExternalName') continue;
    if (Object.keys(service.spec.selector ?? {}).length === 0) continue;
    out.push(...slicesFor(service, pods, existing));
  }
  return out;
}

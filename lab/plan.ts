// From manifests to what the lab builds: which nodes exist, which pod runs where, which hosts sit
// on the underlay. Pure: no kernel, no files.
//
// Nodes: the Node manifests first (in order), then node1, node2, ... until there are --nodes,
// then any other node a pod's spec.nodeName names. Pods without spec.nodeName are spread
// round-robin, in manifest order (Deployments expanded in place), over the schedulable nodes.
import { expandDeployment } from '../mesh-control/model/parse.ts';
import { DEPLOYMENT_ANNOTATION } from '../mesh-control/model/deployment.ts';
import type { ClusterObject, ContainerPort, Deployment, EndpointSlice, Namespace, NetworkPolicy, Pod, Service } from '../mesh-control/model/types.ts';
import { REQUESTED_IP_ANNOTATION } from '../mesh-control/model/types.ts';
import { inLoadBalancerPool, LB_POOL } from './service-addresses.ts';
import { LabError } from './errors.ts';

export interface PlannedNode { name: string; podCIDR?: string; unschedulable: boolean }
export interface PlannedPod {
  namespace: string;
  name: string;
  node: string;
  labels: Record<string, string>;
  ports: ContainerPort[];
  requestedIP?: string;
  owner?: string;
  graceSeconds?: number;
}
export interface PlannedHost { name: string; ip?: string; ports: ContainerPort[] }
/** Objects the lab keeps as they are (Services are allocated later, by service-addresses.ts). */
export interface PlannedObjects {
  services: Service[];
  endpointSlices: EndpointSlice[];
  deployments: Deployment[];
  networkPolicies: NetworkPolicy[];
  namespaces: Namespace[];
}
export interface LabPlan extends PlannedObjects { nodes: PlannedNode[]; pods: PlannedPod[]; hosts: PlannedHost[] }

export function podPorts(pod: Pod): ContainerPort[] {
  return pod.spec.containers.flatMap((c) => c.ports ?? []).map((p) => ({ ...p, protocol: p.protocol ?? 'TCP' }));
}

export function plannedPod(p: Pod, node: string): PlannedPod {
  const requestedIP = p.metadata.annotations?.[REQUESTED_IP_ANNOTATION];
  const owner = p.metadata.annotations?.[DEPLOYMENT_ANNOTATION];
  const graceSeconds = p.spec.terminationGracePeriodSeconds;
  return {
    namespace: p.metadata.namespace ?? 'default', name: p.metadata.name, node, labels: p.metadata.labels ?? {}, ports: podPorts(p),
    ...(requestedIP ? { requestedIP } : {}), ...(owner ? { owner } : {}), ...(graceSeconds !== undefined ? { graceSeconds } : {}),
  };
}

/** Pods (Deployments expanded in place), Services and the other kept objects, in manifest order. */
export function splitObjects(objects: ClusterObject[]): PlannedObjects & { pods: Pod[] } {
  const out: PlannedObjects & { pods: Pod[] } = { pods: [], services: [], endpointSlices: [], deployments: [], networkPolicies: [], namespaces: [] };
  for (const o of objects) {
    if (o.kind === 'Pod') out.pods.push(o);
    else if (o.kind === 'Deployment') {
      out.deployments.push(o);
      out.pods.push(...expandDeployment(o));
    } else if (o.kind === 'Service') out.services.push(o);
    else if (o.kind === 'EndpointSlice') out.endpointSlices.push(o);
    else if (o.kind === 'NetworkPolicy') out.networkPolicies.push(o);
    else if (o.kind === 'Namespace') out.namespaces.push(o);
  }
  return out;
}

export function planLab(objects: ClusterObject[], nodeCount: number): LabPlan {
  const nodes: PlannedNode[] = [];
  const addNode = (name: string, podCIDR?: string, unschedulable = false) => {
    if (!nodes.some((n) => n.name === name)) nodes.push({ name, podCIDR, unschedulable });
  };
  const { pods, ...kept } = splitObjects(objects);
  const hosts: PlannedHost[] = [];
  for (const o of objects) {
    if (o.kind === 'Node') addNode(o.metadata.name, o.spec?.podCIDR ?? o.spec?.podCIDRs?.[0], o.spec?.unschedulable ?? false);
    else if (o.kind === 'LabHost') hosts.push({ name: o.metadata.name, ip: o.spec.ip, ports: o.spec.ports ?? [] });
  }
  for (let i = 1; nodes.length < nodeCount; i++) addNode(`node${i}`);
  for (const p of pods) if (p.spec.nodeName) addNode(p.spec.nodeName);

  const schedulable = nodes.filter((n) => !n.unschedulable);
  if (schedulable.length === 0 && pods.some((p) => !p.spec.nodeName)) {
    throw new LabError('WEFT_LAB_PLAN', 'no schedulable node for pods without spec.nodeName');
  }
  const seen = new Set<string>();
  let next = 0;
  const planned = pods.map((p): PlannedPod => {
    const namespace = p.metadata.namespace ?? 'default';
    const key = `${namespace}/${p.metadata.name}`;
    if (seen.has(key)) throw new LabError('WEFT_LAB_PLAN', `pod ${key} is declared twice`);
    seen.add(key);
    return plannedPod(p, p.spec.nodeName ?? schedulable[next++ % schedulable.length].name);
  });
  const hostNames = new Set<string>();
  for (const h of hosts) {
    if (hostNames.has(h.name)) throw new LabError('WEFT_LAB_PLAN', `LabHost ${h.name} is declared twice`);
    hostNames.add(h.name);
    if (h.ip && inLoadBalancerPool(h.ip)) throw new LabError('WEFT_LAB_PLAN', `LabHost ${h.name} address ${h.ip} is inside the lab's LoadBalancer pool ${LB_POOL}`);
  }
  return { nodes, pods: planned, hosts, ...kept };
}

// From manifests to what the lab builds: which nodes exist, which pod runs where, which hosts sit
// on the underlay. Pure: no kernel, no files.
//
// Nodes: the Node manifests first (in order), then node1, node2, ... until there are --nodes,
// then any other node a pod's spec.nodeName names. Pods without spec.nodeName are spread
// round-robin, in manifest order (Deployments expanded in place), over the schedulable nodes.
import { expandDeployment } from '../mesh-control/model/parse.ts';
import { type ClusterObject, type ContainerPort, type Pod, REQUESTED_IP_ANNOTATION } from '../mesh-control/model/types.ts';
import { LabError } from './errors.ts';

export interface PlannedNode { name: string; podCIDR?: string; unschedulable: boolean }
export interface PlannedPod {
  namespace: string;
  name: string;
  node: string;
  labels: Record<string, string>;
  ports: ContainerPort[];
  requestedIP?: string;
}
export interface PlannedHost { name: string; ip?: string; ports: ContainerPort[] }
export interface LabPlan { nodes: PlannedNode[]; pods: PlannedPod[]; hosts: PlannedHost[] }

export function podPorts(pod: Pod): ContainerPort[] {
  return pod.spec.containers.flatMap((c) => c.ports ?? []).map((p) => ({ ...p, protocol: p.protocol ?? 'TCP' }));
}

export function planLab(objects: ClusterObject[], nodeCount: number): LabPlan {
  const nodes: PlannedNode[] = [];
  const addNode = (name: string, podCIDR?: string, unschedulable = false) => {
    if (!nodes.some((n) => n.name === name)) nodes.push({ name, podCIDR, unschedulable });
  };
  const pods: Pod[] = [];
  const hosts: PlannedHost[] = [];
  for (const o of objects) {
    if (o.kind === 'Node') addNode(o.metadata.name, o.spec?.podCIDR ?? o.spec?.podCIDRs?.[0], o.spec?.unschedulable ?? false);
    else if (o.kind === 'Pod') pods.push(o);
    else if (o.kind === 'Deployment') pods.push(...expandDeployment(o));
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
    const node = p.spec.nodeName ?? schedulable[next++ % schedulable.length].name;
    const requestedIP = p.metadata.annotations?.[REQUESTED_IP_ANNOTATION];
    return { namespace, name: p.metadata.name, node, labels: p.metadata.labels ?? {}, ports: podPorts(p), ...(requestedIP ? { requestedIP } : {}) };
  });
  const hostNames = new Set<string>();
  for (const h of hosts) {
    if (hostNames.has(h.name)) throw new LabError('WEFT_LAB_PLAN', `LabHost ${h.name} is declared twice`);
    hostNames.add(h.name);
  }
  return { nodes, pods: planned, hosts };
}

// The lab as the cluster's API server: `<lab>/cluster.json` holds what a node agent reads
// (`weft agent --state`): Nodes, Services (allocated), EndpointSlices (derived from the pods, plus the
// user's), Pods, NetworkPolicies and Namespaces, as one `kind: List`, replaced atomically.
import { rename, writeFile } from 'node:fs/promises';
import { deriveEndpointSlices } from '../mesh-control/controllers/endpoint-slices.ts';
import type { ClusterObject, Node, Pod } from '../mesh-control/model/types.ts';
import type { LabLayout } from './layout.ts';
import type { LabNodeState, LabPodState, LabState } from './state.ts';

export function nodeObject(node: Pick<LabNodeState, 'name' | 'address' | 'podCIDR'>): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node.name },
    spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
    status: { addresses: [{ type: 'InternalIP', address: node.address }, { type: 'Hostname', address: node.name }] },
  };
}

/** A running lab pod as the API server would show it: Running, Ready, with its IP and node. */
export function podObject(pod: LabPodState, nodes: readonly LabNodeState[]): Pod {
  const hostIP = nodes.find((n) => n.name === pod.node)?.address;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: pod.name,
      namespace: pod.namespace,
      labels: pod.labels,
      uid: pod.containerID.slice(0, 32),
      ...(pod.deletionTimestamp ? { deletionTimestamp: pod.deletionTimestamp } : {}),
    },
    spec: {
      nodeName: pod.node,
      containers: [{ name: 'main', ports: pod.ports }],
      ...(pod.graceSeconds !== undefined ? { terminationGracePeriodSeconds: pod.graceSeconds } : {}),
    },
    status: {
      phase: 'Running',
      podIP: pod.ip,
      podIPs: [{ ip: pod.ip }],
      ...(hostIP ? { hostIP } : {}),
      conditions: [{ type: 'Ready', status: 'True' }],
    },
  };
}

export function clusterObjects(state: LabState): ClusterObject[] {
  const pods = state.pods.map((p) => podObject(p, state.nodes));
  return [
    ...state.namespaces,
    ...state.nodes.map(nodeObject),
    ...state.services,
    ...deriveEndpointSlices(state.services, pods, state.endpointSlices),
    ...pods,
    ...state.networkPolicies,
  ];
}

export async function writeClusterFile(layout: LabLayout, state: LabState): Promise<void> {
  const text = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: clusterObjects(state) }, null, 1) + '\n';
  const tmp = `${layout.clusterFile}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, layout.clusterFile);
}

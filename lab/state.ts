// The lab's record of what it created, read by every `weft lab` command after `up`. Written
// atomically (temp file + rename) so a concurrent reader never sees half a file.
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { ContainerPort, Deployment, EndpointSlice, Namespace, NetworkPolicy, Service } from '../mesh-control/model/types.ts';
import type { Backend } from '../cni/node-network/render.ts';
import { LabError } from './errors.ts';
import type { LabLayout } from './layout.ts';
import type { UnderlayMode } from './underlay.ts';

export interface LabNodeState {
  name: string;
  /** Position on the underlay (addresses derive from it); never reused while the lab is up. */
  index: number;
  podCIDR: string;
  /** Underlay address. */
  address: string;
  netns: string;
  dir: string;
  conflist: string;
  pid?: number;
}

export interface LabPodState {
  namespace: string;
  name: string;
  node: string;
  ip: string;
  labels: Record<string, string>;
  ports: ContainerPort[];
  netns: string;
  containerID: string;
  /** Unix socket of the pod's server, through which probes are sent from inside the pod. */
  control: string;
  pid?: number;
  /** The Deployment that owns the pod (its replica count decides whether the pod stays). */
  owner?: string;
  /** spec.terminationGracePeriodSeconds (Kubernetes' default 30 when absent). */
  graceSeconds?: number;
  /** Set when the pod is terminating, to its deadline (mesh-control's deletionTimestamp): its endpoint turns ready:false, serving:true, terminating:true. */
  deletionTimestamp?: string;
}

export interface LabHostState {
  name: string;
  index: number;
  ip: string;
  ports: ContainerPort[];
  netns: string;
  control: string;
  pid?: number;
}

export type ProxyMode = 'iptables' | 'nftables';

export interface LabState {
  dir: string;
  prefix: string;
  underlay: UnderlayMode;
  backend: Backend;
  clusterCIDR: string;
  nodeMask: number;
  nodes: LabNodeState[];
  pods: LabPodState[];
  hosts: LabHostState[];
  /** How each node's agent programs Services. */
  proxyMode: ProxyMode;
  serviceCIDR: string;
  /** Services as mesh-control stores them (clusterIP, nodePorts allocated; LB ingress from the lab), read back on every change. */
  services: Service[];
  /** EndpointSlices the user wrote (mesh-control derives the others from the pods). */
  endpointSlices: EndpointSlice[];
  deployments: Deployment[];
  networkPolicies: NetworkPolicy[];
  namespaces: Namespace[];
  /** Keys (`Kind/ns/name`) of the objects the lab wrote to mesh-control, so it deletes only its own. */
  published?: string[];
}

export async function loadState(layout: LabLayout): Promise<LabState> {
  let text: string;
  try {
    text = await readFile(layout.stateFile, 'utf8');
  } catch {
    throw new LabError('WEFT_LAB_NOT_UP', `no lab at ${layout.dir} (run weft lab up first)`);
  }
  return JSON.parse(text) as LabState;
}

export async function saveState(layout: LabLayout, state: LabState): Promise<void> {
  const tmp = `${layout.stateFile}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n');
  await rename(tmp, layout.stateFile);
}

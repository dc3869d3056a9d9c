// The lab's verbs: up (underlay, nodes, hosts, pods, servers), down, and node add/remove at
// runtime. Everything the lab creates carries its prefix, so down — and up after a crash — finds
// and removes it all even without a state file.
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClusterObject } from '../mesh-control/model/types.ts';
import { mapLimit } from './dial.ts';
import { LabError } from './errors.ts';
import { type LabLayout, labLayout } from './layout.ts';
import { addNetns, deleteNetns, listNetns, netnsPids } from './netns.ts';
import { applyServices, checkServices, startControl, stopControl, syncControl } from './control.ts';
import { syncExternalRoutes } from './external-routes.ts';
import { backendFor, leaseNodeSubnet, type NodeNetworkSettings, prepareLabNode, releaseNodeSubnet, startNodeAgent } from './node.ts';
import { type LabPlan, planLab, type PlannedHost, type PlannedPod } from './plan.ts';
import { addPod } from './pod.ts';
import { distEntry, startHostProcess, stopByPidFile, stopProcesses } from './processes.ts';
import { withLabLock } from './lock.ts';
import { controlSocket, servedPorts, startPodServer } from './servers.ts';
import { DEFAULT_SERVICE_CIDR } from './service-addresses.ts';
import { type LabHostState, type LabNodeState, type LabPodState, type LabState, loadState, type ProxyMode, saveState } from './state.ts';
import { attachToUnderlay, createUnderlay, planAttachment, type UnderlayMode } from './underlay.ts';

/** Pods wired at once: each ADD is an exec into the node plus a few `ip` batches. */
const POD_CONCURRENCY = 4;

export interface LabUpOptions {
  dir: string;
  nodes: number;
  clusterCIDR: string;
  nodeMask: number;
  underlay: UnderlayMode;
  proxyMode: ProxyMode;
  /** Default 10.96.0.0/16. */
  serviceCIDR?: string;
  objects: ClusterObject[];
  log?: (line: string) => void;
}

/**
 * Kills every process in the lab's namespaces, its kubelet and control process, deletes the namespaces and
 * the lab directory.
 */
export async function cleanupLab(layout: LabLayout): Promise<void> {
  const names = await listNetns(layout.prefix);
  const pids = (await Promise.all(names.map(netnsPids))).flat();
  // The kubelet first: it must not create pods while the namespaces go.
  await stopByPidFile(layout.kubeletPidFile, layout.dir);
  await Promise.all([stopProcesses(pids), stopControl(layout)]);
  await Promise.all(names.map(deleteNetns));
  // Only what the lab writes: WEFT_LAB_DIR may point somewhere shared by mistake.
  await Promise.all(['state.json', 'lock', 'kubelet.pid', 'control', 'control.sock', 'leases', 'logs', 's', 'nodes'].map((e) => rm(join(layout.dir, e), { recursive: true, force: true })));
  await rmdir(layout.dir).catch(() => undefined);
}

function settingsOf(state: Pick<LabState, 'underlay' | 'backend' | 'clusterCIDR' | 'nodeMask' | 'proxyMode' | 'serviceCIDR'>): NodeNetworkSettings {
  return { underlay: state.underlay, backend: state.backend, clusterCIDR: state.clusterCIDR, nodeMask: state.nodeMask, proxyMode: state.proxyMode, serviceCIDR: state.serviceCIDR };
}

/**
 * Makes a change of the lab visible: mesh-control (which the agents follow), the state file and
 * the outside hosts' routes to LoadBalancer IPs and externalIPs.
 */
export async function publish(layout: LabLayout, state: LabState): Promise<void> {
  await syncControl(state, layout);
  await saveState(layout, state);
  await syncExternalRoutes(layout, state);
}

async function createHost(layout: LabLayout, underlay: UnderlayMode, host: PlannedHost, index: number): Promise<LabHostState> {
  const netns = layout.hostNetns(host.name);
  const at = planAttachment(underlay, 'host', index, host.ip);
  await addNetns(netns);
  await attachToUnderlay(layout.underlayNetns, underlay, netns, `hs${index}`, at);
  const key = `host/${host.name}`;
  const control = controlSocket(layout, key);
  const pid = await startPodServer(layout, netns, key, host.ports, control);
  return { name: host.name, index, ip: at.ip, ports: host.ports, netns, control, pid };
}

export async function createPod(layout: LabLayout, node: LabNodeState, pod: PlannedPod): Promise<LabPodState> {
  const netns = layout.podNetns(pod.namespace, pod.name);
  const { ip, containerID } = await addPod(node, pod, netns);
  const key = `${pod.namespace}/${pod.name}`;
  const control = controlSocket(layout, key);
  const pid = await startPodServer(layout, netns, key, pod.ports, control);
  return {
    namespace: pod.namespace, name: pod.name, node: pod.node, ip, labels: pod.labels, ports: pod.ports, netns, containerID, control, pid,
    ...(pod.owner ? { owner: pod.owner } : {}), ...(pod.graceSeconds !== undefined ? { graceSeconds: pod.graceSeconds } : {}),
  };
}

/**
 * Leases (one at a time: stable subnet order), then the node namespaces, then — once mesh-control
 * holds every node — their agents, in parallel.
 */
async function createNodes(layout: LabLayout, state: LabState, nodes: { name: string; index: number; podCIDR?: string }[]): Promise<LabNodeState[]> {
  const s = settingsOf(state);
  const subnets: string[] = [];
  for (const n of nodes) subnets.push(await leaseNodeSubnet(layout, s, n.name, addressOf(s.underlay, n.index), n.podCIDR));
  const created = await Promise.all(nodes.map((n, i) => prepareLabNode(layout, s, n.name, n.index, subnets[i])));
  state.nodes.push(...created);
  await publish(layout, state);
  await Promise.all(created.map(async (n) => { n.pid = await startNodeAgent(layout, s, n); }));
  return created;
}

function addressOf(underlay: UnderlayMode, index: number): string {
  return planAttachment(underlay, 'node', index).ip;
}

function warnings(plan: LabPlan): string[] {
  const out: string[] = [];
  for (const p of [...plan.pods.map((x) => ({ key: `${x.namespace}/${x.name}`, ports: x.ports })), ...plan.hosts.map((h) => ({ key: `host/${h.name}`, ports: h.ports }))]) {
    for (const port of servedPorts(p.ports).sctp) out.push(`warning: ${p.key} declares SCTP port ${port}: not served (this kernel has no SCTP sockets)`);
  }
  return out;
}

export async function labUp(opts: LabUpOptions): Promise<LabState> {
  const layout = labLayout(opts.dir);
  const plan = planLab(opts.objects, opts.nodes);
  for (const w of warnings(plan)) opts.log?.(w);
  const serviceCIDR = opts.serviceCIDR ?? DEFAULT_SERVICE_CIDR;
  // Before anything is built: a Service asking for a taken or out-of-range address fails fast.
  const services = checkServices({ services: [], serviceCIDR }, plan.services);
  await cleanupLab(layout);
  await Promise.all([layout.logDir, layout.sockDir, layout.leaseDir].map((d) => mkdir(d, { recursive: true })));
  const state: LabState = {
    dir: layout.dir, prefix: layout.prefix, underlay: opts.underlay, backend: backendFor(opts.underlay),
    clusterCIDR: opts.clusterCIDR, nodeMask: opts.nodeMask, nodes: [], pods: [], hosts: [],
    proxyMode: opts.proxyMode, serviceCIDR, services: [], endpointSlices: plan.endpointSlices, deployments: plan.deployments,
    networkPolicies: plan.networkPolicies, namespaces: plan.namespaces, published: [],
  };
  // Ctrl-C half-way through must not leave namespaces behind.
  const interrupted = () => { void cleanupLab(layout).finally(() => process.exit(130)); };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await startControl(layout, { clusterCIDR: opts.clusterCIDR, nodeMask: opts.nodeMask, serviceCIDR });
    await applyServices(layout, state, services);
    await createUnderlay(layout.underlayNetns, opts.underlay);
    // Agents first (each has the CNI daemon its pods need), then hosts and pods.
    await createNodes(layout, state, plan.nodes.map((n, i) => ({ name: n.name, index: i + 1, podCIDR: n.podCIDR })));
    await saveState(layout, state);
    state.hosts = await Promise.all(plan.hosts.map((h, i) => createHost(layout, opts.underlay, h, i + 1)));
    const byName = new Map(state.nodes.map((n) => [n.name, n]));
    state.pods = await mapLimit(plan.pods, POD_CONCURRENCY, (p) => createPod(layout, byName.get(p.node) as LabNodeState, p));
    await publish(layout, state);
    // Last: from here on it runs what users write to mesh-control directly (kubelet.ts).
    await startHostProcess([process.execPath, distEntry('weft.mjs'), 'lab', 'kubelet', '--lab-dir', layout.dir],
      join(layout.logDir, 'kubelet.log'), layout.kubeletPidFile, 'the lab kubelet');
    return state;
  } catch (err) {
    await cleanupLab(layout);
    throw err;
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

export async function labDown(dir: string): Promise<void> {
  const layout = labLayout(dir);
  const state = await loadState(layout).catch(() => undefined);
  if (state) await stopProcesses([...state.nodes, ...state.pods, ...state.hosts].map((x) => x.pid ?? 0));
  await stopControl(layout);
  await cleanupLab(layout);
}

export function labNodeAdd(dir: string, name: string): Promise<LabNodeState> {
  const layout = labLayout(dir);
  return withLabLock(layout, () => nodeAddLocked(layout, name));
}

async function nodeAddLocked(layout: LabLayout, name: string): Promise<LabNodeState> {
  const state = await loadState(layout);
  if (state.nodes.some((n) => n.name === name)) throw new LabError('WEFT_LAB_NODE', `failed to add node ${name}: it exists`);
  const index = Math.max(0, ...state.nodes.map((n) => n.index)) + 1;
  const [node] = await createNodes(layout, state, [{ name, index }]);
  await saveState(layout, state);
  return node;
}

/**
 * Removes a node like a machine switched off: its pods and process stop, its namespace goes, and
 * its lease is released so every other node drops the route to its subnet.
 */
export function labNodeRemove(dir: string, name: string): Promise<void> {
  const layout = labLayout(dir);
  return withLabLock(layout, () => nodeRemoveLocked(layout, name));
}

async function nodeRemoveLocked(layout: LabLayout, name: string): Promise<void> {
  const state = await loadState(layout);
  const node = state.nodes.find((n) => n.name === name);
  if (!node) throw new LabError('WEFT_LAB_NODE', `failed to remove node ${name}: no such node (nodes: ${state.nodes.map((n) => n.name).join(', ')})`);
  const pods = state.pods.filter((p) => p.node === name);
  await stopProcesses([node.pid ?? 0, ...pods.map((p) => p.pid ?? 0)]);
  await releaseNodeSubnet(layout, settingsOf(state), name);
  await Promise.all([...pods.map((p) => deleteNetns(p.netns)), deleteNetns(node.netns)]);
  await rm(node.dir, { recursive: true, force: true });
  state.nodes = state.nodes.filter((n) => n.name !== name);
  state.pods = state.pods.filter((p) => p.node !== name);
  await publish(layout, state);
}


// mesh-control as the lab's API server. `lab up` runs `weft control` in the host namespace (nothing
// of the host's network is touched: it serves a unix socket in the lab directory, which the node
// namespaces reach through the file system), the node agents join it with one-time tokens and
// stream their views from it, and the lab writes what a kubelet and the cloud's LB controller
// would: Nodes (InternalIP, podCIDR from the lease), Pods with their status (podIP, hostIP,
// Ready), the removal of the pods it stopped, Services with status.loadBalancer from the lab's
// pool, and the user's Namespaces, EndpointSlices, NetworkPolicies and Deployments. mesh-control
// allocates clusterIPs/nodePorts and derives the EndpointSlices.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createControlClient, type ControlClient, unary } from '../mesh-control/client.ts';
import { readClientConfig } from '../mesh-control/client-config.ts';
import { DEPLOYMENT_ANNOTATION, expandDeployment } from '../mesh-control/model/deployment.ts';
import { namespacedName, objectKey } from '../mesh-control/model/objects.ts';
import type { ClusterObject, Deployment, Node, Pod, Service } from '../mesh-control/model/types.ts';
import { LabError } from './errors.ts';
import type { LabLayout } from './layout.ts';
import { distEntry, stopByPidFile, stopProcesses } from './processes.ts';
import { allocateServices, ingressIPs, loadBalancerIngress } from './service-addresses.ts';
import type { LabNodeState, LabPodState, LabState } from './state.ts';

const START_TIMEOUT_MS = 15_000;

export interface ControlSettings {
  clusterCIDR: string;
  nodeMask: number;
  serviceCIDR: string;
}

/**
 * Starts `weft control` for the lab; resolves once it serves (it has written its admin
 * credential: it prints no "ready", and its log goes on on stderr).
 */
export async function startControl(layout: LabLayout, s: ControlSettings): Promise<number> {
  await mkdir(layout.controlDir, { recursive: true, mode: 0o700 });
  await rm(layout.controlSocket, { force: true });
  await rm(layout.adminConfig, { force: true });
  const argv = [distEntry('weft.mjs'), 'control', '--data-dir', join(layout.controlDir, 'data'), '--listen', `unix:${layout.controlSocket}`,
    '--ops-listen', 'off', '--admin-config', layout.adminConfig, '--cluster-cidr', s.clusterCIDR, '--node-mask', String(s.nodeMask),
    '--service-cidr', s.serviceCIDR];
  const logFile = join(layout.logDir, 'control.log');
  const log = openSync(logFile, 'a');
  // glibc's trim threshold fixed: freed snapshot buffers go back to the system (mesh-control/README.md).
  const env = { MALLOC_TRIM_THRESHOLD_: '131072', ...process.env };
  const child = spawn(process.execPath, argv, { detached: true, stdio: ['ignore', log, log], env });
  closeSync(log);
  const pid = child.pid as number;
  writeFileSync(layout.controlPidFile, `${pid}\n`);
  let exited: string | undefined;
  child.on('exit', (code, signal) => { exited = String(signal ?? code); });
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!existsSync(layout.adminConfig)) {
    if (exited !== undefined || Date.now() > deadline) {
      await stopProcesses([pid]);
      throw new LabError('WEFT_LAB_PROCESS', `failed to start weft control: ${exited !== undefined ? `exited with ${exited}` : `not serving after ${START_TIMEOUT_MS} ms`} (log: ${logFile})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return pid;
}

/** Stops the lab's control process (also a crashed lab's: found by its pid file). */
export function stopControl(layout: LabLayout): Promise<void> {
  return stopByPidFile(layout.controlPidFile, layout.controlDir);
}

/** Calls the lab's control service with its admin credential. */
export async function withControl<T>(layout: LabLayout, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const client = createControlClient(`unix:${layout.controlSocket}`, readClientConfig(layout.adminConfig));
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export function joinToken(layout: LabLayout, node: string): Promise<string> {
  return withControl(layout, (c) => unary<{ token: string }>(c, 'CreateJoinToken', { node, ttl_seconds: 3600 }, `create a join token for node ${node}`)).then((r) => r.token);
}

export function listObjects<T extends ClusterObject>(layout: LabLayout, kind: string): Promise<T[]> {
  return withControl(layout, async (c) => {
    const res = await unary<{ items: Buffer[] }>(c, 'Get', { kind, namespace: '', name: '', all_namespaces: true }, `list ${kind}`);
    return res.items.map((b) => JSON.parse(b.toString('utf8')) as T);
  });
}

/** What the store sets is not sent back: a stale resourceVersion would be a failed precondition. */
function asManifest(o: ClusterObject): ClusterObject {
  const metadata = { ...o.metadata };
  delete metadata.resourceVersion;
  delete metadata.uid;
  delete metadata.creationTimestamp;
  return { ...o, metadata } as ClusterObject;
}

export async function applyObjects(layout: LabLayout, objects: ClusterObject[]): Promise<void> {
  if (objects.length === 0) return;
  const items = objects.map((o) => ({ json: Buffer.from(JSON.stringify(asManifest(o))), source: 'weft lab' }));
  await withControl(layout, (c) => unary(c, 'Apply', { items, dry_run: false }, 'apply the lab\'s objects'));
}

/**
 * Deletes in mesh-control: pods terminate there first (their deadline in the returned objects),
 * unless `gracePeriodSeconds` is 0 (what the lab no longer runs).
 */
export async function deleteObjects(layout: LabLayout, keys: string[], gracePeriodSeconds?: number): Promise<ClusterObject[]> {
  if (keys.length === 0) return [];
  const req = { keys, ...(gracePeriodSeconds === undefined ? {} : { grace_period: { seconds: gracePeriodSeconds } }) };
  const res = await withControl(layout, (c) => unary<{ results: { json: Buffer }[] }>(c, 'Delete', req, 'delete the lab\'s objects'));
  return res.results.filter((r) => r.json.length > 0).map((r) => JSON.parse(r.json.toString('utf8')) as ClusterObject);
}

export function nodeObject(node: Pick<LabNodeState, 'name' | 'address' | 'podCIDR'>): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node.name },
    spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
    status: { addresses: [{ type: 'InternalIP', address: node.address }, { type: 'Hostname', address: node.name }] },
  };
}

/** A running lab pod as the kubelet reports it: Running, Ready, with its IP and node. */
export function podObject(pod: LabPodState, nodes: readonly LabNodeState[]): Pod {
  const hostIP = nodes.find((n) => n.name === pod.node)?.address;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: pod.name,
      namespace: pod.namespace,
      labels: pod.labels,
      ...(pod.owner ? { annotations: { [DEPLOYMENT_ANNOTATION]: pod.owner } } : {}),
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
      // Ready stays True while terminating (the pod still serves): the deletionTimestamp that
      // mesh-control sets alone turns the endpoint ready:false, serving:true, terminating:true.
      conditions: [{ type: 'Ready', status: 'True' }],
    },
  };
}

/**
 * A Deployment is written only when the lab's live pods (terminating ones are no replicas any more)
 * match it exactly: mesh-control's Deployment controller would otherwise create pods the lab has
 * not placed yet, or terminate pods the lab still runs. A Deployment changed in mesh-control
 * directly no longer matches the lab's copy, so the lab does not write its copy back over it.
 */
function converged(d: Deployment, pods: readonly LabPodState[]): boolean {
  const ns = d.metadata.namespace ?? 'default';
  const wanted = expandDeployment(d).map((p) => p.metadata.name).sort();
  const have = pods.filter((p) => p.namespace === ns && p.owner === d.metadata.name && !p.deletionTimestamp).map((p) => p.name).sort();
  return JSON.stringify(wanted) === JSON.stringify(have);
}

/** The objects the lab writes to mesh-control for its state (Services are written by applyServices). */
export function labObjects(state: LabState): ClusterObject[] {
  return [
    ...state.namespaces,
    ...state.nodes.map(nodeObject),
    ...state.endpointSlices,
    ...state.networkPolicies,
    ...state.pods.map((p) => podObject(p, state.nodes)),
    ...state.deployments.filter((d) => converged(d, state.pods)),
  ];
}

/**
 * Writes the lab's objects and deletes those it wrote before and no longer has. A Deployment the
 * lab dropped stays until its last pod is gone (its controller would delete them undrained).
 */
export async function syncControl(state: LabState, layout: LabLayout): Promise<void> {
  const objects = labObjects(state);
  await applyObjects(layout, objects);
  const keep = new Set([...objects.map(objectKey), ...state.deployments.map(objectKey)]);
  const owners = new Set(state.pods.filter((p) => p.owner).map((p) => `Deployment/${p.namespace}/${p.owner}`));
  const stale = (state.published ?? []).filter((k) => !keep.has(k) && !owners.has(k));
  // Deployments first: with them gone, their controller cannot recreate a pod deleted next. Pods
  // the lab no longer has are stopped already: they go at once (the kubelet's report).
  await deleteObjects(layout, [...stale.filter((k) => k.startsWith('Deployment/')), ...stale.filter((k) => !k.startsWith('Deployment/'))], 0);
  state.published = [...new Set([...(state.published ?? []).filter((k) => !stale.includes(k)), ...objects.map(objectKey)])];
  state.services = await listObjects<Service>(layout, 'Service');
}

/**
 * Writes Services as the user gave them plus the lab's LoadBalancer ingress (the cloud LB
 * controller's part); mesh-control allocates clusterIPs and nodePorts. Conflicts are checked
 * first, so `up` fails before anything is built.
 */
export function checkServices(state: Pick<LabState, 'services' | 'serviceCIDR'>, incoming: Service[]): Service[] {
  const checked = new Map(allocateServices(state.services, incoming, state.serviceCIDR).map((s) => [namespacedName(s), s]));
  return incoming.map((s) => {
    const status = checked.get(namespacedName(s))?.status;
    return status ? { ...s, status } : s;
  });
}

/**
 * The LB controller's pass over Services written to mesh-control directly: a LoadBalancer Service
 * without an ingress IP gets one from the lab's pool. Returns what it assigned.
 */
export async function assignLoadBalancerIPs(layout: LabLayout, state: LabState): Promise<string[]> {
  const services = await listObjects<Service>(layout, 'Service');
  const taken = new Set(services.flatMap(ingressIPs));
  const pending = services.filter((s) => s.spec.type === 'LoadBalancer' && ingressIPs(s).length === 0);
  const assigned = pending.map((s) => ({ ...s, status: { ...s.status, loadBalancer: { ingress: loadBalancerIngress(s, undefined, taken).map((ip) => ({ ip })) } } }));
  await applyServices(layout, state, assigned);
  return assigned.map((s) => `Service ${namespacedName(s)} LoadBalancer IP ${s.status.loadBalancer.ingress.map((i) => i.ip).join(',')}`);
}

export async function applyServices(layout: LabLayout, state: LabState, services: Service[]): Promise<void> {
  await applyObjects(layout, services);
  state.services = await listObjects<Service>(layout, 'Service');
}

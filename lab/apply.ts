// Changing a running lab: `weft lab apply -f` (create/update Pods, Deployments' replicas and labels,
// Services, EndpointSlices, NetworkPolicies, Namespaces) and `weft lab delete`. Pods leave as
// Kubernetes takes them away, so Services drain instead of failing. terminatePods is the lab's one
// way to stop a pod gracefully: here, and in the lab kubelet for pods deleted in mesh-control
// directly (kubelet.ts):
//   1. the pod is deleted in mesh-control, which keeps it terminating (deletionTimestamp = the
//      deadline, see mesh-control/controllers/pod-termination.ts): its EndpointSlice controller
//      turns the endpoint ready:false, serving:true, terminating:true, and every agent stops
//      sending new connections to it (while a ready endpoint exists, KEP-1669);
//   2. after ENDPOINT_PROPAGATION_MS (the lab's preStop delay: the agents pick the change up), the
//      pod server gets SIGTERM and drains (see pod-server.ts), SIGKILL at the deadline (the grace
//      period counts from the deletion, preStop included, as the kubelet counts it);
//   3. the pod object is removed from mesh-control (with it the endpoint), CNI DEL runs, the
//      namespace is deleted.
import { namespacedName, objectKey } from '../mesh-control/model/objects.ts';
import type { ClusterObject } from '../mesh-control/model/types.ts';
import { mapLimit } from './dial.ts';
import { LabError } from './errors.ts';
import { applyServices, checkServices, deleteObjects } from './control.ts';
import { createPod, publish } from './lab.ts';
import { type LabLayout, labLayout } from './layout.ts';
import { withLabLock } from './lock.ts';
import { plannedPod, type PlannedPod, splitObjects } from './plan.ts';
import { removePod } from './pod.ts';
import { stopProcesses } from './processes.ts';
import { type LabNodeState, type LabPodState, type LabState, loadState } from './state.ts';

/** How long the agents get to drop a terminating endpoint before its server is told to stop. */
export const ENDPOINT_PROPAGATION_MS = 1_000;
const POD_CONCURRENCY = 4;

export interface ApplySummary {
  created: string[];
  updated: string[];
  terminated: string[];
}

const podKey = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;

/** Replaces by namespace/name, keeping order; new objects are appended. */
function upsert<T extends ClusterObject>(list: T[], incoming: T[]): T[] {
  const byKey = new Map(list.map((o) => [namespacedName(o), o]));
  for (const o of incoming) byKey.set(namespacedName(o), o);
  return [...byKey.values()];
}

/** The node with the fewest live pods (first in node order on a tie). */
export function leastLoaded(state: LabState, extra: Map<string, number>): LabNodeState {
  const load = (n: LabNodeState) => state.pods.filter((p) => p.node === n.name && !p.deletionTimestamp).length + (extra.get(n.name) ?? 0);
  return state.nodes.reduce((best, n) => (load(n) < load(best) ? n : best));
}

/** Creates or updates what the objects describe; resolves once removed pods are gone. */
export function labApply(dir: string, objects: ClusterObject[], log?: (line: string) => void): Promise<ApplySummary> {
  const layout = labLayout(dir);
  return withLabLock(layout, () => applyLocked(layout, objects, log));
}

async function applyLocked(layout: LabLayout, objects: ClusterObject[], log?: (line: string) => void): Promise<ApplySummary> {
  const state = await loadState(layout);
  for (const o of objects) {
    if (o.kind === 'Node' || o.kind === 'LabHost') throw new LabError('WEFT_LAB_PLAN', `lab apply: ${o.kind} ${o.metadata.name} cannot be applied to a running lab (use \`weft lab node add\`, or \`weft lab up\` for LabHosts)`);
  }
  const incoming = splitObjects(objects);
  const summary: ApplySummary = { created: [], updated: [], terminated: [] };
  await applyServices(layout, state, checkServices(state, incoming.services));
  state.endpointSlices = upsert(state.endpointSlices, incoming.endpointSlices);
  state.networkPolicies = upsert(state.networkPolicies, incoming.networkPolicies);
  state.namespaces = upsert(state.namespaces, incoming.namespaces);
  state.deployments = upsert(state.deployments, incoming.deployments);

  const wanted = new Set(incoming.pods.map((p) => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`));
  const toCreate: PlannedPod[] = [];
  const placed = new Map<string, number>();
  for (const pod of incoming.pods) {
    const key = `${pod.metadata.namespace ?? 'default'}/${pod.metadata.name}`;
    const current = state.pods.find((p) => podKey(p) === key);
    if (current?.deletionTimestamp) throw new LabError('WEFT_LAB_PLAN', `lab apply: pod ${key} is still terminating`);
    if (current) {
      // Labels are what a running pod can change (it may join or leave Services); the rest is fixed.
      const labels = pod.metadata.labels ?? {};
      if (JSON.stringify(labels) !== JSON.stringify(current.labels)) {
        current.labels = labels;
        summary.updated.push(key);
      }
      continue;
    }
    const node = pod.spec.nodeName ?? leastLoaded(state, placed).name;
    if (!state.nodes.some((n) => n.name === node)) throw new LabError('WEFT_LAB_PLAN', `lab apply: pod ${key} names node ${node}, which the lab does not have`);
    placed.set(node, (placed.get(node) ?? 0) + 1);
    toCreate.push(plannedPod(pod, node));
  }
  // Replicas a Deployment no longer has (scaled down) go through termination.
  const applied = new Set(incoming.deployments.map((d) => namespacedName(d)));
  const removed = state.pods.filter((p) => p.owner && applied.has(`${p.namespace}/${p.owner}`) && !wanted.has(podKey(p)) && !p.deletionTimestamp);

  await publish(layout, state);
  const byName = new Map(state.nodes.map((n) => [n.name, n]));
  const created = await mapLimit(toCreate, POD_CONCURRENCY, (p) => createPod(layout, byName.get(p.node) as LabNodeState, p));
  state.pods.push(...created);
  summary.created.push(...created.map(podKey));
  if (created.length) await publish(layout, state);
  for (const line of [...summary.created.map((k) => `pod ${k} created`), ...summary.updated.map((k) => `pod ${k} relabeled`)]) log?.(line);
  await terminatePods(layout, state, removed, log);
  summary.terminated.push(...removed.map(podKey));
  return summary;
}

/** Terminates pods the way the kubelet and the EndpointSlice controller do (see the file comment). */
export async function terminatePods(layout: LabLayout, state: LabState, pods: LabPodState[], log?: (line: string) => void): Promise<void> {
  if (pods.length === 0) return;
  // Pods already terminating in mesh-control keep their deadline; one it removed at once (grace 0) has none.
  const deleted = await deleteObjects(layout, pods.map((p) => `Pod/${podKey(p)}`));
  const deadlines = new Map(deleted.map((o) => [objectKey(o), o.metadata.deletionTimestamp]));
  const now = new Date().toISOString();
  for (const p of pods) p.deletionTimestamp = deadlines.get(`Pod/${podKey(p)}`) ?? now;
  await publish(layout, state);
  for (const p of pods) log?.(`pod ${podKey(p)} terminating`);
  await new Promise((r) => setTimeout(r, ENDPOINT_PROPAGATION_MS));
  await Promise.all(pods.map((p) => stopProcesses([p.pid ?? 0], Math.max(0, Date.parse(p.deletionTimestamp ?? now) - Date.now()))));
  const gone = new Set(pods);
  state.pods = state.pods.filter((p) => !gone.has(p));
  await publish(layout, state);
  const byName = new Map(state.nodes.map((n) => [n.name, n]));
  await mapLimit(pods, POD_CONCURRENCY, async (p) => {
    await removePod(byName.get(p.node) as LabNodeState, p, p.netns);
    log?.(`pod ${podKey(p)} deleted`);
  });
}

export type DeleteKind = 'pod' | 'deployment' | 'service';

/** `weft lab delete pod|deployment|service NS/NAME`. */
export function labDelete(dir: string, kind: DeleteKind, key: string, log?: (line: string) => void): Promise<void> {
  const layout = labLayout(dir);
  return withLabLock(layout, () => deleteLocked(layout, kind, key, log));
}

async function deleteLocked(layout: LabLayout, kind: DeleteKind, key: string, log?: (line: string) => void): Promise<void> {
  const state = await loadState(layout);
  const [namespace, name] = key.includes('/') ? key.split('/', 2) : ['default', key];
  const full = `${namespace}/${name}`;
  const missing = () => new LabError('WEFT_LAB_TARGET', `lab delete: no ${kind} ${full}`);
  if (kind === 'service') {
    if (!state.services.some((s) => namespacedName(s) === full)) throw missing();
    await deleteObjects(layout, [`Service/${full}`]);
    await publish(layout, state);
    log?.(`service ${full} deleted`);
    return;
  }
  let pods: LabPodState[];
  if (kind === 'deployment') {
    const before = state.deployments.length;
    state.deployments = state.deployments.filter((d) => namespacedName(d) !== full);
    if (state.deployments.length === before) throw missing();
    pods = state.pods.filter((p) => p.namespace === namespace && p.owner === name && !p.deletionTimestamp);
  } else {
    pods = state.pods.filter((p) => podKey(p) === full && !p.deletionTimestamp);
    if (pods.length === 0) throw missing();
  }
  await terminatePods(layout, state, pods, log);
}

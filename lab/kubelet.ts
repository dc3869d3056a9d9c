// The lab's kubelet for what users write to mesh-control directly (`weft apply --server
// unix:<lab>/control.sock`): one process per lab in the host's namespaces, started by `up`
// (its pid in `<lab>/kubelet.pid`, so `down` and a crashed lab's next `up` stop it). It follows the
// Pods in mesh-control: a pod bound to a lab node, or not bound yet (scheduled like `lab apply`
// does, to the node with the fewest pods), that the lab does not run is created (CNI ADD, pod
// server) and its status reported; a pod the lab runs that mesh-control marks terminating (a
// Deployment scaled down, `weft delete`) is terminated as `lab apply` does it (terminatePods:
// drain, SIGTERM, SIGKILL at the deadline, then removed from mesh-control); a terminating pod the
// lab does not run is removed from mesh-control; a pod the lab runs that mesh-control no longer
// has at all (a force delete) is stopped and removed at once. It also plays the LB controller for them: a LoadBalancer Service without an ingress
// IP gets one from the lab's pool (and the outside hosts a route to it), and the lab's copies of
// the Services and of its Deployments follow mesh-control's (a user may scale a Deployment there:
// the lab must not write its old copy back). Changes the lab makes itself (up, lab apply/delete) hold the
// lab lock, so the kubelet never sees one half done.
import { namespacedName } from '../mesh-control/model/objects.ts';
import type { Deployment, Pod, Service } from '../mesh-control/model/types.ts';
import { leastLoaded, terminatePods } from './apply.ts';
import { assignLoadBalancerIPs, deleteObjects, listObjects } from './control.ts';
import { ingressIPs } from './service-addresses.ts';
import { mapLimit } from './dial.ts';
import { createPod, publish } from './lab.ts';
import { type LabLayout, labLayout } from './layout.ts';
import { withLabLock } from './lock.ts';
import { deleteNetns } from './netns.ts';
import { plannedPod } from './plan.ts';
import { removePod } from './pod.ts';
import { stopProcesses } from './processes.ts';
import { type LabNodeState, type LabState, loadState } from './state.ts';

const POLL_MS = 250;
const POD_CONCURRENCY = 4;

const keyOf = (namespace: string | undefined, name: string) => `${namespace ?? 'default'}/${name}`;

function plan(state: LabState, pods: Pod[]) {
  const inControl = new Map(pods.map((p) => [keyOf(p.metadata.namespace, p.metadata.name), p]));
  const running = new Set(state.pods.map((p) => keyOf(p.namespace, p.name)));
  const nodes = new Set(state.nodes.map((n) => n.name));
  const toRun = pods.filter((p) => !p.metadata.deletionTimestamp && !running.has(keyOf(p.metadata.namespace, p.metadata.name))
    && (p.spec.nodeName === undefined || nodes.has(p.spec.nodeName)));
  const toStop = state.pods.filter((p) => !p.deletionTimestamp && !inControl.has(keyOf(p.namespace, p.name)));
  const toTerminate = state.pods.filter((p) => !p.deletionTimestamp && inControl.get(keyOf(p.namespace, p.name))?.metadata.deletionTimestamp);
  // Terminating on a lab node, but nothing runs: there is nothing to wait for.
  const toForget = pods.filter((p) => p.metadata.deletionTimestamp && p.spec.nodeName !== undefined && nodes.has(p.spec.nodeName)
    && !running.has(keyOf(p.metadata.namespace, p.metadata.name)));
  return { toRun, toStop, toTerminate, toForget };
}

/** The lab's Deployments as mesh-control has them, or undefined when they are the same. */
function followDeployments(state: LabState, inControl: Deployment[]): Deployment[] | undefined {
  const byKey = new Map(inControl.map((d) => [namespacedName(d), d]));
  // One the lab has not written yet (it writes a Deployment once its pods match) keeps the lab's copy.
  const next = state.deployments.map((d) => byKey.get(namespacedName(d)) ?? d);
  return JSON.stringify(next) === JSON.stringify(state.deployments) ? undefined : next;
}

/** One pass: returns the lines to log. */
export async function reconcileKubelet(layout: LabLayout): Promise<string[]> {
  const current = await loadState(layout);
  const quick = plan(current, await listObjects<Pod>(layout, 'Pod'));
  const services = await listObjects<Service>(layout, 'Service');
  const lbPending = services.some((s) => s.spec.type === 'LoadBalancer' && ingressIPs(s).length === 0);
  // The lab's copy of the Services (probes, status, outside routes) follows mesh-control too.
  const servicesChanged = JSON.stringify(services) !== JSON.stringify(current.services);
  const deploymentsChanged = followDeployments(current, await listObjects<Deployment>(layout, 'Deployment')) !== undefined;
  const podWork = quick.toRun.length + quick.toStop.length + quick.toTerminate.length + quick.toForget.length;
  if (podWork === 0 && !lbPending && !servicesChanged && !deploymentsChanged) return [];
  return withLabLock(layout, async () => {
    // Again under the lock: a lab command may have finished what looked undone.
    const state = await loadState(layout);
    state.deployments = followDeployments(state, await listObjects<Deployment>(layout, 'Deployment')) ?? state.deployments;
    const { toRun, toStop, toTerminate, toForget } = plan(state, await listObjects<Pod>(layout, 'Pod'));
    const lines = await assignLoadBalancerIPs(layout, state);
    const placed = new Map<string, number>();
    const planned = toRun.map((p) => {
      const node = p.spec.nodeName ?? leastLoaded(state, placed).name;
      placed.set(node, (placed.get(node) ?? 0) + 1);
      return plannedPod(p, node);
    });
    const byName = new Map(state.nodes.map((n) => [n.name, n]));
    const created = (await mapLimit(planned, POD_CONCURRENCY, async (p) => {
      try {
        return await createPod(layout, byName.get(p.node) as LabNodeState, p);
      } catch (err) {
        // Left for the next pass, which starts over from a fresh namespace.
        lines.push(`failed to create pod ${p.namespace}/${p.name}: ${(err as Error).message}`);
        await deleteNetns(layout.podNetns(p.namespace, p.name)).catch(() => undefined);
        return undefined;
      }
    })).filter((p) => p !== undefined);
    state.pods.push(...created);
    lines.push(...created.map((p) => `pod ${p.namespace}/${p.name} created on ${p.node}`));
    // Force-deleted in mesh-control (so already out of every EndpointSlice): stopped at once.
    await Promise.all(toStop.map((p) => stopProcesses([p.pid ?? 0])));
    await mapLimit(toStop, POD_CONCURRENCY, (p) => removePod(byName.get(p.node) as LabNodeState, p, p.netns));
    const stopped = new Set(toStop);
    state.pods = state.pods.filter((p) => !stopped.has(p));
    lines.push(...toStop.map((p) => `pod ${p.namespace}/${p.name} removed`));
    await publish(layout, state);
    await deleteObjects(layout, toForget.map((p) => `Pod/${keyOf(p.metadata.namespace, p.metadata.name)}`), 0);
    lines.push(...toForget.map((p) => `pod ${keyOf(p.metadata.namespace, p.metadata.name)} removed (not running)`));
    // Last, and while holding the lock as `lab apply` does: a drain takes up to the grace period.
    await terminatePods(layout, state, toTerminate, (line) => lines.push(line));
    return lines;
  });
}

/** `weft lab kubelet`: polls until SIGTERM. */
export async function runKubelet(dir: string, log: (line: string) => void): Promise<void> {
  const layout = labLayout(dir);
  let stopped = false;
  const stop = () => { stopped = true; };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write('ready\n');
  while (!stopped) {
    try {
      for (const line of await reconcileKubelet(layout)) log(line);
    } catch (err) {
      log(`failed to reconcile pods: ${(err as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

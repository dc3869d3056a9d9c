// The lab's kubelet for what users write to mesh-control directly (`weft apply --server
// unix:<lab>/control.sock`): one process per lab in the host's namespaces, started by `up`
// (its pid in `<lab>/kubelet.pid`, so `down` and a crashed lab's next `up` stop it). It follows the
// Pods in mesh-control: a pod bound to a lab node, or not bound yet (scheduled like `lab apply`
// does, to the node with the fewest pods), that the lab does not run is created (CNI ADD, pod
// server) and its status reported; a pod the lab runs that mesh-control no longer has is stopped
// and removed. It also plays the LB controller for them: a LoadBalancer Service without an ingress
// IP gets one from the lab's pool (and the outside hosts a route to it), and the lab's copy of the
// Services follows mesh-control's. Changes the lab makes itself (up, lab apply/delete) hold the
// lab lock, so the kubelet never sees one half done.
import type { Pod, Service } from '../mesh-control/model/types.ts';
import { leastLoaded } from './apply.ts';
import { assignLoadBalancerIPs, listObjects } from './control.ts';
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
  return { toRun, toStop };
}

/** One pass: returns the lines to log. */
export async function reconcileKubelet(layout: LabLayout): Promise<string[]> {
  const current = await loadState(layout);
  const quick = plan(current, await listObjects<Pod>(layout, 'Pod'));
  const services = await listObjects<Service>(layout, 'Service');
  const lbPending = services.some((s) => s.spec.type === 'LoadBalancer' && ingressIPs(s).length === 0);
  // The lab's copy of the Services (probes, status, outside routes) follows mesh-control too.
  const servicesChanged = JSON.stringify(services) !== JSON.stringify(current.services);
  if (quick.toRun.length === 0 && quick.toStop.length === 0 && !lbPending && !servicesChanged) return [];
  return withLabLock(layout, async () => {
    // Again under the lock: a lab command may have finished what looked undone.
    const state = await loadState(layout);
    const { toRun, toStop } = plan(state, await listObjects<Pod>(layout, 'Pod'));
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
    // Already gone from mesh-control (and so from every EndpointSlice): nothing left to drain for.
    await Promise.all(toStop.map((p) => stopProcesses([p.pid ?? 0])));
    await mapLimit(toStop, POD_CONCURRENCY, (p) => removePod(byName.get(p.node) as LabNodeState, p, p.netns));
    const stopped = new Set(toStop);
    state.pods = state.pods.filter((p) => !stopped.has(p));
    lines.push(...toStop.map((p) => `pod ${p.namespace}/${p.name} removed`));
    await publish(layout, state);
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

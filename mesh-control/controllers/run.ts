// The controllers mesh-control runs over its store, level-triggered: store events only mark work
// dirty; after a short batching window each controller reconciles from the whole current state.
//   - EndpointSlices from Pods and Service selectors (deriveEndpointSlices);
//   - Deployments expanded into pods `<deployment>-<index>` (extra indexes, and the pods of a
//     deleted Deployment, deleted gracefully: they terminate, see pod-termination.ts);
//   - terminating pods nobody reports stopped are removed once they expire (pod-termination.ts);
//   - node subnets: a Node without spec.podCIDR gets one from the cluster CIDR (lease allocator).
import { isDeepStrictEqual } from 'node:util';
import { causeText } from '../errors.ts';
import { expandDeployment, DEPLOYMENT_ANNOTATION } from '../model/deployment.ts';
import { objectKey } from '../model/objects.ts';
import type { ClusterObject, Deployment, EndpointSlice, Node, Pod, Service } from '../model/types.ts';
import type { SubnetAllocator } from '../leases/index.ts';
import type { ObjectStore, WatchEvent } from '../store/types.ts';
import { deriveEndpointSlices, MANAGED_BY, MANAGED_BY_LABEL } from './endpoint-slices.ts';
import { deleteGracefully, expiresAt } from './pod-termination.ts';

export interface ControllersConfig {
  debounceMs?: number;
  log?: (message: string) => void;
}

export interface Controllers {
  start(): void;
  stop(): Promise<void>;
  /** Resolves when no reconcile is pending or running (tests). */
  idle(): Promise<void>;
}

const comparable = (o: ClusterObject) => {
  const metadata = { ...o.metadata };
  delete metadata.resourceVersion;
  delete metadata.uid;
  delete metadata.creationTimestamp;
  return { ...o, metadata };
};

export function createControllers(config: ControllersConfig, deps: { store: ObjectStore; subnets?: SubnetAllocator }): Controllers {
  const { store, subnets } = deps;
  const log = config.log ?? (() => {});
  const debounceMs = config.debounceMs ?? 10;
  const dirty = { slices: true, deployments: true, nodes: true, terminating: true };
  let timer: NodeJS.Timeout | undefined;
  // Wakes the controllers when the next terminating pod expires.
  let expiry: { at: number; timer: NodeJS.Timeout } | undefined;
  let running: Promise<void> | undefined;
  let cancel: (() => void) | undefined;
  let stopped = false;

  async function write(o: ClusterObject): Promise<void> {
    const current = store.get(objectKey(o));
    if (current && isDeepStrictEqual(comparable(current), comparable({ ...o, metadata: { ...o.metadata, uid: current.metadata.uid } }))) return;
    await store.put(o, { expectRevision: current ? Number(current.metadata.resourceVersion) : 0 });
  }

  async function reconcileSlices(): Promise<void> {
    const services = store.list('Service') as Service[];
    const existing = store.list('EndpointSlice') as EndpointSlice[];
    const desired = deriveEndpointSlices(services, store.list('Pod') as Pod[], existing);
    const keep = new Set(desired.map(objectKey));
    for (const s of desired) if (s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY) await write(s);
    for (const s of existing) if (s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY && !keep.has(objectKey(s))) await store.delete(objectKey(s));
  }

  async function reconcileDeployments(): Promise<void> {
    const deployments = store.list('Deployment') as Deployment[];
    const wanted = new Set<string>();
    for (const d of deployments) {
      for (const p of expandDeployment(d)) {
        wanted.add(objectKey(p));
        // Pods are created once: their node and status belong to whoever runs them.
        if (!store.get(objectKey(p))) await store.put(p, { expectRevision: 0 });
      }
    }
    for (const p of store.list('Pod') as Pod[]) {
      const owner = p.metadata.annotations?.[DEPLOYMENT_ANNOTATION];
      if (owner !== undefined && !wanted.has(objectKey(p)) && !p.metadata.deletionTimestamp) await deleteGracefully(store, objectKey(p));
    }
  }

  async function reconcileTerminating(): Promise<void> {
    const nodes = new Set(store.list('Node').map((n) => n.metadata.name));
    const now = Date.now();
    let next = Infinity;
    for (const p of store.list('Pod') as Pod[]) {
      const at = expiresAt(p, p.spec.nodeName !== undefined && nodes.has(p.spec.nodeName));
      if (at === undefined) continue;
      if (at > now) next = Math.min(next, at);
      else await store.delete(objectKey(p), { expectRevision: Number(p.metadata.resourceVersion) });
    }
    if (next === Infinity || (expiry && expiry.at <= next)) return;
    if (expiry) clearTimeout(expiry.timer);
    const timer = setTimeout(() => {
      expiry = undefined;
      dirty.terminating = true;
      schedule();
    }, next - now);
    expiry = { at: next, timer };
  }

  async function reconcileNodes(): Promise<void> {
    if (!subnets) return;
    for (const n of store.list('Node') as Node[]) {
      if (n.spec?.podCIDR) continue;
      const lease = await subnets.acquire(n.metadata.name, { owner: 'weft-control' });
      await store.put({ ...n, spec: { ...n.spec, podCIDR: lease.subnet, podCIDRs: [lease.subnet] } }, { expectRevision: Number(n.metadata.resourceVersion) });
    }
  }

  async function reconcile(): Promise<void> {
    const todo = { ...dirty };
    dirty.slices = dirty.deployments = dirty.nodes = dirty.terminating = false;
    const steps: [keyof typeof dirty, string, () => Promise<void>][] = [
      ['deployments', 'Deployments', reconcileDeployments],
      ['terminating', 'terminating pods', reconcileTerminating],
      ['slices', 'EndpointSlices', reconcileSlices],
      ['nodes', 'node subnets', reconcileNodes],
    ];
    for (const [flag, what, step] of steps) {
      if (!todo[flag] || stopped) continue;
      try {
        await step();
      } catch (err) {
        log(`failed to reconcile ${what}: ${causeText(err)}`);
        // Level-triggered: try the whole thing again later.
        dirty[flag] = true;
        schedule(1000);
      }
    }
  }

  function schedule(delay = debounceMs): void {
    if (timer || stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (running) {
        void running.then(() => schedule());
        return;
      }
      running = reconcile().finally(() => (running = undefined));
    }, delay);
  }

  function onEvents(events: WatchEvent[]): void {
    for (const e of events) {
      const kind = e.object.kind;
      // Slices the controller does not manage (the user's) never change what it derives.
      if (kind === 'Service' || kind === 'Pod' || (kind === 'EndpointSlice' && e.object.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY)) dirty.slices = true;
      if (kind === 'Deployment' || (kind === 'Pod' && e.type === 'DELETED')) dirty.deployments = true;
      // A pod marked for deletion, or a node gone (its pods expire at their deadline then).
      if ((kind === 'Pod' && e.object.metadata.deletionTimestamp && e.type !== 'DELETED') || (kind === 'Node' && e.type === 'DELETED')) dirty.terminating = true;
      if (kind === 'Node') {
        dirty.nodes = true;
        if (e.type === 'DELETED' && subnets) void subnets.release(e.object.metadata.name).catch((err) => log(`failed to release the subnet of node ${e.object.metadata.name}: ${causeText(err)}`));
      }
    }
    if (dirty.slices || dirty.deployments || dirty.nodes || dirty.terminating) schedule();
  }

  return {
    start() {
      stopped = false;
      cancel = store.watch(store.revision(), onEvents);
      schedule();
    },
    async stop() {
      stopped = true;
      cancel?.();
      if (timer) clearTimeout(timer);
      if (expiry) clearTimeout(expiry.timer);
      expiry = undefined;
      await running;
    },
    async idle() {
      while (timer || running) await (running ?? new Promise((r) => setTimeout(r, debounceMs)));
    },
  };
}

// How outside hosts reach LoadBalancer IPs and externalIPs: as an L2 load-balancer speaker (MetalLB
// L2 mode) would, one node announces each address — for externalTrafficPolicy Local the first node
// with a ready local endpoint, else the first node. The lab writes that as /32 routes via the
// node's underlay address: in every LabHost namespace on an l2 underlay, in the underlay router on a
// routed one (where a BGP peer would program it). Never in the root namespace.
import { matchesServiceSelector } from '../mesh-control/model/selector.ts';
import type { Service } from '../mesh-control/model/types.ts';
import type { LabLayout } from './layout.ts';
import { ipBatch, run } from './netns.ts';
import type { LabState } from './state.ts';

/** The routing protocol number tagging the lab's routes, so a sync finds (and drops) only its own. */
const ROUTE_PROTO = '77';

function externalAddresses(svc: Service): string[] {
  const lb = (svc.spec.type ?? 'ClusterIP') === 'LoadBalancer' ? (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '') : [];
  return [...lb, ...(svc.spec.externalIPs ?? [])].filter(Boolean);
}

/** Destination IP → the underlay address of the node announcing it. Pure. */
export function planExternalRoutes(state: Pick<LabState, 'nodes' | 'pods' | 'services'>): Map<string, string> {
  const routes = new Map<string, string>();
  if (state.nodes.length === 0) return routes;
  for (const svc of state.services) {
    let node = state.nodes[0];
    if (svc.spec.externalTrafficPolicy === 'Local') {
      const ns = svc.metadata.namespace ?? 'default';
      const local = state.nodes.find((n) => state.pods.some((p) => p.node === n.name && p.namespace === ns && !p.deletionTimestamp
        && matchesServiceSelector(svc.spec.selector, p.labels)));
      if (local) node = local;
    }
    for (const ip of externalAddresses(svc)) if (!routes.has(ip)) routes.set(ip, node.address);
  }
  return routes;
}

/** Makes the routes of every announcing namespace match the plan (replace, then drop stale ones). */
export async function syncExternalRoutes(layout: LabLayout, state: LabState): Promise<void> {
  const plan = planExternalRoutes(state);
  const namespaces = state.underlay === 'l2' ? state.hosts.map((h) => h.netns) : [layout.underlayNetns];
  await Promise.all(namespaces.map(async (netns) => {
    const out = await run(`list routes in ${netns}`, 'ip', ['-n', netns, '-4', 'route', 'show', 'proto', ROUTE_PROTO]);
    const present = out.split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
    const lines = [
      ...[...plan].map(([ip, via]) => `route replace ${ip}/32 via ${via} proto ${ROUTE_PROTO}`),
      ...present.filter((dst) => !plan.has(dst.replace(/\/32$/, ''))).map((dst) => `route del ${dst} proto ${ROUTE_PROTO}`),
    ];
    if (lines.length) await ipBatch(netns, lines, `route Service addresses in ${netns}`);
  }));
}

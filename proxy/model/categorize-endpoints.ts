// Which endpoints each traffic policy uses, as kube-proxy's CategorizeEndpoints decides
// (pkg/proxy/topology.go): topology hints narrow the Cluster set, terminating-but-serving
// endpoints are used only when no ready one exists (KEP-1669), and the Local set ignores topology.
import type { ProxyEndpoint } from './types.ts';

export interface EndpointCategories {
  clusterEndpoints: ProxyEndpoint[];
  localEndpoints: ProxyEndpoint[];
  reachableEndpoints: ProxyEndpoint[];
  hasEndpoints: boolean;
}

type TopologyMode = '' | 'PreferSameNode' | 'PreferSameZone';

/** One unhinted ready endpoint disables topology; hints that leave this node nothing are ignored. */
function topologyMode(endpoints: readonly ProxyEndpoint[], nodeName: string, zone: string | undefined): TopologyMode {
  let allNodeHints = true;
  let forNode = false;
  let allZoneHints = true;
  let forZone = false;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    if (ep.nodeHints.length === 0) allNodeHints = false;
    else if (ep.nodeHints.includes(nodeName)) forNode = true;
    if (ep.zoneHints.length === 0) allZoneHints = false;
    else if (zone !== undefined && ep.zoneHints.includes(zone)) forZone = true;
  }
  if (allNodeHints && forNode) return 'PreferSameNode';
  if (allZoneHints && forZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(ep: ProxyEndpoint, mode: TopologyMode, nodeName: string, zone: string | undefined): boolean {
  if (mode === 'PreferSameNode') return ep.nodeHints.includes(nodeName);
  if (mode === 'PreferSameZone') return zone !== undefined && ep.zoneHints.includes(zone);
  return true;
}

const servingTerminating = (ep: ProxyEndpoint): boolean => ep.serving && ep.terminating;

/** `endpoints` must be sorted by address; the results keep that order. */
export function categorizeEndpoints(
  endpoints: readonly ProxyEndpoint[],
  uses: { cluster: boolean; local: boolean },
  nodeName: string,
  zone: string | undefined,
): EndpointCategories {
  let clusterEndpoints: ProxyEndpoint[] = [];
  let hasEndpoints = false;
  if (uses.cluster) {
    const mode = topologyMode(endpoints, nodeName, zone);
    clusterEndpoints = endpoints.filter((ep) => ep.ready && availableForTopology(ep, mode, nodeName, zone));
    // Topology already fell back to "no filtering" when it would leave nothing ready here, so an
    // empty set means no ready endpoint anywhere.
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter(servingTerminating);
    hasEndpoints = clusterEndpoints.length > 0;
  }
  if (!uses.local) return { clusterEndpoints, localEndpoints: [], reachableEndpoints: clusterEndpoints, hasEndpoints };

  let localReady = false;
  let localServingTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasEndpoints = true;
      if (ep.isLocal) localReady = true;
    } else if (servingTerminating(ep)) {
      hasEndpoints = true;
      if (ep.isLocal) localServingTerminating = true;
    }
  }
  let localEndpoints: ProxyEndpoint[] = [];
  if (localReady) localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.ready);
  else if (localServingTerminating) localEndpoints = endpoints.filter((ep) => ep.isLocal && servingTerminating(ep));
  if (!uses.cluster) return { clusterEndpoints, localEndpoints, reachableEndpoints: localEndpoints, hasEndpoints };

  // The Cluster set may hold remote endpoints the Local set lacks, and the Local set terminating or
  // topology-filtered local ones the Cluster set lacks: both need endpoint chains.
  const reachable = new Set([...clusterEndpoints, ...localEndpoints]);
  const reachableEndpoints = endpoints.filter((ep) => reachable.has(ep));
  return { clusterEndpoints, localEndpoints, reachableEndpoints, hasEndpoints };
}

// What one node receives (its "scope"), as kube-router and Calico scope policy state per node:
//   - every Service, EndpointSlice, Node, Namespace and NetworkPolicy (each node proxies every
//     service, and policies are evaluated where their pods run);
//   - its own pods in full;
//   - pods of other nodes only when some NetworkPolicy peer (podSelector/namespaceSelector) can
//     match them, and then only as a projection (name, namespace, labels, node, IPs, container
//     ports): what a policy renderer needs to resolve peers, never another node's full spec.
// Relevance is evaluated against all policies rather than only those selecting the node's pods,
// so it depends on the pod alone: the peer projections are the same for every node and are
// encoded once (push/node-sync.ts), and no per-agent set has to be kept (bounded memory per agent).
import { matchesSelector } from '../model/selector.ts';
import type { ClusterObject, Namespace, NetworkPolicy, NetworkPolicyPeer, Pod } from '../model/types.ts';

interface Peer {
  policyNamespace: string;
  peer: NetworkPolicyPeer;
}

export interface PeerIndex {
  /** Some NetworkPolicy peer can select this pod: every node sees its projection. */
  peer(pod: Pod): boolean;
}

export function buildPeerIndex(policies: NetworkPolicy[], namespaces: Namespace[]): PeerIndex {
  const peers: Peer[] = [];
  for (const p of policies) {
    const policyNamespace = p.metadata.namespace ?? 'default';
    for (const rule of p.spec.ingress ?? []) for (const peer of rule.from ?? []) if (!peer.ipBlock) peers.push({ policyNamespace, peer });
    for (const rule of p.spec.egress ?? []) for (const peer of rule.to ?? []) if (!peer.ipBlock) peers.push({ policyNamespace, peer });
  }
  const nsLabels = new Map(namespaces.map((n) => [n.metadata.name, n.metadata.labels ?? {}]));
  const matches = (pod: Pod) => {
    const podNamespace = pod.metadata.namespace ?? 'default';
    return peers.some(({ policyNamespace, peer }) => {
      const nsOk = peer.namespaceSelector ? matchesSelector(peer.namespaceSelector, nsLabels.get(podNamespace)) : podNamespace === policyNamespace;
      return nsOk && (!peer.podSelector || matchesSelector(peer.podSelector, pod.metadata.labels));
    });
  };
  return { peer: (pod) => peers.length > 0 && matches(pod) };
}

/** The part of another node's pod a policy renderer needs. */
export function peerProjection(pod: Pod): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: pod.metadata.name, namespace: pod.metadata.namespace, labels: pod.metadata.labels, resourceVersion: pod.metadata.resourceVersion },
    spec: {
      nodeName: pod.spec.nodeName,
      containers: pod.spec.containers.map((c) => ({ name: c.name, ports: c.ports })),
    },
    status: pod.status && { podIP: pod.status.podIP, podIPs: pod.status.podIPs, phase: pod.status.phase },
  };
}

/** Kinds every node receives in full. */
export const SHARED_KINDS: ReadonlySet<string> = new Set(['Service', 'EndpointSlice', 'Node', 'Namespace', 'NetworkPolicy']);

/** Kinds whose change can change which pods a node sees. */
export function changesPodScope(o: ClusterObject): boolean {
  return o.kind === 'NetworkPolicy' || o.kind === 'Namespace';
}

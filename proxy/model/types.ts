// The proxy's normalized view of the cluster: one entry per service port, with its frontends and
// the endpoints each traffic policy uses already chosen. Every backend (iptables, nftables,
// userland) renders from this and nothing else, so policy decisions are made exactly once.

/** Lower-case, as iptables and nft write it. */
export type L4Protocol = 'tcp' | 'udp' | 'sctp';

export interface ProxyEndpoint {
  ip: string;
  /** Resolved per endpoint from its EndpointSlice port (named targetPorts differ per pod). */
  port: number;
  /** "ip:port", the endpoint's identity (kube-proxy's Endpoint.String()). */
  address: string;
  isLocal: boolean;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  zone?: string;
  zoneHints: readonly string[];
  nodeHints: readonly string[];
}

export interface ProxyServicePort {
  /** "namespace/name" of the Service. */
  service: string;
  namespace: string;
  name: string;
  /** Service port name, "" when unnamed. */
  portName: string;
  /** kube-proxy's ServicePortName.String(): "ns/svc" or "ns/svc:portName". */
  key: string;
  /** key + "/" + protocol: unique per service port, the identity used to diff syncs. */
  id: string;
  protocol: L4Protocol;
  clusterIP: string;
  port: number;
  /** 0 when the service has no node port. */
  nodePort: number;
  externalIPs: readonly string[];
  loadBalancerIPs: readonly string[];
  /** Normalized CIDRs (a bare IP becomes /32). Empty: no firewall. */
  loadBalancerSourceRanges: readonly string[];
  /** A node IP is inside a source range: the node may reach the LB IP (it loops back with the VIP as source). */
  sourceRangesAllowNode: boolean;
  externalPolicyLocal: boolean;
  internalPolicyLocal: boolean;
  /** 0 when none. */
  healthCheckNodePort: number;
  /** sessionAffinity ClientIP timeout in seconds; 0 means no affinity. */
  affinityTimeoutSeconds: number;
  /** Any NodePort, externalIP or LB IP. */
  externallyAccessible: boolean;
  /** Endpoints for "Cluster" policy, after topology filtering and the KEP-1669 fallback. */
  clusterEndpoints: readonly ProxyEndpoint[];
  /** Endpoints for "Local" policy (empty unless a policy is Local). */
  localEndpoints: readonly ProxyEndpoint[];
  /** Union of the two, sorted: every endpoint that needs a per-endpoint chain. */
  reachableEndpoints: readonly ProxyEndpoint[];
  /** Any ready, or serving and terminating, endpoint anywhere: false means REJECT. */
  hasEndpoints: boolean;
  /** Ready, not terminating, local endpoints: what the health-check node port reports. */
  localReadyEndpoints: number;
  usesClusterEndpoints: boolean;
  usesLocalEndpoints: boolean;
}

export interface ProxyState {
  nodeName: string;
  nodeIPs: readonly string[];
  /** Pod CIDR of the whole cluster: traffic from outside it to a ClusterIP is masqueraded. */
  clusterCIDR?: string;
  /** Sorted by key, for deterministic output. */
  servicePorts: readonly ProxyServicePort[];
  /** Total endpoints across all service ports (large-cluster mode drops per-endpoint comments). */
  endpointCount: number;
}

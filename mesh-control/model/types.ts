// The cluster objects weft understands, with the Kubernetes API's field names (core/v1,
// discovery.k8s.io/v1, networking.k8s.io/v1, apps/v1) plus weft.dev/v1alpha1 LabHost.
// Every part of weft (CNI, lab, proxy, mesh-control) reads these same types.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  /** When the object goes away at the latest: set by a graceful delete (Pods), with its grace period. */
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
}

export interface TypeMeta<K extends string, V extends string> {
  apiVersion: V;
  kind: K;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface Namespace extends TypeMeta<'Namespace', 'v1'> {
  metadata: ObjectMeta;
}

export interface Node extends TypeMeta<'Node', 'v1'> {
  metadata: ObjectMeta;
  spec?: { podCIDR?: string; podCIDRs?: string[]; unschedulable?: boolean };
  status?: { addresses?: { type: 'InternalIP' | 'ExternalIP' | 'Hostname'; address: string }[] };
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: Protocol;
  hostPort?: number;
  hostIP?: string;
}

export interface Container {
  name: string;
  image?: string;
  ports?: ContainerPort[];
}

export interface PodSpec {
  nodeName?: string;
  containers: Container[];
  hostNetwork?: boolean;
  terminationGracePeriodSeconds?: number;
}

export interface PodCondition {
  type: 'Ready' | 'PodScheduled' | 'Initialized' | 'ContainersReady';
  status: 'True' | 'False' | 'Unknown';
}

export interface Pod extends TypeMeta<'Pod', 'v1'> {
  metadata: ObjectMeta;
  spec: PodSpec;
  status?: { podIP?: string; podIPs?: { ip: string }[]; hostIP?: string; phase?: string; conditions?: PodCondition[] };
}

export interface Deployment extends TypeMeta<'Deployment', 'apps/v1'> {
  metadata: ObjectMeta;
  spec: {
    replicas?: number;
    selector: LabelSelector;
    template: { metadata?: Partial<ObjectMeta>; spec: PodSpec };
  };
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export interface ServicePort {
  name?: string;
  protocol?: Protocol;
  port: number;
  /** A number, or the name of a container port resolved per endpoint. */
  targetPort?: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export interface ServiceSpec {
  type?: ServiceType;
  selector?: Record<string, string>;
  ports?: ServicePort[];
  clusterIP?: string;
  clusterIPs?: string[];
  externalIPs?: string[];
  loadBalancerIP?: string;
  loadBalancerSourceRanges?: string[];
  externalTrafficPolicy?: 'Cluster' | 'Local';
  internalTrafficPolicy?: 'Cluster' | 'Local';
  healthCheckNodePort?: number;
  sessionAffinity?: 'None' | 'ClientIP';
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
  externalName?: string;
  publishNotReadyAddresses?: boolean;
  trafficDistribution?: string;
}

export interface Service extends TypeMeta<'Service', 'v1'> {
  metadata: ObjectMeta;
  spec: ServiceSpec;
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
}

export interface EndpointConditions {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

export interface Endpoint {
  addresses: string[];
  conditions?: EndpointConditions;
  hostname?: string;
  nodeName?: string;
  zone?: string;
  hints?: { forZones?: { name: string }[]; forNodes?: { name: string }[] };
  targetRef?: { kind?: string; namespace?: string; name?: string; uid?: string };
}

export interface EndpointPort {
  name?: string;
  protocol?: Protocol;
  port?: number;
  appProtocol?: string;
}

export interface EndpointSlice extends TypeMeta<'EndpointSlice', 'discovery.k8s.io/v1'> {
  metadata: ObjectMeta;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: Endpoint[];
  ports?: EndpointPort[];
}

export interface NetworkPolicyPort {
  protocol?: Protocol;
  port?: number | string;
  endPort?: number;
}

export interface IPBlock {
  cidr: string;
  except?: string[];
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}

export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: ('Ingress' | 'Egress')[];
  ingress?: { from?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
  egress?: { to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
}

export interface NetworkPolicy extends TypeMeta<'NetworkPolicy', 'networking.k8s.io/v1'> {
  metadata: ObjectMeta;
  spec: NetworkPolicySpec;
}

/** A machine outside the cluster, on the lab's underlay: reaches the nodes, is reached by pods. */
export interface LabHost extends TypeMeta<'LabHost', 'weft.dev/v1alpha1'> {
  metadata: ObjectMeta;
  spec: { ip?: string; ports?: ContainerPort[] };
}

export type ClusterObject = Namespace | Node | Pod | Deployment | Service | EndpointSlice | NetworkPolicy | LabHost;
export type Kind = ClusterObject['kind'];

/** Kinds that live in a namespace (metadata.namespace defaults to "default"). */
export const NAMESPACED_KINDS: ReadonlySet<Kind> = new Set<Kind>(['Pod', 'Deployment', 'Service', 'EndpointSlice', 'NetworkPolicy']);

/** The apiVersion each kind must carry. */
export const API_VERSIONS: Readonly<Record<Kind, string>> = {
  Namespace: 'v1',
  Node: 'v1',
  Pod: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  LabHost: 'weft.dev/v1alpha1',
};

/** The kubernetes.io/service-name label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Pod annotation asking the CNI plugin for a specific address. */
export const REQUESTED_IP_ANNOTATION = 'weft.dev/ip';

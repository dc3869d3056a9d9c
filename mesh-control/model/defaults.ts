// Defaults the API server applies on create (pkg/apis/*/v1/defaults.go), for a valid object.
// Returns a new object; the input is not modified. Applied by parseManifests:
//   all kinds        fields set to null are removed (null means unset, as in the API server)
//   namespaced kinds metadata.namespace "default"; cluster-scoped kinds lose metadata.namespace
//   Namespace        label kubernetes.io/metadata.name = name (so policies can select it by name)
//   ports            containers, LabHost, Service, EndpointSlice and NetworkPolicy ports: protocol "TCP"
//   Deployment       spec.replicas 1
//   Service          type "ClusterIP", sessionAffinity "None" (ClientIP: timeoutSeconds 10800),
//                    targetPort = port when absent/0/"", internalTrafficPolicy "Cluster" and, for
//                    NodePort/LoadBalancer or with externalIPs, externalTrafficPolicy "Cluster"
//                    (ExternalName services get neither, as in Kubernetes)
//   EndpointSlice    endpoints [] when absent
//   NetworkPolicy    spec.podSelector {}; policyTypes ["Ingress"] plus "Egress" when egress rules exist
import type { ClusterObject, PodSpec, Service } from './types.ts';
import { DEFAULT_NAMESPACE, isNamespaced } from './objects.ts';
import { DEFAULT_CLIENT_IP_TIMEOUT_SECONDS, isExternallyAccessible } from './validate-service.ts';

/** The label the API server puts on every Namespace, naming it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = withoutNulls(v);
  return out;
}

function defaultProtocols(ports: { protocol?: string }[] | undefined): void {
  for (const port of ports ?? []) port.protocol ??= 'TCP';
}

function defaultPodSpec(spec: PodSpec): void {
  for (const container of spec.containers) defaultProtocols(container.ports);
}

function defaultService(svc: Service): void {
  const spec = svc.spec;
  spec.type ??= 'ClusterIP';
  spec.sessionAffinity ??= 'None';
  if (spec.sessionAffinity === 'ClientIP') {
    spec.sessionAffinityConfig ??= {};
    spec.sessionAffinityConfig.clientIP ??= {};
    spec.sessionAffinityConfig.clientIP.timeoutSeconds ??= DEFAULT_CLIENT_IP_TIMEOUT_SECONDS;
  }
  for (const port of spec.ports ?? []) {
    port.protocol ??= 'TCP';
    if (port.targetPort === undefined || port.targetPort === 0 || port.targetPort === '') port.targetPort = port.port;
  }
  if (spec.type !== 'ExternalName') {
    spec.internalTrafficPolicy ??= 'Cluster';
    if (isExternallyAccessible(spec.type, spec.externalIPs)) spec.externalTrafficPolicy ??= 'Cluster';
  }
}

export function applyDefaults<T extends ClusterObject>(obj: T): T {
  const out = withoutNulls(obj) as ClusterObject;
  if (isNamespaced(out.kind)) out.metadata.namespace ||= DEFAULT_NAMESPACE;
  else delete out.metadata.namespace;
  switch (out.kind) {
    case 'Namespace':
      out.metadata.labels = { ...out.metadata.labels, [NAMESPACE_NAME_LABEL]: out.metadata.name };
      break;
    case 'Pod':
      defaultPodSpec(out.spec);
      break;
    case 'Deployment':
      out.spec.replicas ??= 1;
      defaultPodSpec(out.spec.template.spec);
      break;
    case 'LabHost':
      out.spec ??= {};
      defaultProtocols(out.spec.ports);
      break;
    case 'Service':
      out.spec ??= {};
      defaultService(out);
      break;
    case 'EndpointSlice':
      out.endpoints ??= [];
      defaultProtocols(out.ports);
      break;
    case 'NetworkPolicy': {
      out.spec ??= { podSelector: {} };
      const spec = out.spec;
      spec.podSelector ??= {};
      if (spec.policyTypes === undefined || spec.policyTypes.length === 0) {
        spec.policyTypes = (spec.egress ?? []).length > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
      }
      for (const rule of [...(spec.ingress ?? []), ...(spec.egress ?? [])]) defaultProtocols(rule.ports);
      break;
    }
    case 'Node':
      break;
  }
  return out as T;
}

// Validation of one decoded object against the API server's essential rules. Pure: returns every
// problem found (empty when valid) and never throws, so the manifest loader and mesh-control's
// server-side admission share it. Unknown fields are tolerated; known fields of the wrong type are not.
import { at, Checker, type Fields } from './check.ts';
import type { FieldProblem } from './errors.ts';
import { checkDNS1035Label, checkDNS1123Label, checkDNS1123Subdomain } from './names.ts';
import { API_VERSIONS, NAMESPACED_KINDS, type Kind } from './types.ts';
import { checkObjectMeta } from './validate-meta.ts';
import { checkNetworkPolicy } from './validate-network-policy.ts';
import { checkEndpointSlice, checkService } from './validate-service.ts';
import { checkDeployment, checkLabHost, checkPod } from './validate-workload.ts';

/** The name format the API server requires of each kind (LabHost names become lab hostnames). */
const NAME_FORMATS: Record<Kind, (name: string) => string | undefined> = {
  Namespace: checkDNS1123Label,
  Node: checkDNS1123Subdomain,
  Pod: checkDNS1123Subdomain,
  Deployment: checkDNS1123Subdomain,
  Service: checkDNS1035Label,
  EndpointSlice: checkDNS1123Subdomain,
  NetworkPolicy: checkDNS1123Subdomain,
  LabHost: checkDNS1123Label,
};

const KIND_CHECKS: Partial<Record<Kind, (c: Checker, obj: Fields) => void>> = {
  Node: checkNode,
  Pod: checkPod,
  Deployment: checkDeployment,
  Service: checkService,
  EndpointSlice: checkEndpointSlice,
  NetworkPolicy: checkNetworkPolicy,
  LabHost: checkLabHost,
};

export function isKind(kind: string): kind is Kind {
  return Object.hasOwn(API_VERSIONS, kind);
}

export function validate(obj: unknown): FieldProblem[] {
  const c = new Checker();
  const fields = c.object(obj, '', true);
  if (fields === undefined) return c.problems;
  const apiVersion = c.string(fields.apiVersion, 'apiVersion', true);
  const kind = c.string(fields.kind, 'kind', true);
  if (kind === undefined || kind === '') return c.problems;
  if (!isKind(kind)) {
    c.add('kind', `unknown kind ${JSON.stringify(kind)} (apiVersion ${JSON.stringify(apiVersion ?? '')}); expected one of ${Object.keys(API_VERSIONS).join(', ')}`);
    return c.problems;
  }
  if (apiVersion === undefined || apiVersion === '') return c.problems;
  if (apiVersion !== API_VERSIONS[kind]) {
    c.add('apiVersion', `must be ${JSON.stringify(API_VERSIONS[kind])} for kind ${kind}, got ${JSON.stringify(apiVersion)}`);
    return c.problems;
  }
  checkObjectMeta(c, fields.metadata, 'metadata', NAME_FORMATS[kind], NAMESPACED_KINDS.has(kind));
  KIND_CHECKS[kind]?.(c, fields);
  return c.problems;
}

const ADDRESS_TYPES = ['InternalIP', 'ExternalIP', 'Hostname'] as const;

function checkNode(c: Checker, node: Fields): void {
  const spec = c.object(node.spec, 'spec');
  if (spec !== undefined) {
    c.cidr(spec.podCIDR, 'spec.podCIDR', true);
    const podCIDRs = c.strings(spec.podCIDRs, 'spec.podCIDRs');
    for (const [cidr, i] of podCIDRs) c.cidr(cidr, at('spec.podCIDRs', i), true);
    if (podCIDRs.length > 1) c.add('spec.podCIDRs', `must have at most one entry (weft is IPv4 single-stack), got ${podCIDRs.length}`);
    if (typeof spec.podCIDR === 'string' && spec.podCIDR !== '' && podCIDRs.length > 0 && podCIDRs[0][0] !== spec.podCIDR) {
      c.add('spec.podCIDRs[0]', `must match spec.podCIDR ${JSON.stringify(spec.podCIDR)}, got ${JSON.stringify(podCIDRs[0][0])}`);
    }
    c.bool(spec.unschedulable, 'spec.unschedulable');
  }
  const status = c.object(node.status, 'status');
  for (const [address, i] of c.objects(status?.addresses, 'status.addresses')) {
    const p = at('status.addresses', i);
    const type = c.oneOf(address.type, at(p, 'type'), ADDRESS_TYPES, true);
    if (type === 'Hostname') c.string(address.address, at(p, 'address'), true);
    else if (type !== undefined) c.ipv4(address.address, at(p, 'address'), true);
  }
}

// KIND as kubectl spells it on the command line: plural, singular, short name, or the Kind itself.
import { ControlError } from './errors.ts';
import type { Kind } from './model/types.ts';

const NAMES: Record<Kind, string[]> = {
  Pod: ['pods', 'pod', 'po'],
  Service: ['services', 'service', 'svc'],
  EndpointSlice: ['endpointslices', 'endpointslice'],
  NetworkPolicy: ['networkpolicies', 'networkpolicy', 'netpol'],
  Node: ['nodes', 'node', 'no'],
  Namespace: ['namespaces', 'namespace', 'ns'],
  Deployment: ['deployments', 'deployment', 'deploy'],
  LabHost: ['labhosts', 'labhost'],
};

const BY_NAME = new Map<string, Kind>();
for (const [kind, names] of Object.entries(NAMES) as [Kind, string[]][]) {
  BY_NAME.set(kind.toLowerCase(), kind);
  for (const n of names) BY_NAME.set(n, kind);
}

export function resolveKind(name: string): Kind {
  const kind = BY_NAME.get(name.toLowerCase().split('.')[0]);
  if (!kind) {
    throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `the server doesn't have a resource type "${name}" (known: ${Object.values(NAMES).map((n) => n[0]).join(', ')})`);
  }
  return kind;
}

/** `services`, as kubectl prints `service/web created`: the singular lower-case name. */
export function kindSingular(kind: Kind): string {
  return NAMES[kind][1];
}

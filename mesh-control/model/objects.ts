// Identity of cluster objects: the keys every store, cache and message uses.
import { NAMESPACED_KINDS, type Kind } from './types.ts';

export const DEFAULT_NAMESPACE = 'default';

type Identified = { kind: Kind; metadata: { name: string; namespace?: string } };

export function isNamespaced(kind: Kind): boolean {
  return NAMESPACED_KINDS.has(kind);
}

/** `default/web` for namespaced objects, `node-a` for cluster-scoped ones (namespace "default" when unset). */
export function namespacedName(o: Identified): string {
  return isNamespaced(o.kind) ? `${o.metadata.namespace || DEFAULT_NAMESPACE}/${o.metadata.name}` : o.metadata.name;
}

/** `Service/default/web`, `Node/node-a`: unique across all kinds, since the kind fixes the scope. */
export function objectKey(o: Identified): string {
  return `${o.kind}/${namespacedName(o)}`;
}

/** The name of a Deployment's index-th pod (see deployment.ts for why names are not hashed). */
export function deploymentPodName(deploymentName: string, index: number): string {
  return `${deploymentName}-${index}`;
}

// Label selector matching (metav1.LabelSelector and a Service's plain selector map).
//
// An absent selector means different things to different callers, so matchesSelector takes a
// selector that is present and each caller decides what absent means:
//   - NetworkPolicy spec.podSelector: absent is defaulted to {} (all pods of the namespace).
//   - NetworkPolicy peer podSelector/namespaceSelector: absent means "not constrained by this
//     selector" (the policy's own namespace when namespaceSelector is absent); see netpol.md 1.5.
//   - Deployment spec.selector: required and non-empty (validation rejects anything else).
import type { LabelSelector, LabelSelectorRequirement } from './types.ts';

type Labels = Readonly<Record<string, string>> | undefined;

/** matchLabels and every matchExpressions entry must hold (AND); an empty selector matches everything. */
export function matchesSelector(selector: LabelSelector, labels: Labels): boolean {
  const have = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(have, k) || have[k] !== v) return false;
  }
  return (selector.matchExpressions ?? []).every((r) => matchesRequirement(r, have));
}

function matchesRequirement(r: LabelSelectorRequirement, labels: Readonly<Record<string, string>>): boolean {
  const present = Object.hasOwn(labels, r.key);
  switch (r.operator) {
    case 'In':
      return present && (r.values ?? []).includes(labels[r.key]);
    case 'NotIn':
      return !present || !(r.values ?? []).includes(labels[r.key]);
    case 'Exists':
      return present;
    case 'DoesNotExist':
      return !present;
  }
}

/**
 * A Service's spec.selector. Absent or empty selects no pods: such a Service has no controller-made
 * EndpointSlices (its slices are written by hand), as in the Kubernetes EndpointSlice controller.
 */
export function matchesServiceSelector(selector: Readonly<Record<string, string>> | undefined, labels: Labels): boolean {
  const entries = Object.entries(selector ?? {});
  if (entries.length === 0) return false;
  const have = labels ?? {};
  return entries.every(([k, v]) => Object.hasOwn(have, k) && have[k] === v);
}

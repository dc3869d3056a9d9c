// ObjectMeta, labels, annotations and label selectors, as apimachinery validates them.
import { at, atKey, type Checker, type Fields } from './check.ts';
import { checkDNS1123Label, checkLabelValue, checkQualifiedName } from './names.ts';
import type { LabelSelector, LabelSelectorRequirement } from './types.ts';

/** The API server's limit on the total size of an object's annotations. */
const ANNOTATIONS_MAX_BYTES = 256 * 1024;

/** Validates metadata: the name with the kind's format, the namespace, labels and annotations. */
export function checkObjectMeta(c: Checker, value: unknown, path: string, checkName: (name: string) => string | undefined, namespaced: boolean): void {
  const meta = c.object(value, path, true);
  if (meta === undefined) return;
  const name = c.string(meta.name, at(path, 'name'), true);
  c.format(name, at(path, 'name'), checkName);
  // Cluster-scoped objects may carry a namespace; the API server clears it, and so do the defaults.
  const namespace = c.string(meta.namespace, at(path, 'namespace'));
  if (namespaced) c.format(namespace, at(path, 'namespace'), checkDNS1123Label);
  checkLabels(c, meta.labels, at(path, 'labels'));
  checkAnnotations(c, meta.annotations, at(path, 'annotations'));
  for (const key of ['uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp']) c.string(meta[key], at(path, key));
  c.int(meta.generation, at(path, 'generation'), 0, Number.MAX_SAFE_INTEGER);
}

export function checkLabels(c: Checker, value: unknown, path: string): Record<string, string> | undefined {
  const labels = c.stringMap(value, path);
  for (const [k, v] of Object.entries(labels ?? {})) {
    c.format(k, atKey(path, k), checkQualifiedName);
    c.format(v, atKey(path, k), checkLabelValue);
  }
  return labels;
}

export function checkAnnotations(c: Checker, value: unknown, path: string): Record<string, string> | undefined {
  const annotations = c.stringMap(value, path);
  let bytes = 0;
  for (const [k, v] of Object.entries(annotations ?? {})) {
    c.format(k, atKey(path, k), checkQualifiedName);
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (bytes > ANNOTATIONS_MAX_BYTES) c.add(path, `must have at most ${ANNOTATIONS_MAX_BYTES} bytes in total, got ${bytes}`);
  return annotations;
}

const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

/** Validates a metav1.LabelSelector; returns it only when it is entirely valid. */
export function checkLabelSelector(c: Checker, value: unknown, path: string, required = false): LabelSelector | undefined {
  const before = c.problems.length;
  const fields = c.object(value, path, required);
  if (fields === undefined) return undefined;
  const matchLabels = checkLabels(c, fields.matchLabels, at(path, 'matchLabels'));
  const matchExpressions: LabelSelectorRequirement[] = [];
  for (const [expr, i] of c.objects(fields.matchExpressions, at(path, 'matchExpressions'))) {
    const requirement = checkRequirement(c, expr, at(at(path, 'matchExpressions'), i));
    if (requirement !== undefined) matchExpressions.push(requirement);
  }
  if (c.problems.length !== before) return undefined;
  return {
    ...(matchLabels === undefined ? {} : { matchLabels }),
    ...(fields.matchExpressions == null ? {} : { matchExpressions }),
  };
}

function checkRequirement(c: Checker, expr: Fields, path: string): LabelSelectorRequirement | undefined {
  const key = c.string(expr.key, at(path, 'key'), true);
  c.format(key, at(path, 'key'), checkQualifiedName);
  const operator = c.oneOf(expr.operator, at(path, 'operator'), OPERATORS, true);
  const values = c.strings(expr.values, at(path, 'values'));
  for (const [v, i] of values) c.format(v, at(at(path, 'values'), i), checkLabelValue);
  if ((operator === 'In' || operator === 'NotIn') && values.length === 0) {
    c.add(at(path, 'values'), `must be specified when operator is ${operator}`);
  }
  if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) {
    c.add(at(path, 'values'), `may not be specified when operator is ${operator}`);
  }
  if (key === undefined || operator === undefined) return undefined;
  return { key, operator, ...(values.length > 0 ? { values: values.map(([v]) => v) } : {}) };
}

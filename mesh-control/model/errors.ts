// Coded errors of the cluster-object model. A manifest never fails on its first problem: every
// problem of every document is collected and reported at once, as the API server does per object.

/** One problem with one field of one object; `path` uses the API server's notation (spec.ports[0].port). */
export interface FieldProblem {
  path: string;
  message: string;
}

/** A FieldProblem located in a manifest: `document` is the 1-based position in the YAML stream. */
export interface ManifestProblem extends FieldProblem {
  source: string;
  document: number;
  kind?: string;
  name?: string;
}

export const ERR_MANIFEST_INVALID = 'WEFT_ERR_MANIFEST_INVALID';
export const ERR_MANIFEST_READ = 'WEFT_ERR_MANIFEST_READ';

/** `examples/web.yaml document 2 (Service default/web): spec.ports[0].port: must be ...` */
export function formatProblem(p: ManifestProblem): string {
  const what = p.kind === undefined ? '' : ` (${p.kind}${p.name === undefined ? '' : ` ${p.name}`})`;
  return `${p.source} document ${p.document}${what}: ${p.path === '' ? '' : `${p.path}: `}${p.message}`;
}

/** Thrown by parseManifests/loadManifests when any document is invalid; lists every problem. */
export class ManifestError extends Error {
  readonly code = ERR_MANIFEST_INVALID;
  readonly errors: ManifestProblem[];

  constructor(errors: ManifestProblem[]) {
    super(errors.map(formatProblem).join('\n'));
    this.name = 'ManifestError';
    this.errors = errors;
  }
}

/** A manifest path that cannot be read at all (missing, unreadable, a directory without manifests). */
export class ManifestReadError extends Error {
  readonly code = ERR_MANIFEST_READ;
  readonly path: string;

  constructor(path: string, cause: string) {
    super(`failed to read manifests from ${path}: ${cause}`);
    this.name = 'ManifestReadError';
    this.path = path;
  }
}

// Manifests → validated, defaulted cluster objects. A manifest is a multi-document YAML stream or
// a JSON document; `kind: List` (and `<Kind>List`) documents are expanded into their items. Every
// problem of every document is collected and thrown together as one ManifestError.
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { applyDefaults } from './defaults.ts';
import { ManifestError, ManifestReadError, type ManifestProblem } from './errors.ts';
import { namespacedName, objectKey } from './objects.ts';
import type { ClusterObject } from './types.ts';
import { isKind, validate } from './validate.ts';

// Contract 4 names parse.ts as the model's entry point; the lab imports expandDeployment from here.
export { expandDeployment } from './deployment.ts';

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

interface Decoded {
  document: number;
  value?: unknown;
  /** Syntax errors, already located ("line 3, column 5: ..."). */
  errors: string[];
}

/** JSON is tried first for text that looks like JSON (tab indentation is valid JSON, not YAML). */
function decode(text: string): Decoded[] {
  if (/^\s*[{[]/.test(text)) {
    try {
      return [{ document: 1, value: JSON.parse(text), errors: [] }];
    } catch {
      // Not JSON after all (a YAML flow mapping, or broken): YAML reports where it breaks.
    }
  }
  return parseAllDocuments(text, { merge: true }).map((doc, i) => {
    const errors = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const message = e.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '');
      return pos === undefined ? message : `line ${pos.line}, column ${pos.col}: ${message}`;
    });
    if (errors.length > 0) return { document: i + 1, errors };
    try {
      return { document: i + 1, value: doc.toJS(), errors };
    } catch (err) {
      return { document: i + 1, errors: [(err as Error).message] };
    }
  });
}

type Fields = Record<string, unknown>;
const isFields = (v: unknown): v is Fields => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Items of a List document (each with its path prefix), or the document itself. */
function expandList(value: unknown): { value: unknown; prefix: string }[] {
  if (!isFields(value) || typeof value.kind !== 'string' || !value.kind.endsWith('List') || !Array.isArray(value.items)) {
    return [{ value, prefix: '' }];
  }
  // Typed lists (ServiceList) as the API returns them: items carry no kind or apiVersion.
  const itemKind = value.kind.slice(0, -'List'.length);
  const inherited = isKind(itemKind) && typeof value.apiVersion === 'string' ? { kind: itemKind, apiVersion: value.apiVersion } : {};
  return value.items.map((item, i) => ({ value: isFields(item) ? { ...inherited, ...item } : item, prefix: `items[${i}]` }));
}

/** Kind and name as far as they can be read from an object that may be invalid. */
function identify(value: unknown): { kind?: string; name?: string } {
  if (!isFields(value) || typeof value.kind !== 'string') return {};
  const kind = value.kind;
  const meta = isFields(value.metadata) ? value.metadata : {};
  if (typeof meta.name !== 'string') return { kind };
  if (!isKind(kind)) return { kind, name: meta.name };
  return { kind, name: namespacedName({ kind, metadata: { name: meta.name, namespace: typeof meta.namespace === 'string' ? meta.namespace : undefined } }) };
}

/** Where each object was first defined, by objectKey: shared across the files of one load. */
type Seen = Map<string, string>;

function collect(text: string, source: string, problems: ManifestProblem[], seen: Seen): ClusterObject[] {
  const objects: ClusterObject[] = [];
  for (const { document, value, errors } of decode(text)) {
    for (const message of errors) problems.push({ source, document, path: '', message });
    if (value === undefined || value === null) continue;
    for (const item of expandList(value)) {
      const found = validate(item.value);
      const where = identify(item.value);
      for (const p of found) {
        const path = item.prefix === '' ? p.path : p.path === '' ? item.prefix : `${item.prefix}.${p.path}`;
        problems.push({ source, document, ...where, path, message: p.message });
      }
      if (found.length > 0) continue;
      const obj = applyDefaults(item.value as ClusterObject);
      const key = objectKey(obj);
      const first = seen.get(key);
      if (first !== undefined) {
        problems.push({ source, document, ...where, path: item.prefix, message: `duplicate ${obj.kind} ${namespacedName(obj)} (first defined in ${first})` });
        continue;
      }
      seen.set(key, `${source} document ${document}`);
      objects.push(obj);
    }
  }
  return objects;
}

export function parseManifests(text: string, source: string): ClusterObject[] {
  const problems: ManifestProblem[] = [];
  const objects = collect(text, source, problems, new Map());
  if (problems.length > 0) throw new ManifestError(problems);
  return objects;
}

function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  return (err as Error).message;
}

/** A manifest file, or every *.yaml, *.yml and *.json file of a directory (not recursive), in name order. */
export async function loadManifests(fileOrDir: string): Promise<ClusterObject[]> {
  let files: string[];
  try {
    if ((await stat(fileOrDir)).isDirectory()) {
      const entries = await readdir(fileOrDir, { withFileTypes: true });
      files = entries
        .filter((e) => !e.isDirectory() && MANIFEST_EXTENSIONS.has(extname(e.name)))
        .map((e) => e.name)
        .sort()
        .map((name) => join(fileOrDir, name));
    } else {
      files = [fileOrDir];
    }
  } catch (err) {
    throw new ManifestReadError(fileOrDir, readFailure(err));
  }
  if (files.length === 0) throw new ManifestReadError(fileOrDir, 'the directory has no *.yaml, *.yml or *.json files');
  const problems: ManifestProblem[] = [];
  const seen: Seen = new Map();
  const objects: ClusterObject[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ManifestReadError(file, readFailure(err));
    }
    objects.push(...collect(text, file, problems, seen));
  }
  if (problems.length > 0) throw new ManifestError(problems);
  return objects;
}

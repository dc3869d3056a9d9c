// Reads untrusted decoded YAML/JSON field by field, recording a problem for every field of the
// wrong type instead of throwing. `null` counts as absent, as in the API server's decoder.
import type { FieldProblem } from './errors.ts';
import { isIPv4, parseCidr, type Cidr } from './cidr.ts';

export type Fields = Record<string, unknown>;

/** `at('spec', 'ports')` → spec.ports; `at('spec.ports', 0)` → spec.ports[0]. */
export function at(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path === '' ? key : `${path}.${key}`;
}

/** Map keys (label keys, annotation keys) the way the API server prints them: metadata.labels[app]. */
export function atKey(path: string, key: string): string {
  return `${path}[${key}]`;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'an object';
  return JSON.stringify(value);
}

function isFields(value: unknown): value is Fields {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export class Checker {
  readonly problems: FieldProblem[] = [];

  add(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  private absent(value: unknown, path: string, required: boolean): boolean {
    if (value !== undefined && value !== null) return false;
    if (required) this.add(path, 'required');
    return true;
  }

  private wrong(path: string, expected: string, value: unknown): undefined {
    this.add(path, `must be ${expected}, got ${describe(value)}`);
    return undefined;
  }

  object(value: unknown, path: string, required = false): Fields | undefined {
    if (this.absent(value, path, required)) return undefined;
    return isFields(value) ? value : this.wrong(path, 'an object', value);
  }

  array(value: unknown, path: string, required = false): unknown[] | undefined {
    if (this.absent(value, path, required)) return undefined;
    return Array.isArray(value) ? value : this.wrong(path, 'a list', value);
  }

  /** A list of objects; wrong-typed items are reported and skipped (their index is kept). */
  objects(value: unknown, path: string, required = false): [Fields, number][] {
    const list = this.array(value, path, required) ?? [];
    const out: [Fields, number][] = [];
    list.forEach((item, i) => {
      const fields = this.object(item, at(path, i), true);
      if (fields !== undefined) out.push([fields, i]);
    });
    return out;
  }

  string(value: unknown, path: string, required = false): string | undefined {
    if (this.absent(value, path, required)) return undefined;
    if (typeof value !== 'string') return this.wrong(path, 'a string', value);
    if (required && value === '') this.add(path, 'required');
    return value;
  }

  /** A list of strings; wrong-typed items are reported and left out. */
  strings(value: unknown, path: string, required = false): [string, number][] {
    const list = this.array(value, path, required) ?? [];
    const out: [string, number][] = [];
    list.forEach((item, i) => {
      const s = this.string(item, at(path, i), true);
      if (s !== undefined) out.push([s, i]);
    });
    return out;
  }

  bool(value: unknown, path: string): boolean | undefined {
    if (this.absent(value, path, false)) return undefined;
    return typeof value === 'boolean' ? value : this.wrong(path, 'true or false', value);
  }

  /** An integer in [min, max]; max = MAX_SAFE_INTEGER reads as "an integer >= min". */
  int(value: unknown, path: string, min: number, max: number, required = false): number | undefined {
    if (this.absent(value, path, required)) return undefined;
    const expected = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer ${min}-${max}`;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) return this.wrong(path, expected, value);
    return value;
  }

  port(value: unknown, path: string, required = false): number | undefined {
    return this.int(value, path, 1, 65535, required);
  }

  oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[], required = false): T | undefined {
    if (this.absent(value, path, required)) return undefined;
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
    return this.wrong(path, `one of ${allowed.join(', ')}`, value);
  }

  /** A string→string map (labels, annotations, selectors); null values are errors, not absences. */
  stringMap(value: unknown, path: string): Record<string, string> | undefined {
    const fields = this.object(value, path);
    if (fields === undefined) return undefined;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(fields)) {
      if (typeof v === 'string') out[k] = v;
      else this.wrong(atKey(path, k), 'a string', v);
    }
    return out;
  }

  /** Runs a name-format check (names.ts) and records its message. */
  format(value: string | undefined, path: string, check: (v: string) => string | undefined): void {
    if (value === undefined || value === '') return;
    const message = check(value);
    if (message !== undefined) this.add(path, message);
  }

  ipv4(value: unknown, path: string, required = false): string | undefined {
    const s = this.string(value, path, required);
    if (s !== undefined && s !== '' && !isIPv4(s)) this.add(path, `must be an IPv4 address, got ${JSON.stringify(s)}`);
    return s;
  }

  /** A CIDR; `strict` rejects host bits (as for podCIDR). Returns the parsed network when valid. */
  cidr(value: unknown, path: string, strict: boolean, required = false): Cidr | undefined {
    const s = this.string(value, path, required);
    if (s === undefined || s === '') return undefined;
    try {
      return parseCidr(s, strict);
    } catch (err) {
      this.add(path, `must be an IPv4 CIDR: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Reports every entry whose key was already seen, naming where it was first. */
  unique(entries: { key: string | undefined; path: string }[], what: string): void {
    const seen = new Map<string, string>();
    for (const { key, path } of entries) {
      if (key === undefined) continue;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, path);
      else this.add(path, `duplicate ${what} ${key} (also at ${first})`);
    }
  }
}

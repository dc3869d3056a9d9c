// A small, strict flag parser shared by every `weft` subcommand: unknown flags and missing values
// are errors that name the flag, never silently ignored.

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface FlagSpec {
  /** Flags that take a value (`--nodes 3`, `--nodes=3`); repeated flags keep the last value unless listed in `repeatable`. */
  values?: string[];
  /** Flags that take no value. */
  booleans?: string[];
  /** Value flags that may be given more than once; all values are kept. */
  repeatable?: string[];
  /** Short aliases, e.g. `{ f: 'file', o: 'output' }`. */
  aliases?: Record<string, string>;
}

export interface ParsedArgs {
  flags: Map<string, string>;
  lists: Map<string, string[]>;
  booleans: Set<string>;
  positionals: string[];
  /** Everything after a bare `--`, untouched. */
  rest: string[];
}

export function parseArgs(argv: string[], spec: FlagSpec): ParsedArgs {
  const values = new Set(spec.values ?? []);
  const booleans = new Set(spec.booleans ?? []);
  const repeatable = new Set(spec.repeatable ?? []);
  const out: ParsedArgs = { flags: new Map(), lists: new Map(), booleans: new Set(), positionals: [], rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      out.positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
    } else {
      const short = arg.slice(1, 2);
      name = spec.aliases?.[short] ?? short;
      inline = arg.length > 2 ? arg.slice(2).replace(/^=/, '') : undefined;
      if (!spec.aliases?.[short]) throw new UsageError(`unknown flag ${arg}`);
    }
    if (booleans.has(name)) {
      if (inline !== undefined) throw new UsageError(`flag --${name} takes no value (got "${inline}")`);
      out.booleans.add(name);
    } else if (values.has(name) || repeatable.has(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`flag --${name} needs a value`);
      if (repeatable.has(name)) out.lists.set(name, [...(out.lists.get(name) ?? []), value]);
      out.flags.set(name, value);
    } else {
      throw new UsageError(`unknown flag --${name}`);
    }
  }
  return out;
}

export function intFlag(args: ParsedArgs, name: string, fallback: number, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  const raw = args.flags.get(name);
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`flag --${name}: "${raw}" is not an integer`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`flag --${name}: ${n} is out of range ${min}..${max}`);
  return n;
}

export function choiceFlag<T extends string>(args: ParsedArgs, name: string, choices: readonly T[], fallback: T): T {
  const raw = args.flags.get(name);
  if (raw === undefined) return fallback;
  if (!(choices as readonly string[]).includes(raw)) throw new UsageError(`flag --${name}: "${raw}" is not one of ${choices.join(', ')}`);
  return raw as T;
}

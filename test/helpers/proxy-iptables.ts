// Test helpers for iptables-restore text: parse it, normalize it for order-insensitive comparison
// (as kube-proxy's assertIPTablesRulesEqual), check that every jump has a target chain, and trace a
// packet through it (as kube-proxy's tracePacket).
import { contains, parseCidr, parseIPv4 } from '../../mesh-control/model/cidr.ts';

export interface ParsedRule {
  raw: string;
  chain: string;
  args: string[];
}

export interface ParsedTable {
  chains: string[];
  rules: ParsedRule[];
  deleted: string[];
}

const TARGETS = new Set(['ACCEPT', 'DROP', 'REJECT', 'RETURN', 'DNAT', 'SNAT', 'MASQUERADE', 'MARK']);

/** Splits a rule line like a shell would for iptables-restore (double quotes group words). */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2]);
  return out;
}

export function parseRestore(text: string): Map<string, ParsedTable> {
  const tables = new Map<string, ParsedTable>();
  let current: ParsedTable | undefined;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      current = tables.get(line.slice(1)) ?? { chains: [], rules: [], deleted: [] };
      tables.set(line.slice(1), current);
    } else if (line === 'COMMIT') current = undefined;
    else if (!current) throw new Error(`line outside a table: ${line}`);
    else if (line.startsWith(':')) current.chains.push(line.slice(1).split(' ')[0]);
    else if (line.startsWith('-X ')) current.deleted.push(line.slice(3));
    else if (line.startsWith('-A ')) {
      const args = tokenize(line);
      current.rules.push({ raw: line, chain: args[1], args: args.slice(2) });
    } else throw new Error(`unexpected line: ${line}`);
  }
  return tables;
}

/** Chains sorted; rules grouped by chain (order kept inside a chain), chains sorted. */
export function normalizeRestore(text: string): string {
  const out: string[] = [];
  for (const [name, t] of [...parseRestore(text)].sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`*${name}`, ...[...t.chains].sort().map((c) => `:${c}`));
    const byChain = new Map<string, string[]>();
    for (const r of t.rules) byChain.set(r.chain, [...(byChain.get(r.chain) ?? []), r.raw]);
    for (const c of [...byChain.keys()].sort()) out.push(...(byChain.get(c) as string[]));
    out.push(...[...t.deleted].sort().map((c) => `-X ${c}`), 'COMMIT');
  }
  return out.join('\n');
}

/** Jumps (-j/-g) to chains not declared in the same table; built-in chains count as declared. */
export function danglingJumps(text: string, builtin: readonly string[] = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']): string[] {
  const problems: string[] = [];
  for (const [name, t] of parseRestore(text)) {
    const defined = new Set([...t.chains, ...builtin]);
    for (const c of t.deleted) defined.delete(c);
    for (const r of t.rules) {
      if (!defined.has(r.chain)) problems.push(`${name}: rule in undeclared chain: ${r.raw}`);
      const i = r.args.findIndex((a) => a === '-j' || a === '-g');
      if (i === -1) continue;
      const target = r.args[i + 1];
      if (!TARGETS.has(target) && !defined.has(target)) problems.push(`${name}: jump to undefined chain ${target}: ${r.raw}`);
    }
  }
  return problems;
}

export interface TraceResult {
  matches: string[];
  /** "ip:port, ip:port", or ACCEPT / DROP / REJECT, or "" when nothing matched. */
  output: string;
  masq: boolean;
}

/**
 * What happens to a new packet: nat SERVICES (DNAT), then the filter chains the proxy owns, on the
 * post-DNAT destination. Probabilistic jumps collect every candidate; state checks (recent, mark,
 * conntrack) never match.
 */
export function tracePacket(text: string, prefix: string, packet: { src: string; dst: string; dport: number; protocol?: string }, nodeIPs: readonly string[]): TraceResult {
  const tables = parseRestore(text);
  const local = new Set(['127.0.0.1', ...nodeIPs]);
  const protocol = packet.protocol ?? 'tcp';
  const matches: string[] = [];
  const outputs: string[] = [];
  let masq = false;
  let dst = packet.dst;

  const addrMatches = (spec: string, ip: string): boolean => (spec.includes('/') ? contains(parseCidr(spec, false), parseIPv4(ip)) : spec === ip);
  const ruleMatches = (args: string[]): boolean => {
    for (let i = 0; i < args.length; i++) {
      const neg = args[i] === '!';
      const opt = neg ? args[++i] : args[i];
      const val = args[i + 1];
      let ok: boolean | undefined;
      switch (opt) {
        case '-s': ok = addrMatches(val, packet.src); break;
        case '-d': ok = addrMatches(val, dst); break;
        case '-p': ok = val === protocol; break;
        case '--dport': ok = Number(val) === packet.dport; break;
        case '--src-type': ok = (val === 'LOCAL') === local.has(packet.src); break;
        case '--dst-type': ok = (val === 'LOCAL') === local.has(dst); break;
        case '--rcheck': case '--mark': case '--ctstate': return false;
      }
      if (ok !== undefined && ok === neg) return false;
    }
    return true;
  };
  const run = (table: string, chain: string): boolean => {
    const rules = tables.get(table)?.rules.filter((r) => r.chain === chain) ?? [];
    for (const r of rules) {
      const j = r.args.findIndex((a) => a === '-j' || a === '-g');
      if (j === -1 || !ruleMatches(r.args.slice(0, j))) continue;
      matches.push(r.raw);
      const target = r.args[j + 1];
      if (target === `${prefix}-MARK-MASQ`) masq = true;
      else if (target === 'ACCEPT' || target === 'DROP' || target === 'REJECT') {
        outputs.push(target);
        return true;
      } else if (target === 'DNAT') {
        outputs.push(r.args[r.args.indexOf('--to-destination') + 1]);
        return true;
      } else if (run(table, target) && !r.args.includes('--probability')) return true;
    }
    return false;
  };
  run('nat', `${prefix}-SERVICES`);
  if (outputs.length > 0) dst = outputs[0].split(':')[0];
  for (const c of ['SERVICES', 'EXTERNAL-SERVICES', 'NODEPORTS', 'PROXY-FIREWALL']) run('filter', `${prefix}-${c}`);
  return { matches, output: outputs.join(', '), masq };
}

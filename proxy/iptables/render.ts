// ProxyState → iptables rules, in kube-proxy's chain layout (see proxy/README.md), and the
// iptables-restore --noflush text for a full or a partial sync. Pure.
//
// iptables-restore must be given every rule of any chain it mentions, but leaves unmentioned chains
// alone. So the top-level chains are written on every sync, while a service port's own chains
// (SVC/SVL/EXT/FW/SEP) are written only when their text changed since the last applied ruleset.
import type { ProxyServicePort, ProxyState } from '../model/types.ts';
import { hash16, isServiceChain, topLevelChains } from './chain-names.ts';

export interface IptablesRenderOptions {
  /** Chain-name prefix: "WEFT" (default) so weft and kube-proxy never touch each other's chains; "KUBE" for drop-in names. */
  chainPrefix?: string;
  /** Default 0x4000 (kube-proxy's bit 14). */
  masqueradeMark?: number;
  /** Masquerade every packet to a ClusterIP, not only off-cluster ones. */
  masqueradeAll?: boolean;
  /** MASQUERADE --random-fully (supported by iptables ≥ 1.6.2). */
  randomFully?: boolean;
  /** DROP ctstate INVALID in the FORWARD chain (kube-proxy does when nf_conntrack_tcp_be_liberal is 0). */
  dropInvalid?: boolean;
  /** Above this many endpoints per-endpoint comments are left out, as kube-proxy does (default 1000). */
  largeClusterEndpointsThreshold?: number;
}

/** The nat chains and rules one service port owns. */
export interface IptablesServiceRules {
  chains: string[];
  rules: string[];
}

export interface IptablesRuleset {
  prefix: string;
  filter: { chains: string[]; rules: string[] };
  /** Top-level nat chains and their rules (always written). */
  nat: { chains: string[]; rules: string[] };
  /** Keyed by "ns/svc:port/protocol". */
  services: Map<string, IptablesServiceRules>;
}

/** Rule i of n jumps with probability 1/(n-i), printed with 10 decimals as kube-proxy does. */
export function probability(n: number): string {
  return (1 / n).toFixed(10);
}

export function renderIptables(state: ProxyState, options: IptablesRenderOptions = {}, cache?: IptablesRenderCache): IptablesRuleset {
  const P = options.chainPrefix ?? 'WEFT';
  const top = topLevelChains(P);
  const mark = `0x${(options.masqueradeMark ?? 0x4000).toString(16)}`;
  const withComments = state.endpointCount <= (options.largeClusterEndpointsThreshold ?? 1000);
  const ifLocal = state.clusterCIDR ? `-s ${state.clusterCIDR}` : '';
  const ifNotLocal = state.clusterCIDR ? `! -s ${state.clusterCIDR}` : '';
  const markMasq = `-j ${top.markMasq}`;

  const ctx: RenderContext = { P, top, withComments, ifLocal, ifNotLocal, markMasq, masqueradeAll: options.masqueradeAll ?? false };
  const ctxKey = JSON.stringify(ctx);
  if (cache && cache.key !== ctxKey) {
    cache.key = ctxKey;
    cache.fragments = new WeakMap();
  }
  const lines = topLines();
  const { fNodePorts, fServices, fExternal, fFirewall, nServices, nNodePorts } = lines;
  const services = new Map<string, IptablesServiceRules>();
  for (const sp of state.servicePorts) {
    let fragment = cache?.fragments.get(sp);
    if (!fragment) {
      fragment = renderServicePort(sp, ctx);
      cache?.fragments.set(sp, fragment);
    }
    for (const k of TOP_LINE_KEYS) for (const r of fragment.top[k]) lines[k].push(r);
    services.set(sp.id, fragment);
  }

  nServices.push(`-A ${top.services} -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j ${top.nodePorts}`);
  const natRules = [
    ...nNodePorts,
    ...nServices,
    `-A ${top.markMasq} -j MARK --or-mark ${mark}`,
    `-A ${top.postrouting} -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A ${top.postrouting} -j MARK --xor-mark ${mark}`,
    `-A ${top.postrouting} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE${options.randomFully ? ' --random-fully' : ''}`,
  ];
  const forward = [
    ...(options.dropInvalid ? [`-A ${top.forward} -m conntrack --ctstate INVALID -j DROP`] : []),
    `-A ${top.forward} -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`,
    `-A ${top.forward} -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  ];
  return {
    prefix: P,
    filter: {
      chains: [top.nodePorts, top.services, top.externalServices, top.forward, top.proxyFirewall],
      rules: [...fNodePorts, ...fServices, ...fExternal, ...forward, ...fFirewall],
    },
    nat: { chains: [top.nodePorts, top.services, top.markMasq, top.postrouting], rules: natRules },
    services,
  };
}

interface RenderContext {
  P: string;
  top: ReturnType<typeof topLevelChains>;
  withComments: boolean;
  ifLocal: string;
  ifNotLocal: string;
  markMasq: string;
  masqueradeAll: boolean;
}

/** Lines of the top-level chains, by chain: filter (f…) and nat (n…). */
const TOP_LINE_KEYS = ['fNodePorts', 'fServices', 'fExternal', 'fFirewall', 'nServices', 'nNodePorts'] as const;
type TopLines = Record<(typeof TOP_LINE_KEYS)[number], string[]>;
const topLines = (): TopLines => ({ fNodePorts: [], fServices: [], fExternal: [], fFirewall: [], nServices: [], nNodePorts: [] });

/** A service port's own chains and rules plus its lines in the top-level chains. */
interface IptablesServiceFragment extends IptablesServiceRules {
  top: TopLines;
}

/** Renders of unchanged service ports (same ProxyServicePort object, see createProxyStateBuilder), valid while the context is the same. */
export interface IptablesRenderCache {
  key: string;
  fragments: WeakMap<ProxyServicePort, IptablesServiceFragment>;
}

export function createIptablesRenderCache(): IptablesRenderCache {
  return { key: '', fragments: new WeakMap() };
}

function renderServicePort(sp: ProxyServicePort, ctx: RenderContext): IptablesServiceFragment {
  const { P, top, withComments, ifLocal, ifNotLocal, markMasq } = ctx;
  const lines = topLines();
  const { fNodePorts, fServices, fExternal, fFirewall, nServices, nNodePorts } = lines;
  const p = sp.protocol;
  const proto = `-m ${p} -p ${p}`;
  const key = sp.key;
  const h = hash16(key + p);
  const svc = `${P}-SVC-${h}`;
  const svl = `${P}-SVL-${h}`;
  const ext = `${P}-EXT-${h}`;
  const fw = `${P}-FW-${h}`;
  const sepName = new Map(sp.reachableEndpoints.map((ep) => [ep, `${P}-SEP-${hash16(key + p + ep.address)}`]));

  const usesClusterChain = sp.clusterEndpoints.length > 0 && sp.usesClusterEndpoints;
  const usesLocalChain = sp.localEndpoints.length > 0 && sp.usesLocalEndpoints;
  const internalChain = sp.internalPolicyLocal ? svl : svc;
  const hasInternal = sp.hasEndpoints && (!sp.internalPolicyLocal || sp.localEndpoints.length > 0);
  const externalPolicyChain = sp.externalPolicyLocal ? svl : svc;
  const hasExternal = sp.hasEndpoints && (!sp.externalPolicyLocal || sp.localEndpoints.length > 0);
  // EXT is needed even without external endpoints: it short-circuits pod and node traffic.
  const usesExtChain = sp.hasEndpoints && sp.externallyAccessible;
  const usesFwChain = sp.hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const lbChain = usesFwChain ? fw : ext;

  const noEndpoints = `"${key} has no endpoints"`;
  const noLocal = `"${key} has no local endpoints"`;
  const internalFilter = !sp.hasEndpoints ? `-m comment --comment ${noEndpoints}` : `-m comment --comment ${noLocal}`;
  const internalVerdict = !sp.hasEndpoints ? 'REJECT' : 'DROP';
  const externalFilter = internalFilter;
  const externalVerdict = internalVerdict;

  const clusterIPMatch = `-m comment --comment "${key} cluster IP" ${proto} -d ${sp.clusterIP} --dport ${sp.port}`;
  if (hasInternal) nServices.push(`-A ${top.services} ${clusterIPMatch} -j ${internalChain}`);
  else fServices.push(`-A ${top.services} ${internalFilter} ${proto} -d ${sp.clusterIP} --dport ${sp.port} -j ${internalVerdict}`);

  for (const ip of sp.externalIPs) {
    if (sp.hasEndpoints) nServices.push(`-A ${top.services} -m comment --comment "${key} external IP" ${proto} -d ${ip} --dport ${sp.port} -j ${ext}`);
    if (!hasExternal) fExternal.push(`-A ${top.externalServices} ${externalFilter} ${proto} -d ${ip} --dport ${sp.port} -j ${externalVerdict}`);
  }
  for (const ip of sp.loadBalancerIPs) {
    if (sp.hasEndpoints) nServices.push(`-A ${top.services} -m comment --comment "${key} loadbalancer IP" ${proto} -d ${ip} --dport ${sp.port} -j ${lbChain}`);
    if (usesFwChain) fFirewall.push(`-A ${top.proxyFirewall} -m comment --comment "${key} traffic not accepted by ${fw}" ${proto} -d ${ip} --dport ${sp.port} -j DROP`);
  }
  if (!hasExternal) {
    for (const ip of sp.loadBalancerIPs) fExternal.push(`-A ${top.externalServices} ${externalFilter} ${proto} -d ${ip} --dport ${sp.port} -j ${externalVerdict}`);
  }
  if (sp.nodePort !== 0) {
    if (sp.hasEndpoints) nNodePorts.push(`-A ${top.nodePorts} -m comment --comment ${key} ${proto} --dport ${sp.nodePort} -j ${ext}`);
    if (!hasExternal) fExternal.push(`-A ${top.externalServices} ${externalFilter} -m addrtype --dst-type LOCAL ${proto} --dport ${sp.nodePort} -j ${externalVerdict}`);
  }
  // Accepted whether or not there are local endpoints: the load balancer must get its 503.
  if (sp.healthCheckNodePort !== 0) {
    fNodePorts.push(`-A ${top.nodePorts} -m comment --comment "${key} health check node port" -m tcp -p tcp --dport ${sp.healthCheckNodePort} -j ACCEPT`);
  }

  const chains: string[] = [];
  const rules: string[] = [];
  if (hasInternal) {
    // Off-cluster clients reaching a ClusterIP (a static route to the service range via this
    // node) may be answered from another node: masquerade so replies come back here.
    if (ctx.masqueradeAll) rules.push(`-A ${internalChain} ${clusterIPMatch} ${markMasq}`);
    else if (ifNotLocal) rules.push(`-A ${internalChain} ${clusterIPMatch} ${ifNotLocal} ${markMasq}`);
  }
  if (usesExtChain) {
    chains.push(ext);
    if (!sp.externalPolicyLocal) {
      rules.push(`-A ${ext} -m comment --comment "masquerade traffic for ${key} external destinations" ${markMasq}`);
    } else {
      // Pods and the node itself reach external IPs of a Local service through all endpoints, as
      // if they had gone out to the load balancer and come back in; only the node needs SNAT
      // (its source would be the local VIP).
      if (ifLocal) rules.push(`-A ${ext} -m comment --comment "pod traffic for ${key} external destinations" ${ifLocal} -j ${svc}`);
      rules.push(`-A ${ext} -m comment --comment "masquerade LOCAL traffic for ${key} external destinations" -m addrtype --src-type LOCAL ${markMasq}`);
      rules.push(`-A ${ext} -m comment --comment "route LOCAL traffic for ${key} external destinations" -m addrtype --src-type LOCAL -j ${svc}`);
    }
    if (hasExternal) rules.push(`-A ${ext} -j ${externalPolicyChain}`);
  }
  if (usesFwChain) {
    chains.push(fw);
    const head = `-A ${fw} -m comment --comment "${key} loadbalancer IP"`;
    for (const range of sp.loadBalancerSourceRanges) rules.push(`${head} -s ${range} -j ${ext}`);
    // A node reaching its own LB VIP loops back with the VIP as source.
    if (sp.sourceRangesAllowNode) for (const ip of sp.loadBalancerIPs) rules.push(`${head} -s ${ip} -j ${ext}`);
    rules.push(`-A ${fw} -m comment --comment "other traffic to ${key} will be dropped by ${top.proxyFirewall}"`);
  }
  const writeEndpointJumps = (chain: string, eps: ProxyServicePort['clusterEndpoints']): void => {
    chains.push(chain);
    if (sp.affinityTimeoutSeconds > 0) {
      for (const ep of eps) {
        const sep = sepName.get(ep) as string;
        const comment = withComments ? ` -m comment --comment "${key} -> ${ep.address}"` : '';
        rules.push(`-A ${chain}${comment} -m recent --name ${sep} --rcheck --seconds ${sp.affinityTimeoutSeconds} --reap -j ${sep}`);
      }
    }
    const n = eps.length;
    eps.forEach((ep, i) => {
      const comment = withComments ? ` -m comment --comment "${key} -> ${ep.address}"` : '';
      const stat = i < n - 1 ? ` -m statistic --mode random --probability ${probability(n - i)}` : '';
      rules.push(`-A ${chain}${comment}${stat} -j ${sepName.get(ep)}`);
    });
  };
  if (usesClusterChain) writeEndpointJumps(svc, sp.clusterEndpoints);
  if (usesLocalChain) writeEndpointJumps(svl, sp.localEndpoints);
  for (const ep of sp.reachableEndpoints) {
    const sep = sepName.get(ep) as string;
    chains.push(sep);
    const comment = withComments ? ` -m comment --comment ${key}` : '';
    // Hairpin: an endpoint reaching itself through the service must see the node as source.
    rules.push(`-A ${sep}${comment} -s ${ep.ip} ${markMasq}`);
    const affinity = sp.affinityTimeoutSeconds > 0 ? ` -m recent --name ${sep} --set` : '';
    rules.push(`-A ${sep}${comment}${affinity} ${proto} -j DNAT --to-destination ${ep.address}`);
  }
  return { chains, rules, top: lines };
}

function section(table: string, chains: Iterable<string>, rules: readonly string[][], tail: readonly string[] = []): string {
  const lines = [`*${table}`];
  for (const c of chains) lines.push(`:${c} - [0:0]`);
  for (const group of rules) for (const r of group) lines.push(r);
  for (const t of tail) lines.push(t);
  lines.push('COMMIT');
  return lines.join('\n');
}

/**
 * Everything, for the first sync and after any failure. `existingChains`: chain names found in the
 * nat table (iptables-save), so that service chains left from an earlier run are deleted.
 */
export function iptablesRestoreFull(ruleset: IptablesRuleset, existingChains: Iterable<string> = []): string {
  const canary = topLevelChains(ruleset.prefix).canary;
  const active = new Set<string>();
  const serviceChains: string[] = [];
  const serviceRules: string[][] = [];
  for (const s of ruleset.services.values()) {
    for (const c of s.chains) {
      active.add(c);
      serviceChains.push(c);
    }
    serviceRules.push(s.rules);
  }
  const stale = [...new Set(existingChains)].filter((c) => isServiceChain(ruleset.prefix, c) && !active.has(c));
  return [
    section('mangle', [canary], []),
    section('filter', [...ruleset.filter.chains, canary], [ruleset.filter.rules]),
    section('nat', [...ruleset.nat.chains, canary, ...serviceChains, ...stale], [ruleset.nat.rules, ...serviceRules], stale.map((c) => `-X ${c}`)),
    '',
  ].join('\n');
}

/**
 * Only what changed since `previous` (the last ruleset applied successfully): the top-level chains,
 * the chains of service ports whose rules differ, and -X for chains that no longer exist.
 */
export function iptablesRestorePartial(ruleset: IptablesRuleset, previous: IptablesRuleset): string {
  const serviceChains: string[] = [];
  const serviceRules: string[][] = [];
  for (const [id, s] of ruleset.services) {
    const before = previous.services.get(id);
    if (before === s || (before && sameLines(before.rules, s.rules) && sameLines(before.chains, s.chains))) continue;
    serviceChains.push(...s.chains);
    serviceRules.push(s.rules);
  }
  // Chain names hash the service port (and endpoint), so a chain can only live on in the same
  // service port: only changed or removed ones can leave stale chains.
  const stale: string[] = [];
  for (const [id, s] of previous.services) {
    const now = ruleset.services.get(id);
    if (now === s) continue;
    const kept = new Set(now?.chains);
    for (const c of s.chains) if (!kept.has(c)) stale.push(c);
  }
  const filter = topLevelUpdate(ruleset.filter, previous.filter);
  const nat = topLevelUpdate(ruleset.nat, previous.nat);
  return [
    section('filter', filter.chains, [filter.rules]),
    section('nat', [...nat.chains, ...serviceChains, ...stale], [nat.rules, ...serviceRules], stale.map((c) => `-X ${c}`)),
    '',
  ].join('\n');
}

/** Below this many rules a top-level chain is always rewritten whole. */
const REWRITE_BELOW = 64;

/**
 * A top-level chain is rewritten whole (declared, so --noflush flushes it, then every rule) unless
 * it is long and few of its rules changed: then its removed rules are deleted by spec and its new
 * ones inserted at the head. Rewriting WEFT-SERVICES at 10k services costs ~1.2 s in
 * iptables-restore (nf_tables backend); one -D and one -I cost ~0.2 s. Order-safe because the
 * rules a service port contributes to a top-level chain match disjoint destinations, and the
 * rules that must stay last (the NODEPORTS jump) never change, so head insertion keeps them last.
 */
function topLevelUpdate(now: IptablesRuleset['nat'], before: IptablesRuleset['nat']): { chains: string[]; rules: string[] } {
  const byChainNow = rulesByChain(now.rules);
  const byChainBefore = rulesByChain(before.rules);
  const chains: string[] = [];
  const rewritten: string[] = [];
  const edits: string[] = [];
  for (const chain of now.chains) {
    const rulesNow = byChainNow.get(chain) ?? [];
    const rulesBefore = before.chains.includes(chain) ? byChainBefore.get(chain) ?? [] : undefined;
    const diff = rulesBefore && rulesBefore.length >= REWRITE_BELOW ? ruleDiff(rulesBefore, rulesNow) : undefined;
    if (diff && (diff.removed.length + diff.added.length) * 4 <= rulesBefore!.length) {
      for (const r of diff.removed) edits.push(`-D ${r.slice(3)}`);
      for (const r of diff.added) edits.push(`-I ${chain} 1 ${r.slice(4 + chain.length)}`);
      continue;
    }
    chains.push(chain);
    for (const r of rulesNow) rewritten.push(r);
  }
  return { chains, rules: [...rewritten, ...edits] };
}

function rulesByChain(rules: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of rules) {
    const chain = r.slice(3, r.indexOf(' ', 3));
    let list = out.get(chain);
    if (!list) out.set(chain, (list = []));
    list.push(r);
  }
  return out;
}

/** Multiset difference of two rule lists; undefined when the last rule changed (head inserts would not keep it last). */
function ruleDiff(before: readonly string[], now: readonly string[]): { removed: string[]; added: string[] } | undefined {
  const count = new Map<string, number>();
  for (const r of before) count.set(r, (count.get(r) ?? 0) + 1);
  const added: string[] = [];
  for (const r of now) {
    const c = count.get(r) ?? 0;
    if (c > 0) count.set(r, c - 1);
    else added.push(r);
  }
  const removed: string[] = [];
  for (const [r, c] of count) for (let i = 0; i < c; i++) removed.push(r);
  // The last rule (the NODEPORTS jump in SERVICES) must still be the last one after head inserts.
  if (before.length > 0 && now.length > 0 && before[before.length - 1] !== now[now.length - 1]) return undefined;
  return { removed, added };
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

/**
 * The jumps from the built-in chains into the proxy's chains. They live in chains the proxy does
 * not own, so they are ensured one by one (check, then insert) on full syncs rather than restored.
 */
export function iptablesJumpRules(prefix = 'WEFT'): { table: 'filter' | 'nat'; chain: string; args: string[] }[] {
  const top = topLevelChains(prefix);
  const c = (text: string): string[] => ['-m', 'comment', '--comment', text];
  const ctNew = ['-m', 'conntrack', '--ctstate', 'NEW'];
  return [
    ...(['INPUT', 'FORWARD'] as const).map((chain) => ({ table: 'filter' as const, chain, args: [...ctNew, ...c('kubernetes externally-visible service portals'), '-j', top.externalServices] })),
    { table: 'filter', chain: 'INPUT', args: [...c('kubernetes health check service ports'), '-j', top.nodePorts] },
    ...(['FORWARD', 'OUTPUT'] as const).map((chain) => ({ table: 'filter' as const, chain, args: [...ctNew, ...c('kubernetes service portals'), '-j', top.services] })),
    { table: 'filter', chain: 'FORWARD', args: [...c('kubernetes forwarding rules'), '-j', top.forward] },
    ...(['INPUT', 'OUTPUT', 'FORWARD'] as const).map((chain) => ({ table: 'filter' as const, chain, args: [...ctNew, ...c('kubernetes load balancer firewall'), '-j', top.proxyFirewall] })),
    ...(['OUTPUT', 'PREROUTING'] as const).map((chain) => ({ table: 'nat' as const, chain, args: [...c('kubernetes service portals'), '-j', top.services] })),
    { table: 'nat', chain: 'POSTROUTING', args: [...c('kubernetes postrouting rules'), '-j', top.postrouting] },
  ];
}

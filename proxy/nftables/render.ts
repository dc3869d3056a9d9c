// ProxyState → one nftables table of weft's own (kube-proxy's nftables layout, see proxy/README.md),
// and the `nft -f` script for a full sync or an incremental transaction. Pure.
//
// Dispatch is a verdict-map lookup keyed by `ipv4_addr . inet_proto . inet_service`, so packet cost
// does not grow with the number of services, and an update only touches the map elements, chains
// and sets of the service ports that changed.
import { base32Sha256 } from '../hash-name.ts';
import type { ProxyEndpoint, ProxyState } from '../model/types.ts';

export interface NftablesRenderOptions {
  /** Default "weft". */
  table?: string;
  /** Default 0x4000. */
  masqueradeMark?: number;
  masqueradeAll?: boolean;
  /** Service CIDRs: traffic to an unallocated address in them is dropped, not routed out. */
  serviceCIDRs?: readonly string[];
}

export interface NftServiceObjects {
  /** Chain name → its rules, in order. */
  chains: Map<string, string[]>;
  /** Set name → its declaration ("{ type ipv4_addr ; ... }"). */
  sets: Map<string, string>;
}

export type NftMapName = 'service-ips' | 'service-nodeports' | 'no-endpoint-services' | 'no-endpoint-nodeports' | 'firewall-ips' | 'cluster-ips';

export interface NftRuleset {
  table: string;
  /** Commands defining base chains, maps and static rules; a change here needs a full sync. */
  base: string[];
  /** Map or set name → element key → verdict ("" for set elements). */
  elements: Map<NftMapName, Map<string, string>>;
  /** Keyed by "ns/svc:port/protocol". */
  services: Map<string, NftServiceObjects>;
}

/** kube-proxy's hashAndTruncate: base32(sha256(name))[:8] + "-" + name. */
export function hashName(name: string): string {
  return `${base32Sha256(name, 8)}-${name}`;
}

const MAPS: [NftMapName, string][] = [
  ['cluster-ips', 'set cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }'],
  ['service-ips', 'map service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }'],
  ['service-nodeports', 'map service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }'],
  ['no-endpoint-services', 'map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }'],
  ['no-endpoint-nodeports', 'map no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }'],
  ['firewall-ips', 'map firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }'],
];

function baseCommands(t: string, o: NftablesRenderOptions): string[] {
  const mark = `0x${(o.masqueradeMark ?? 0x4000).toString(16)}`;
  const localDst = 'ip daddr != 127.0.0.0/8 fib daddr type local';
  const chains: [string, string, string[]][] = [
    ['filter-prerouting-pre-dnat', 'type filter hook prerouting priority -110 ;', ['ct state new jump firewall-check']],
    ['filter-output-pre-dnat', 'type filter hook output priority -110 ;', ['ct state new jump firewall-check']],
    ['filter-forward', 'type filter hook forward priority 0 ;', ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check']],
    ['filter-input', 'type filter hook input priority 0 ;', ['ct state new jump nodeport-endpoints-check', 'ct state new jump service-endpoints-check']],
    ['filter-output', 'type filter hook output priority 0 ;', ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check']],
    ['nat-prerouting', 'type nat hook prerouting priority -100 ;', ['jump services']],
    ['nat-output', 'type nat hook output priority -100 ;', ['jump services']],
    ['nat-postrouting', 'type nat hook postrouting priority 100 ;', ['jump masquerading']],
    ['firewall-check', '', ['ip daddr . meta l4proto . th dport vmap @firewall-ips']],
    ['reject-chain', '', ['reject']],
    ['services', '', ['ip daddr . meta l4proto . th dport vmap @service-ips', `${localDst} meta l4proto . th dport vmap @service-nodeports`]],
    ['service-endpoints-check', '', ['ip daddr . meta l4proto . th dport vmap @no-endpoint-services']],
    ['nodeport-endpoints-check', '', [`${localDst} meta l4proto . th dport vmap @no-endpoint-nodeports`]],
    ['cluster-ips-check', '', [
      // A known ClusterIP on a port it does not serve is refused; an unallocated one is dropped.
      'ip daddr @cluster-ips reject',
      ...(o.serviceCIDRs?.length ? [`ip daddr { ${o.serviceCIDRs.join(', ')} } drop`] : []),
    ]],
    ['mark-for-masquerade', '', [`mark set mark or ${mark}`]],
    ['masquerading', '', [`mark and ${mark} == 0 return`, `mark set mark xor ${mark}`, 'masquerade fully-random']],
  ];
  const out = [`add table ip ${t} { comment "rules for weft" ; }`];
  for (const [, decl] of MAPS) out.push(`add ${decl.replace(/^(set|map) /, `$1 ip ${t} `)}`);
  for (const [name, hook] of chains) out.push(hook ? `add chain ip ${t} ${name} { ${hook} }` : `add chain ip ${t} ${name}`);
  for (const [name, , rules] of chains) for (const r of rules) out.push(`add rule ip ${t} ${name} ${r}`);
  return out;
}

export function renderNftables(state: ProxyState, options: NftablesRenderOptions = {}): NftRuleset {
  const t = options.table ?? 'weft';
  const elements = new Map<NftMapName, Map<string, string>>(MAPS.map(([name]) => [name, new Map()]));
  const el = (map: NftMapName, key: string, verdict: string): void => void elements.get(map)?.set(key, verdict);
  const services = new Map<string, NftServiceObjects>();
  const ifLocal = state.clusterCIDR ? `ip saddr ${state.clusterCIDR}` : '';
  const ifNotLocal = state.clusterCIDR ? `ip saddr != ${state.clusterCIDR}` : '';

  for (const sp of state.servicePorts) {
    const p = sp.protocol;
    const base = `${sp.namespace}/${sp.name}/${p}/${sp.portName}`;
    const hashed = hashName(base);
    const svc = `service-${hashed}`;
    const local = `local-${hashed}`;
    const ext = `external-${hashed}`;
    const fw = `firewall-${hashed}`;
    const epName = new Map(sp.reachableEndpoints.map((ep) => [ep, hashName(`${base}__${ep.ip}/${ep.port}`)]));

    const hasInternal = sp.hasEndpoints && (!sp.internalPolicyLocal || sp.localEndpoints.length > 0);
    const hasExternal = sp.hasEndpoints && (!sp.externalPolicyLocal || sp.localEndpoints.length > 0);
    const internalChain = sp.internalPolicyLocal ? local : svc;
    const externalPolicyChain = sp.externalPolicyLocal ? local : svc;
    const usesFw = sp.hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
    const noEndpointVerdict = sp.hasEndpoints ? 'drop' : 'goto reject-chain';

    el('cluster-ips', sp.clusterIP, '');
    const vip = (ip: string): string => `${ip} . ${p} . ${sp.port}`;
    if (hasInternal) el('service-ips', vip(sp.clusterIP), `goto ${internalChain}`);
    else el('no-endpoint-services', vip(sp.clusterIP), noEndpointVerdict);
    for (const ip of [...sp.externalIPs, ...sp.loadBalancerIPs]) {
      if (sp.hasEndpoints) el('service-ips', vip(ip), `goto ${ext}`);
      if (!hasExternal) el('no-endpoint-services', vip(ip), noEndpointVerdict);
    }
    if (usesFw) for (const ip of sp.loadBalancerIPs) el('firewall-ips', vip(ip), `goto ${fw}`);
    if (sp.nodePort !== 0) {
      if (sp.hasEndpoints) el('service-nodeports', `${p} . ${sp.nodePort}`, `goto ${ext}`);
      if (!hasExternal) el('no-endpoint-nodeports', `${p} . ${sp.nodePort}`, noEndpointVerdict);
    }

    const chains = new Map<string, string[]>();
    const sets = new Map<string, string>();
    const rulesOf = (chain: string): string[] => {
      let rules = chains.get(chain);
      if (!rules) chains.set(chain, (rules = []));
      return rules;
    };
    if (hasInternal) {
      if (options.masqueradeAll) rulesOf(internalChain).push(`ip daddr ${sp.clusterIP} ${p} dport ${sp.port} jump mark-for-masquerade`);
      else if (ifNotLocal) rulesOf(internalChain).push(`ip daddr ${sp.clusterIP} ${p} dport ${sp.port} ${ifNotLocal} jump mark-for-masquerade`);
    }
    if (sp.hasEndpoints && sp.externallyAccessible) {
      const r = rulesOf(ext);
      if (!sp.externalPolicyLocal) r.push('jump mark-for-masquerade');
      else {
        if (ifLocal) r.push(`${ifLocal} goto ${svc}`);
        r.push('fib saddr type local jump mark-for-masquerade', `fib saddr type local goto ${svc}`);
      }
      if (hasExternal) r.push(`goto ${externalPolicyChain}`);
    }
    if (usesFw) {
      const sources = [...sp.loadBalancerSourceRanges, ...(sp.sourceRangesAllowNode ? sp.loadBalancerIPs : [])];
      rulesOf(fw).push(`ip saddr != { ${sources.join(', ')} } drop`);
    }
    const affinity = sp.affinityTimeoutSeconds > 0;
    const writeEndpointDispatch = (chain: string, eps: readonly ProxyEndpoint[]): void => {
      const r = rulesOf(chain);
      if (affinity) for (const ep of eps) r.push(`ip saddr @affinity-${epName.get(ep)} goto endpoint-${epName.get(ep)}`);
      r.push(`numgen random mod ${eps.length} vmap { ${eps.map((ep, i) => `${i} : goto endpoint-${epName.get(ep)}`).join(' , ')} }`);
    };
    if (sp.clusterEndpoints.length > 0 && sp.usesClusterEndpoints) writeEndpointDispatch(svc, sp.clusterEndpoints);
    if (sp.localEndpoints.length > 0 && sp.usesLocalEndpoints) writeEndpointDispatch(local, sp.localEndpoints);
    for (const ep of sp.reachableEndpoints) {
      const name = epName.get(ep) as string;
      const r = rulesOf(`endpoint-${name}`);
      r.push(`ip saddr ${ep.ip} jump mark-for-masquerade`);
      if (affinity) {
        sets.set(`affinity-${name}`, `{ type ipv4_addr ; flags dynamic,timeout ; timeout ${sp.affinityTimeoutSeconds}s ; }`);
        r.push(`update @affinity-${name} { ip saddr }`);
      }
      r.push(`meta l4proto ${p} dnat to ${ep.address}`);
    }
    services.set(sp.id, { chains, sets });
  }
  return { table: t, base: baseCommands(t, options), elements, services };
}

function elementCommand(verb: 'add' | 'delete', t: string, map: string, key: string, verdict: string): string {
  return `${verb} element ip ${t} ${map} { ${verb === 'add' && verdict ? `${key} : ${verdict}` : key} }`;
}

function addServiceObjects(out: { chains: string[]; sets: string[]; rules: string[] }, t: string, s: NftServiceObjects, existing?: NftServiceObjects): void {
  for (const [name, decl] of s.sets) if (existing?.sets.get(name) !== decl) out.sets.push(`add set ip ${t} ${name} ${decl}`);
  for (const [name, rules] of s.chains) {
    if (!existing?.chains.has(name)) out.chains.push(`add chain ip ${t} ${name}`);
    for (const r of rules) out.rules.push(`add rule ip ${t} ${name} ${r}`);
  }
}

/** The whole table, replacing whatever is there in one transaction (affinity state is reset). */
export function nftFullScript(ruleset: NftRuleset): string {
  const t = ruleset.table;
  const out = { chains: [] as string[], sets: [] as string[], rules: [] as string[] };
  for (const s of ruleset.services.values()) addServiceObjects(out, t, s);
  const elements: string[] = [];
  for (const [map, entries] of ruleset.elements) for (const [k, v] of entries) elements.push(elementCommand('add', t, map, k, v));
  // "add" first so that "delete" succeeds when the table does not exist yet.
  return [`add table ip ${t}`, `delete table ip ${t}`, ...ruleset.base, ...out.sets, ...out.chains, ...out.rules, ...elements, ''].join('\n');
}

/**
 * Only the differences from `previous` (the last ruleset applied successfully), or the full script
 * when the base definitions changed. Ordered so that nothing is deleted while still referenced.
 */
export function nftIncrementalScript(ruleset: NftRuleset, previous: NftRuleset): string {
  if (ruleset.table !== previous.table || !sameLines(ruleset.base, previous.base)) return nftFullScript(ruleset);
  const t = ruleset.table;
  const deleteElements: string[] = [];
  const addElements: string[] = [];
  for (const [map, entries] of ruleset.elements) {
    const before = previous.elements.get(map) ?? new Map<string, string>();
    for (const [k, v] of before) if (entries.get(k) !== v) deleteElements.push(elementCommand('delete', t, map, k, v));
    for (const [k, v] of entries) if (before.get(k) !== v) addElements.push(elementCommand('add', t, map, k, v));
  }
  const flush: string[] = [];
  const deleteChains: string[] = [];
  const deleteSets: string[] = [];
  const out = { chains: [] as string[], sets: [] as string[], rules: [] as string[] };
  for (const [id, s] of ruleset.services) {
    const before = previous.services.get(id);
    if (before && sameObjects(before, s)) continue;
    if (before) {
      for (const name of before.chains.keys()) {
        flush.push(`flush chain ip ${t} ${name}`);
        if (!s.chains.has(name)) deleteChains.push(`delete chain ip ${t} ${name}`);
      }
      for (const [name, decl] of before.sets) if (s.sets.get(name) !== decl) deleteSets.push(`delete set ip ${t} ${name}`);
    }
    addServiceObjects(out, t, s, before);
  }
  for (const [id, before] of previous.services) {
    if (ruleset.services.has(id)) continue;
    for (const name of before.chains.keys()) {
      flush.push(`flush chain ip ${t} ${name}`);
      deleteChains.push(`delete chain ip ${t} ${name}`);
    }
    for (const name of before.sets.keys()) deleteSets.push(`delete set ip ${t} ${name}`);
  }
  return [...deleteElements, ...flush, ...deleteChains, ...deleteSets, ...out.sets, ...out.chains, ...out.rules, ...addElements, ''].join('\n');
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

function sameObjects(a: NftServiceObjects, b: NftServiceObjects): boolean {
  if (a.chains.size !== b.chains.size || a.sets.size !== b.sets.size) return false;
  for (const [name, rules] of a.chains) {
    const other = b.chains.get(name);
    if (!other || !sameLines(rules, other)) return false;
  }
  for (const [name, decl] of a.sets) if (b.sets.get(name) !== decl) return false;
  return true;
}

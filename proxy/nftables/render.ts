// ProxyState → one nftables table of weft's own (kube-proxy's nftables layout, see proxy/README.md),
// and the `nft -f` script for a full sync or an incremental transaction. Pure.
//
// Dispatch is a verdict-map lookup keyed by `ipv4_addr . inet_proto . inet_service`, so packet cost
// does not grow with the number of services, and an update only touches the map elements, chains
// and sets of the service ports that changed.
import { base32Sha256 } from '../hash-name.ts';
import type { ProxyEndpoint, ProxyServicePort, ProxyState } from '../model/types.ts';
import { createSlotAllocator, ENDPOINT_MAP_SHARDS, slotMapName, type SlotAllocator } from './endpoint-slots.ts';

export interface NftablesRenderOptions {
  /** Default "weft". */
  table?: string;
  /** Default 0x4000. */
  masqueradeMark?: number;
  masqueradeAll?: boolean;
  /** Service CIDRs: traffic to an unallocated address in them is dropped, not routed out. */
  serviceCIDRs?: readonly string[];
}

/** One map or set element: [map, key, value] (value "" for set elements). */
export type NftElement = readonly [map: string, key: string, value: string];

/** Everything one service port owns, rendered once and reused while the service port is unchanged. */
export interface NftServiceObjects {
  /** Chain name → its rules, in order. */
  chains: Map<string, string[]>;
  /** Set name → its declaration ("{ type ipv4_addr ; ... }"). */
  sets: Map<string, string>;
  /** Elements of the shared maps and sets; keys shared by service ports (cluster-ips, hairpin) are counted. */
  elements: NftElement[];
}

export interface NftRuleset {
  table: string;
  /** Commands defining base chains, maps and static rules; a change here needs a full sync. */
  base: string[];
  /** Keyed by "ns/svc:port/protocol". */
  services: Map<string, NftServiceObjects>;
}

/**
 * Memory a renderer keeps between syncs: the objects of unchanged service ports (by the identity
 * of their ProxyServicePort, see createProxyStateBuilder) and the stable endpoint-slot ranges.
 */
export interface NftRenderCache {
  fragments: WeakMap<ProxyServicePort, NftServiceObjects>;
  slots: SlotAllocator;
}

export function createNftRenderCache(): NftRenderCache {
  return { fragments: new WeakMap(), slots: createSlotAllocator() };
}

/** kube-proxy's hashAndTruncate: base32(sha256(name))[:8] + "-" + name. */
export function hashName(name: string): string {
  return `${base32Sha256(name, 8)}-${name}`;
}

const MAPS: [string, string][] = [
  ['cluster-ips', 'set cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }'],
  ['service-ips', 'map service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }'],
  ['service-nodeports', 'map service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }'],
  ['no-endpoint-services', 'map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }'],
  ['no-endpoint-nodeports', 'map no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }'],
  ['firewall-ips', 'map firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }'],
  ['hairpin', 'set hairpin { type ipv4_addr . ipv4_addr ; comment "endpoint . endpoint: a pod reaching itself through a service is masqueraded" ; }'],
  // Endpoint choice without a set per service: each dispatch chain owns a range of slots
  // (numgen ... offset BASE) in one of a few shared maps; a set per service would make the kernel
  // look sets up by name in a list (quadratic at 10k services), one shared map would make it
  // revalidate every element for every rule that binds it.
  ...(['tcp', 'udp', 'sctp'] as const).flatMap((p) => Array.from({ length: ENDPOINT_MAP_SHARDS }, (_, i): [string, string] =>
    [slotMapName(p, i), `map ${slotMapName(p, i)} { typeof numgen random mod 1 : ip daddr . ${p} dport ; }`])),
];

function baseCommands(t: string, o: NftablesRenderOptions, clusterCIDR: string | undefined): string[] {
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
    ['services', '', [
      // ClusterIP traffic from outside the cluster (or all of it with masqueradeAll) is marked here
      // once, not per service: a packet to a ClusterIP that has no endpoints is rejected anyway.
      ...(o.masqueradeAll ? ['ip daddr @cluster-ips jump mark-for-masquerade'] : clusterCIDR ? [`ip daddr @cluster-ips ip saddr != ${clusterCIDR} jump mark-for-masquerade`] : []),
      'ip daddr . meta l4proto . th dport vmap @service-ips', `${localDst} meta l4proto . th dport vmap @service-nodeports`]],
    ['service-endpoints-check', '', ['ip daddr . meta l4proto . th dport vmap @no-endpoint-services']],
    ['nodeport-endpoints-check', '', [`${localDst} meta l4proto . th dport vmap @no-endpoint-nodeports`]],
    ['cluster-ips-check', '', [
      // A known ClusterIP on a port it does not serve is refused; an unallocated one is dropped.
      'ip daddr @cluster-ips reject',
      ...(o.serviceCIDRs?.length ? [`ip daddr { ${o.serviceCIDRs.join(', ')} } drop`] : []),
    ]],
    ['mark-for-masquerade', '', [`mark set mark or ${mark}`]],
    ['masquerading', '', [
      // Hairpin: the endpoint chosen is the client itself; it must see the node as source.
      'ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade',
      `mark and ${mark} == 0 return`, `mark set mark xor ${mark}`, 'masquerade fully-random',
    ]],
  ];
  const out = [`add table ip ${t} { comment "rules for weft" ; }`];
  for (const [, decl] of MAPS) out.push(`add ${decl.replace(/^(set|map) /, `$1 ip ${t} `)}`);
  for (const [name, hook] of chains) out.push(hook ? `add chain ip ${t} ${name} { ${hook} }` : `add chain ip ${t} ${name}`);
  for (const [name, , rules] of chains) for (const r of rules) out.push(`add rule ip ${t} ${name} ${r}`);
  return out;
}

export function renderNftables(state: ProxyState, options: NftablesRenderOptions = {}, cache: NftRenderCache = createNftRenderCache()): NftRuleset {
  const t = options.table ?? 'weft';
  const services = new Map<string, NftServiceObjects>();
  const live = new Set<string>();
  for (const sp of state.servicePorts) {
    let objects = cache.fragments.get(sp);
    if (!objects) {
      objects = renderServicePort(sp, state.clusterCIDR, cache.slots);
      cache.fragments.set(sp, objects);
    }
    services.set(sp.id, objects);
    for (const chain of objects.chains.keys()) live.add(chain);
  }
  cache.slots.retain(live);
  return { table: t, base: baseCommands(t, options, state.clusterCIDR), services };
}

function renderServicePort(sp: ProxyServicePort, clusterCIDR: string | undefined, slots: SlotAllocator): NftServiceObjects {
  const ifLocal = clusterCIDR ? `ip saddr ${clusterCIDR}` : '';
  const elements: NftElement[] = [];
  const el = (map: string, key: string, verdict: string): void => void elements.push([map, key, verdict]);
  const p = sp.protocol;
  const base = `${sp.namespace}/${sp.name}/${p}/${sp.portName}`;
  const hashed = hashName(base);
  const svc = `service-${hashed}`;
  const local = `local-${hashed}`;
  const ext = `external-${hashed}`;
  const fw = `firewall-${hashed}`;
  const affinity = sp.affinityTimeoutSeconds > 0;
  // Per-endpoint chains only where affinity needs them (an `update @set` per endpoint).
  const epName = new Map(affinity ? sp.reachableEndpoints.map((ep) => [ep, hashName(`${base}__${ep.ip}/${ep.port}`)]) : []);

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
  for (const ep of sp.reachableEndpoints) el('hairpin', `${ep.ip} . ${ep.ip}`, '');

  const chains = new Map<string, string[]>();
  const sets = new Map<string, string>();
  const rulesOf = (chain: string): string[] => {
    let rules = chains.get(chain);
    if (!rules) chains.set(chain, (rules = []));
    return rules;
  };
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
  const writeEndpointDispatch = (chain: string, eps: readonly ProxyEndpoint[]): void => {
    const r = rulesOf(chain);
    if (affinity) {
      for (const ep of eps) r.push(`ip saddr @affinity-${epName.get(ep)} goto endpoint-${epName.get(ep)}`);
      r.push(`numgen random mod ${eps.length} vmap { ${eps.map((ep, i) => `${i} : goto endpoint-${epName.get(ep)}`).join(' , ')} }`);
      return;
    }
    const first = slots.base(chain, eps.length);
    const map = slotMapName(p, slots.shard(chain));
    r.push(`meta l4proto ${p} dnat ip addr . port to numgen random mod ${eps.length} offset ${first} map @${map}`);
    eps.forEach((ep, i) => el(map, String(first + i), `${ep.ip} . ${ep.port}`));
  };
  if (sp.clusterEndpoints.length > 0 && sp.usesClusterEndpoints) writeEndpointDispatch(svc, sp.clusterEndpoints);
  if (sp.localEndpoints.length > 0 && sp.usesLocalEndpoints) writeEndpointDispatch(local, sp.localEndpoints);
  if (affinity) {
    for (const ep of sp.reachableEndpoints) {
      const name = epName.get(ep) as string;
      sets.set(`affinity-${name}`, `{ type ipv4_addr ; flags dynamic,timeout ; timeout ${sp.affinityTimeoutSeconds}s ; }`);
      rulesOf(`endpoint-${name}`).push(`update @affinity-${name} { ip saddr }`, `meta l4proto ${p} dnat to ${ep.address}`);
    }
  }
  return { chains, sets, elements };
}

/** Element commands, one per map with every element of it (the parse cost of nft is per command). */
function elementCommands(verb: 'add' | 'delete', t: string, elements: Iterable<NftElement>): string[] {
  const byMap = new Map<string, string[]>();
  for (const [map, key, value] of elements) {
    const text = verb === 'add' && value ? `${key} : ${value}` : key;
    const list = byMap.get(map);
    if (list) list.push(text);
    else byMap.set(map, [text]);
  }
  const out: string[] = [];
  for (const [map, list] of byMap) {
    for (let i = 0; i < list.length; i += ELEMENTS_PER_COMMAND) out.push(`${verb} element ip ${t} ${map} { ${list.slice(i, i + ELEMENTS_PER_COMMAND).join(', ')} }`);
  }
  return out;
}

const ELEMENTS_PER_COMMAND = 1000;

function addServiceObjects(out: { chains: string[]; sets: string[]; rules: string[] }, t: string, s: NftServiceObjects, existing?: NftServiceObjects): void {
  for (const [name, decl] of s.sets) if (existing?.sets.get(name) !== decl) out.sets.push(`add set ip ${t} ${name} ${decl}`);
  for (const [name, rules] of s.chains) {
    if (!existing?.chains.has(name)) out.chains.push(`add chain ip ${t} ${name}`);
    for (const r of rules) out.rules.push(`add rule ip ${t} ${name} ${r}`);
  }
}

/** Sets whose keys several service ports can hold: a Service's ports share its clusterIP, services share endpoints. */
const SHARED_SETS = new Set(['cluster-ips', 'hairpin']);

/**
 * How many service ports hold each shared element ("set\0key"): it is added with its first holder
 * and deleted with its last. Other keys belong to exactly one service port.
 */
export type NftElementCounts = Map<string, number>;

export function countElements(ruleset: NftRuleset): NftElementCounts {
  const counts: NftElementCounts = new Map();
  for (const s of ruleset.services.values()) {
    for (const [map, key] of s.elements) {
      if (!SHARED_SETS.has(map)) continue;
      const id = `${map}\u0000${key}`;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

/** The whole table, replacing whatever is there in one transaction (affinity state is reset). */
export function nftFullScript(ruleset: NftRuleset): string {
  const t = ruleset.table;
  const out = { chains: [] as string[], sets: [] as string[], rules: [] as string[] };
  const seen = new Set<string>();
  const elements: NftElement[] = [];
  for (const s of ruleset.services.values()) {
    addServiceObjects(out, t, s);
    for (const e of s.elements) {
      if (SHARED_SETS.has(e[0])) {
        const id = `${e[0]}\u0000${e[1]}`;
        if (seen.has(id)) continue;
        seen.add(id);
      }
      elements.push(e);
    }
  }
  // "add" first so that "delete" succeeds when the table does not exist yet. Rules before elements:
  // the kernel checks each element against the rules already bound to its map, not the reverse.
  return [`add table ip ${t}`, `delete table ip ${t}`, ...ruleset.base, ...out.sets, ...out.chains, ...out.rules, ...elementCommands('add', t, elements), ''].join('\n');
}

/**
 * Only the differences from `previous` (the last ruleset applied successfully), or the full script
 * when the base definitions changed. Service ports are compared by object identity first (cached
 * fragments), then by content. `counts` (from countElements(previous)) is updated in place to
 * describe `ruleset`. Ordered so that nothing is deleted while still referenced.
 */
export function nftIncrementalScript(ruleset: NftRuleset, previous: NftRuleset, counts: NftElementCounts = countElements(previous)): string {
  if (ruleset.table !== previous.table || !sameLines(ruleset.base, previous.base)) {
    counts.clear();
    for (const [k, v] of countElements(ruleset)) counts.set(k, v);
    return nftFullScript(ruleset);
  }
  const t = ruleset.table;
  const removed: NftElement[] = [];
  const added: NftElement[] = [];
  const flush: string[] = [];
  const deleteChains: string[] = [];
  const deleteSets: string[] = [];
  const out = { chains: [] as string[], sets: [] as string[], rules: [] as string[] };
  const drop = (s: NftServiceObjects): void => {
    for (const e of s.elements) {
      if (!SHARED_SETS.has(e[0])) { removed.push(e); continue; }
      const id = `${e[0]}\u0000${e[1]}`;
      const n = (counts.get(id) ?? 1) - 1;
      if (n > 0) counts.set(id, n);
      else { counts.delete(id); removed.push(e); }
    }
  };
  const take = (s: NftServiceObjects): void => {
    for (const e of s.elements) {
      if (!SHARED_SETS.has(e[0])) { added.push(e); continue; }
      const id = `${e[0]}\u0000${e[1]}`;
      const n = counts.get(id) ?? 0;
      counts.set(id, n + 1);
      if (n === 0) added.push(e);
    }
  };
  for (const [id, s] of ruleset.services) {
    const before = previous.services.get(id);
    if (before === s || (before && sameObjects(before, s))) continue;
    if (before) {
      drop(before);
      for (const name of before.chains.keys()) {
        flush.push(`flush chain ip ${t} ${name}`);
        if (!s.chains.has(name)) deleteChains.push(`delete chain ip ${t} ${name}`);
      }
      for (const [name, decl] of before.sets) if (s.sets.get(name) !== decl) deleteSets.push(`delete set ip ${t} ${name}`);
    }
    take(s);
    addServiceObjects(out, t, s, before);
  }
  for (const [id, before] of previous.services) {
    if (ruleset.services.has(id)) continue;
    drop(before);
    for (const name of before.chains.keys()) {
      flush.push(`flush chain ip ${t} ${name}`);
      deleteChains.push(`delete chain ip ${t} ${name}`);
    }
    for (const name of before.sets.keys()) deleteSets.push(`delete set ip ${t} ${name}`);
  }
  // An element removed and added again unchanged (a shared key moving between holders) is left alone.
  const elementId = (e: NftElement): string => `${e[0]}\u0000${e[1]}\u0000${e[2]}`;
  const addedIds = new Set(added.map(elementId));
  const removedIds = new Set(removed.map(elementId));
  return [
    ...elementCommands('delete', t, removed.filter((e) => !addedIds.has(elementId(e)))),
    ...flush, ...deleteChains, ...deleteSets, ...out.sets, ...out.chains, ...out.rules,
    ...elementCommands('add', t, added.filter((e) => !removedIds.has(elementId(e)))),
    '',
  ].join('\n');
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

function sameObjects(a: NftServiceObjects, b: NftServiceObjects): boolean {
  if (a.chains.size !== b.chains.size || a.sets.size !== b.sets.size || a.elements.length !== b.elements.length) return false;
  for (const [name, rules] of a.chains) {
    const other = b.chains.get(name);
    if (!other || !sameLines(rules, other)) return false;
  }
  for (const [name, decl] of a.sets) if (b.sets.get(name) !== decl) return false;
  return a.elements.every((e, i) => e[0] === b.elements[i][0] && e[1] === b.elements[i][1] && e[2] === b.elements[i][2]);
}

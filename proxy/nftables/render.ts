// ProxyState → one nftables table of weft's own (kube-proxy's nftables layout, see proxy/README.md),
// and the `nft -f` script for a full sync or an incremental transaction. Pure.
//
// Dispatch is a verdict-map lookup keyed by `ipv4_addr . inet_proto . inet_service`, and endpoint
// choice a map lookup in a chain shared by all service ports with the same endpoint count, so
// packet cost does not grow with the number of services, the table holds a few chains and many map
// elements (which `nft -f` loads fast), and an update of a service is a handful of element changes.
import { base32Sha256 } from '../hash-name.ts';
import type { ProxyServicePort, ProxyState } from '../model/types.ts';

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

/**
 * A chain shared by every service port that picks among the same number of endpoints on the same
 * path: `<key> . numgen random mod N` looked up in its map, whose elements name each service
 * port's endpoints. Chains (and maps) are counted in distinct endpoint counts, not in services.
 */
export interface NftGroup {
  map: string;
  /** "{ typeof ... ; }" */
  mapDecl: string;
  rules: string[];
}

/** Everything one service port owns, rendered once and reused while the service port is unchanged. */
export interface NftServiceObjects {
  /** Chain name → its rules, in order. */
  chains: Map<string, string[]>;
  /** Set name → its declaration ("{ type ipv4_addr ; ... }"). */
  sets: Map<string, string>;
  /** Elements of the shared maps and sets; keys shared by service ports (cluster-ips, hairpin) are counted. */
  elements: NftElement[];
  /** Map name → this service port's elements of it in `nft` syntax, for full scripts (maps not in SHARED_SETS). */
  elementText: Map<string, string>;
  /** Group chains the elements point into (see NftGroup), by chain name. */
  groups: Map<string, NftGroup>;
  /** The service port these objects were rendered from: the same object next sync means unchanged. */
  from: ProxyServicePort;
}

export interface NftRuleset {
  table: string;
  /** Commands defining base chains, maps and static rules; a change here needs a full sync. */
  base: string[];
  /** Keyed by "ns/svc:port/protocol". */
  services: Map<string, NftServiceObjects>;
  /** Every group chain some service port uses, by chain name. */
  groups: Map<string, NftGroup>;
  /** Set by a cached render: the service port ids whose objects differ from `base`, the cache's previous render. */
  delta?: { base: NftRuleset; ids: Set<string> };
}

/**
 * Memory a renderer keeps between syncs: the last render's service ports and their objects (a
 * ProxyServicePort that is the very same object keeps its objects, see createProxyStateBuilder),
 * and how many service ports use each group.
 */
export interface NftRenderCache {
  groupUsers: Map<string, { group: NftGroup; users: number }>;
  ruleset?: NftRuleset;
}

export function createNftRenderCache(): NftRenderCache {
  return { groupUsers: new Map() };
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
  const changed = new Set<string>();
  const use = (objects: NftServiceObjects, by: number): void => {
    for (const [name, group] of objects.groups) {
      const u = cache.groupUsers.get(name);
      if (u) u.users += by;
      else cache.groupUsers.set(name, { group, users: by });
    }
  };
  const last = cache.ruleset?.services ?? new Map<string, NftServiceObjects>();
  for (const sp of state.servicePorts) {
    let objects = last.get(sp.id);
    if (objects?.from !== sp) {
      if (objects) use(objects, -1);
      objects = renderServicePort(sp, state.clusterCIDR);
      use(objects, 1);
      changed.add(sp.id);
    }
    services.set(sp.id, objects);
  }
  if (services.size !== last.size || changed.size > 0) {
    for (const [id, before] of last) {
      if (services.has(id)) continue;
      use(before, -1);
      changed.add(id);
    }
  }
  // Groups are few (distinct endpoint counts), so rebuilding this map is cheap.
  const groups = new Map<string, NftGroup>();
  for (const [name, u] of [...cache.groupUsers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (u.users > 0) groups.set(name, u.group);
    else cache.groupUsers.delete(name);
  }
  const ruleset: NftRuleset = { table: t, base: baseCommands(t, options, state.clusterCIDR), services, groups };
  const base = cache.ruleset;
  if (base) {
    // Only the newest render keeps a delta, so rulesets do not chain back through every sync.
    base.delta = undefined;
    ruleset.delta = { base, ids: changed };
  }
  cache.ruleset = ruleset;
  return ruleset;
}

/** Which endpoints a group picks from: Cluster or Local policy; "external" is Cluster plus the masquerade mark. */
type GroupKind = 'cluster' | 'local' | 'external';
/** What identifies the service port in the lookup: its destination IP and port, or its node port alone (any local address). */
type GroupPath = 'ip' | 'nodeport';

function groupOf(kind: GroupKind, path: GroupPath, p: string, n: number): [string, NftGroup] {
  const key = path === 'ip' ? `ip daddr . ${p} dport` : `${p} dport`;
  // External traffic picks among the Cluster endpoints: it shares the cluster map, not the chain.
  const map = `endpoints-${kind === 'local' ? 'local' : 'cluster'}-${path}-${p}-${n}`;
  const rules = [`dnat ip addr . port to ${key} . numgen random mod ${n} map @${map}`];
  if (kind === 'external') rules.unshift('jump mark-for-masquerade');
  return [`pick-${kind}-${path}-${p}-${n}`, { map, mapDecl: `{ typeof ${key} . numgen random mod ${n} : ip daddr . ${p} dport ; }`, rules }];
}

function renderServicePort(sp: ProxyServicePort, clusterCIDR: string | undefined): NftServiceObjects {
  const elements: NftElement[] = [];
  const el = (map: string, key: string, verdict: string): void => void elements.push([map, key, verdict]);
  const chains = new Map<string, string[]>();
  const sets = new Map<string, string>();
  const groups = new Map<string, NftGroup>();
  const p = sp.protocol;
  const affinity = sp.affinityTimeoutSeconds > 0;
  // Hashed per-service names only where a service needs chains of its own (affinity, eTP=Local, source ranges).
  let hashedName: string | undefined;
  const hashed = (): string => (hashedName ??= hashName(`${sp.namespace}/${sp.name}/${p}/${sp.portName}`));
  const rulesOf = (chain: string): string[] => {
    let rules = chains.get(chain);
    if (!rules) chains.set(chain, (rules = []));
    return rules;
  };

  const hasInternal = sp.hasEndpoints && (!sp.internalPolicyLocal || sp.localEndpoints.length > 0);
  const hasExternal = sp.hasEndpoints && (!sp.externalPolicyLocal || sp.localEndpoints.length > 0);
  const usesFw = sp.hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const noEndpointVerdict = sp.hasEndpoints ? 'drop' : 'goto reject-chain';
  const vip = (ip: string): string => `${ip} . ${p} . ${sp.port}`;
  const externalIPs = [...sp.externalIPs, ...sp.loadBalancerIPs];
  // Lookup keys of each path: the ClusterIP for internal traffic, external/LB IPs and the node port for external.
  const keysOf = (path: GroupPath, internal: boolean): string[] =>
    path === 'nodeport' ? [String(sp.nodePort)] : internal ? [`${sp.clusterIP} . ${sp.port}`] : externalIPs.map((ip) => `${ip} . ${sp.port}`);

  // With affinity: per-service `service-`/`local-` chains with a chain and a dynamic set per endpoint.
  const affinityChain = (kind: 'cluster' | 'local'): string => {
    const chain = `${kind === 'local' ? 'local' : 'service'}-${hashed()}`;
    if (chains.has(chain)) return chain;
    const eps = kind === 'local' ? sp.localEndpoints : sp.clusterEndpoints;
    const r = rulesOf(chain);
    const names = eps.map((ep) => hashName(`${sp.namespace}/${sp.name}/${p}/${sp.portName}__${ep.ip}/${ep.port}`));
    names.forEach((name) => r.push(`ip saddr @affinity-${name} goto endpoint-${name}`));
    r.push(`numgen random mod ${eps.length} vmap { ${names.map((name, i) => `${i} : goto endpoint-${name}`).join(' , ')} }`);
    eps.forEach((ep, i) => {
      sets.set(`affinity-${names[i]}`, `{ type ipv4_addr ; flags dynamic,timeout ; timeout ${sp.affinityTimeoutSeconds}s ; }`);
      if (!chains.has(`endpoint-${names[i]}`)) rulesOf(`endpoint-${names[i]}`).push(`update @affinity-${names[i]} { ip saddr }`, `meta l4proto ${p} dnat to ${ep.address}`);
    });
    return chain;
  };
  // The chain that picks an endpoint of `kind` for traffic on `path`, with this service port's elements in its map.
  const pick = (kind: GroupKind, path: GroupPath, internal: boolean): string => {
    if (affinity) return affinityChain(kind === 'local' ? 'local' : 'cluster');
    const eps = kind === 'local' ? sp.localEndpoints : sp.clusterEndpoints;
    const [chain, group] = groupOf(kind, path, p, eps.length);
    groups.set(chain, group);
    for (const key of keysOf(path, internal)) eps.forEach((ep, i) => el(group.map, `${key} . ${i}`, `${ep.ip} . ${ep.port}`));
    return chain;
  };
  // The verdict for external traffic on `path`; eTP=Local needs a chain of its own to short-circuit pods and the node.
  const external = (path: GroupPath): string => {
    if (!sp.externalPolicyLocal && !affinity) return `goto ${pick('external', path, false)}`;
    const chain = affinity ? `external-${hashed()}` : `${path === 'ip' ? 'external' : 'nodeport'}-${hashed()}`;
    if (chains.has(chain)) return `goto ${chain}`;
    const r = rulesOf(chain);
    if (!sp.externalPolicyLocal) r.push('jump mark-for-masquerade');
    else {
      const toCluster = pick('cluster', path, false);
      if (clusterCIDR) r.push(`ip saddr ${clusterCIDR} goto ${toCluster}`);
      r.push('fib saddr type local jump mark-for-masquerade', `fib saddr type local goto ${toCluster}`);
    }
    if (hasExternal) r.push(`goto ${pick(sp.externalPolicyLocal ? 'local' : 'cluster', path, false)}`);
    return `goto ${chain}`;
  };

  el('cluster-ips', sp.clusterIP, '');
  if (hasInternal) el('service-ips', vip(sp.clusterIP), `goto ${pick(sp.internalPolicyLocal ? 'local' : 'cluster', 'ip', true)}`);
  else el('no-endpoint-services', vip(sp.clusterIP), noEndpointVerdict);
  if (externalIPs.length > 0) {
    const verdict = sp.hasEndpoints ? external('ip') : '';
    for (const ip of externalIPs) {
      if (verdict) el('service-ips', vip(ip), verdict);
      if (!hasExternal) el('no-endpoint-services', vip(ip), noEndpointVerdict);
    }
  }
  if (usesFw) {
    const fw = `firewall-${hashed()}`;
    for (const ip of sp.loadBalancerIPs) el('firewall-ips', vip(ip), `goto ${fw}`);
    const sources = [...sp.loadBalancerSourceRanges, ...(sp.sourceRangesAllowNode ? sp.loadBalancerIPs : [])];
    rulesOf(fw).push(`ip saddr != { ${sources.join(', ')} } drop`);
  }
  if (sp.nodePort !== 0) {
    if (sp.hasEndpoints) el('service-nodeports', `${p} . ${sp.nodePort}`, external('nodeport'));
    if (!hasExternal) el('no-endpoint-nodeports', `${p} . ${sp.nodePort}`, noEndpointVerdict);
  }
  // Hairpin happens where the packet was DNATed: on the client's own node, or here for a remote pod
  // short-circuited by eTP=Local (not masqueraded otherwise). Endpoints of other nodes need no pair.
  for (const ep of sp.reachableEndpoints) {
    if (ep.isLocal || ep.nodeName === undefined || sp.externalPolicyLocal) el('hairpin', `${ep.ip} . ${ep.ip}`, '');
  }
  const byMap = new Map<string, string[]>();
  for (const [map, key, value] of elements) {
    if (SHARED_SETS.has(map)) continue;
    const text = value ? `${key} : ${value}` : key;
    const list = byMap.get(map);
    if (list) list.push(text);
    else byMap.set(map, [text]);
  }
  const elementText = new Map([...byMap].map(([map, list]) => [map, list.join(', ')]));
  return { chains, sets, elements, elementText, groups, from: sp };
}

/** Element commands, one per map and up to ELEMENTS_PER_COMMAND elements (the parse cost of nft is per command). */
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
const FRAGMENTS_PER_COMMAND = 100;

interface ObjectCommands { chains: string[]; sets: string[]; rules: string[] }

function addServiceObjects(out: ObjectCommands, t: string, s: NftServiceObjects, existing?: NftServiceObjects): void {
  for (const [name, decl] of s.sets) if (existing?.sets.get(name) !== decl) out.sets.push(`add set ip ${t} ${name} ${decl}`);
  for (const [name, rules] of s.chains) {
    if (!existing?.chains.has(name)) out.chains.push(`add chain ip ${t} ${name}`);
    for (const r of rules) out.rules.push(`add rule ip ${t} ${name} ${r}`);
  }
}

/** Maps, chains and rules of the groups in `groups` and not in `existing` (maps shared by groups are added once). */
function addGroups(out: ObjectCommands, t: string, groups: ReadonlyMap<string, NftGroup>, existing: ReadonlyMap<string, NftGroup> = new Map()): void {
  const existingMaps = new Set([...existing.values()].map((g) => g.map));
  for (const [name, g] of groups) {
    if (existing.has(name)) continue;
    if (!existingMaps.has(g.map)) {
      existingMaps.add(g.map);
      out.sets.push(`add map ip ${t} ${g.map} ${g.mapDecl}`);
    }
    out.chains.push(`add chain ip ${t} ${name}`);
    for (const r of g.rules) out.rules.push(`add rule ip ${t} ${name} ${r}`);
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
  const out: ObjectCommands = { chains: [], sets: [], rules: [] };
  addGroups(out, t, ruleset.groups);
  const fragments = new Map<string, string[]>();
  const shared = new Map<string, Set<string>>([...SHARED_SETS].map((name) => [name, new Set<string>()]));
  for (const s of ruleset.services.values()) {
    addServiceObjects(out, t, s);
    for (const [map, text] of s.elementText) {
      const list = fragments.get(map);
      if (list) list.push(text);
      else fragments.set(map, [text]);
    }
    for (const [map, key] of s.elements) shared.get(map)?.add(key);
  }
  const elements: string[] = [];
  // Pre-joined fragments of service ports, about ELEMENTS_PER_COMMAND elements per command.
  for (const [map, list] of fragments) {
    for (let i = 0; i < list.length; i += FRAGMENTS_PER_COMMAND) elements.push(`add element ip ${t} ${map} { ${list.slice(i, i + FRAGMENTS_PER_COMMAND).join(', ')} }`);
  }
  for (const [map, keys] of shared) {
    const list = [...keys];
    for (let i = 0; i < list.length; i += ELEMENTS_PER_COMMAND) elements.push(`add element ip ${t} ${map} { ${list.slice(i, i + ELEMENTS_PER_COMMAND).join(', ')} }`);
  }
  // "add" first so that "delete" succeeds when the table does not exist yet. Rules before elements:
  // the kernel checks each element against the rules already bound to its map, not the reverse.
  return [`add table ip ${t}`, `delete table ip ${t}`, ...ruleset.base, ...out.sets, ...out.chains, ...out.rules, ...elements, ''].join('\n');
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
  const out: ObjectCommands = { chains: [], sets: [], rules: [] };
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
  // A cached render names the service ports that changed since the previous one; otherwise compare all.
  const candidates = ruleset.delta?.base === previous ? ruleset.delta.ids : ruleset.services.keys();
  for (const id of candidates) {
    const s = ruleset.services.get(id);
    if (!s) continue;
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
  const gone = ruleset.delta?.base === previous ? [...ruleset.delta.ids].filter((id) => !ruleset.services.has(id)) : [...previous.services.keys()];
  for (const id of gone) {
    const before = previous.services.get(id);
    if (!before || ruleset.services.has(id)) continue;
    drop(before);
    for (const name of before.chains.keys()) {
      flush.push(`flush chain ip ${t} ${name}`);
      deleteChains.push(`delete chain ip ${t} ${name}`);
    }
    for (const name of before.sets.keys()) deleteSets.push(`delete set ip ${t} ${name}`);
  }
  // Groups no service port uses any more go after the elements and chains that pointed into them.
  const liveMaps = new Set([...ruleset.groups.values()].map((g) => g.map));
  const deletedMaps = new Set<string>();
  for (const [name, g] of previous.groups) {
    if (ruleset.groups.has(name)) continue;
    flush.push(`flush chain ip ${t} ${name}`);
    deleteChains.push(`delete chain ip ${t} ${name}`);
    if (!liveMaps.has(g.map) && !deletedMaps.has(g.map)) {
      deletedMaps.add(g.map);
      deleteSets.push(`delete map ip ${t} ${g.map}`);
    }
  }
  const groupsOut: ObjectCommands = { chains: [], sets: [], rules: [] };
  addGroups(groupsOut, t, ruleset.groups, previous.groups);
  // An element removed and added again unchanged (a shared key moving between holders) is left alone;
  // elements of deleted maps go with their map.
  const elementId = (e: NftElement): string => `${e[0]}\u0000${e[1]}\u0000${e[2]}`;
  const addedIds = new Set(added.map(elementId));
  const removedIds = new Set(removed.map(elementId));
  return [
    ...elementCommands('delete', t, removed.filter((e) => !addedIds.has(elementId(e)) && !deletedMaps.has(e[0]))),
    ...flush, ...deleteChains, ...deleteSets,
    ...groupsOut.sets, ...groupsOut.chains, ...groupsOut.rules,
    ...out.sets, ...out.chains, ...out.rules,
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
  // Groups follow from the elements (their maps) and the chains' verdicts.
  return a.elements.every((e, i) => e[0] === b.elements[i][0] && e[1] === b.elements[i][1] && e[2] === b.elements[i][2]);
}

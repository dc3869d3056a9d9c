// ProxyState → one nftables table of weft's own (kube-proxy's nftables layout, see proxy/README.md),
// and the `nft -f` script for a full sync or an incremental transaction. Pure.
//
// Dispatch is a verdict-map lookup keyed by `ipv4_addr . inet_proto . inet_service`, and endpoint
// choice a map lookup in a chain shared by all service ports with the same endpoint count, so
// packet cost does not grow with the number of services, the table holds a few chains and many map
// elements (which `nft -f` loads fast), and an update of a service is a handful of element changes.
import { base32Sha256 } from '../hash-name.ts';
import type { ProxyEndpoint, ProxyServicePort, ProxyState } from '../model/types.ts';

export interface NftablesRenderOptions {
  /** Default "weft". */
  table?: string;
  /** Default 0x4000. */
  masqueradeMark?: number;
  masqueradeAll?: boolean;
  /** Service CIDRs: traffic to an unallocated address in them is dropped, not routed out. */
  serviceCIDRs?: readonly string[];
  /**
   * Suffix of the sets and maps that hold elements ("service-ips-a"): a full sync over netlink
   * loads a new generation beside the live one and switches to it in one transaction. Default none.
   */
  generation?: string;
}

/** One map or set element: [map, key, value] (value "" for set elements), in `nft` syntax. */
export type NftElement = readonly [map: string, key: string, value: string];

/** The kinds of fields in set keys and map values (each takes one 4-byte register). */
export type NftField = 'ipv4' | 'proto' | 'port' | 'int';
/** An address or protocol name as text, a port or integer as a number. */
export type NftFieldValue = string | number;
/** Key and value types of a set or map: its fields in order, or a verdict; no value for a set. */
export interface NftLayout { key: readonly NftField[]; value?: readonly NftField[] | 'verdict' }
/**
 * A service port's elements of one set or map, without an object per element. `one`: the element
 * `key`, with `verdict` in a verdict map; `slots`: one element per endpoint, `key . index : ip . port`
 * (the endpoint maps of NftGroup); `pairs`: one `ip . ip` element per endpoint (the hairpin set).
 */
export interface NftElementRun {
  readonly kind: 'one' | 'slots' | 'pairs';
  /** The set or map, without the generation suffix. */
  readonly map: string;
  /** `one`: the key's fields; `slots`: the fields before the index; `pairs`: none. */
  readonly key: readonly NftFieldValue[];
  /** `one` in a verdict map; otherwise "". */
  readonly verdict: string;
  /** `slots` and `pairs`; otherwise empty. */
  readonly endpoints: readonly ProxyEndpoint[];
}

/**
 * A chain shared by every service port that picks among the same number of endpoints on the same
 * path: `<key> . numgen random mod N` looked up in its map, whose elements name each service
 * port's endpoints. Chains (and maps) are counted in distinct endpoint counts, not in services.
 */
export interface NftGroup {
  /** Its map, without the generation suffix (the one rule names it `@map`). */
  map: string;
  /** "{ typeof ... ; }" */
  mapDecl: string;
  layout: NftLayout;
  rules: string[];
}

/** Everything one service port owns, rendered once and reused while the service port is unchanged. */
export interface NftServiceObjects {
  /** Chain name → its rules, in order. */
  chains: Map<string, string[]>;
  /** Set name → its declaration ("{ type ipv4_addr ; ... }"). */
  sets: Map<string, string>;
  /** Elements of the shared maps and sets, as runs (see NftElementRun). */
  runs: readonly NftElementRun[];
  /** The same in `nft` syntax, built on first use; keys shared by service ports (cluster-ips, hairpin) are counted. */
  readonly elements: NftElement[];
  /** Map name → this service port's elements of it in `nft` syntax, for full scripts (maps not in SHARED_SETS); built on first use. */
  readonly elementText: Map<string, string>;
  /** Group chains the elements point into (see NftGroup), by chain name. */
  groups: Map<string, NftGroup>;
  /** The service port these objects were rendered from: the same object next sync means unchanged. */
  from: ProxyServicePort;
}

export interface NftRuleset {
  table: string;
  /** See NftablesRenderOptions.generation. */
  generation?: string;
  /** Commands defining base chains, maps and static rules; a change here needs a full sync. */
  base: string[];
  /** Keyed by "ns/svc:port/protocol", in the state's order. */
  services: NftServiceTable;
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

const VIP: NftLayout = { key: ['ipv4', 'proto', 'port'], value: 'verdict' };
const NODEPORT: NftLayout = { key: ['proto', 'port'], value: 'verdict' };
/** The shared sets and maps: [name, kind, declaration, layout]. */
const MAPS: [string, 'set' | 'map', string, NftLayout][] = [
  ['cluster-ips', 'set', '{ type ipv4_addr ; comment "Active ClusterIPs" ; }', { key: ['ipv4'] }],
  ['service-ips', 'map', '{ type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }', VIP],
  ['service-nodeports', 'map', '{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }', NODEPORT],
  ['no-endpoint-services', 'map', '{ type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }', VIP],
  ['no-endpoint-nodeports', 'map', '{ type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }', NODEPORT],
  ['firewall-ips', 'map', '{ type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }', VIP],
  ['hairpin', 'set', '{ type ipv4_addr . ipv4_addr ; comment "endpoint . endpoint: a pod reaching itself through a service is masqueraded" ; }', { key: ['ipv4', 'ipv4'] }],
];
/** Chains attached to netfilter hooks: the only ones a generation switch keeps. */
const HOOKS = new Map<string, string>([
  ['filter-prerouting-pre-dnat', 'type filter hook prerouting priority -110 ;'],
  ['filter-output-pre-dnat', 'type filter hook output priority -110 ;'],
  ['filter-forward', 'type filter hook forward priority 0 ;'],
  ['filter-input', 'type filter hook input priority 0 ;'],
  ['filter-output', 'type filter hook output priority 0 ;'],
  ['nat-prerouting', 'type nat hook prerouting priority -100 ;'],
  ['nat-output', 'type nat hook output priority -100 ;'],
  ['nat-postrouting', 'type nat hook postrouting priority 100 ;'],
]);
/** The name in the kernel of a set or map that holds elements. */
const generationName = (name: string, generation: string | undefined): string => (generation ? `${name}-${generation}` : name);

function baseCommands(t: string, o: NftablesRenderOptions, clusterCIDR: string | undefined): string[] {
  const mark = `0x${(o.masqueradeMark ?? 0x4000).toString(16)}`;
  const g = (name: string): string => generationName(name, o.generation);
  const localDst = 'ip daddr != 127.0.0.0/8 fib daddr type local';
  const chains: [string, string[]][] = [
    ['filter-prerouting-pre-dnat', ['ct state new jump firewall-check']],
    ['filter-output-pre-dnat', ['ct state new jump firewall-check']],
    ['filter-forward', ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check']],
    ['filter-input', ['ct state new jump nodeport-endpoints-check', 'ct state new jump service-endpoints-check']],
    ['filter-output', ['ct state new jump service-endpoints-check', 'ct state new jump cluster-ips-check']],
    ['nat-prerouting', ['jump services']],
    ['nat-output', ['jump services']],
    ['nat-postrouting', ['jump masquerading']],
    ['firewall-check', [`ip daddr . meta l4proto . th dport vmap @${g('firewall-ips')}`]],
    ['reject-chain', ['reject']],
    ['services', [
      // ClusterIP traffic from outside the cluster (or all of it with masqueradeAll) is marked here
      // once, not per service: a packet to a ClusterIP that has no endpoints is rejected anyway.
      ...(o.masqueradeAll ? [`ip daddr @${g('cluster-ips')} jump mark-for-masquerade`] : clusterCIDR ? [`ip daddr @${g('cluster-ips')} ip saddr != ${clusterCIDR} jump mark-for-masquerade`] : []),
      `ip daddr . meta l4proto . th dport vmap @${g('service-ips')}`, `${localDst} meta l4proto . th dport vmap @${g('service-nodeports')}`]],
    ['service-endpoints-check', [`ip daddr . meta l4proto . th dport vmap @${g('no-endpoint-services')}`]],
    ['nodeport-endpoints-check', [`${localDst} meta l4proto . th dport vmap @${g('no-endpoint-nodeports')}`]],
    ['cluster-ips-check', [
      // A known ClusterIP on a port it does not serve is refused; an unallocated one is dropped.
      `ip daddr @${g('cluster-ips')} reject`,
      ...(o.serviceCIDRs?.length ? [`ip daddr { ${o.serviceCIDRs.join(', ')} } drop`] : []),
    ]],
    ['mark-for-masquerade', [`mark set mark or ${mark}`]],
    ['masquerading', [
      // Hairpin: the endpoint chosen is the client itself; it must see the node as source.
      `ct status dnat ip saddr . ip daddr @${g('hairpin')} jump mark-for-masquerade`,
      `mark and ${mark} == 0 return`, `mark set mark xor ${mark}`, 'masquerade fully-random',
    ]],
  ];
  const out = [`add table ip ${t} { comment "rules for weft" ; }`];
  for (const [name, kind, decl] of MAPS) out.push(`add ${kind} ip ${t} ${g(name)} ${decl}`);
  for (const [name] of chains) out.push(addChain(t, name));
  for (const [name, rules] of chains) for (const r of rules) out.push(`add rule ip ${t} ${name} ${r}`);
  return out;
}

function addChain(t: string, name: string): string {
  const hook = HOOKS.get(name);
  return hook ? `add chain ip ${t} ${name} { ${hook} }` : `add chain ip ${t} ${name}`;
}

export function renderNftables(state: ProxyState, options: NftablesRenderOptions = {}, cache: NftRenderCache = createNftRenderCache()): NftRuleset {
  const t = options.table ?? 'weft';
  const use = (objects: NftServiceObjects, by: number): void => {
    for (const [name, group] of objects.groups) {
      const u = cache.groupUsers.get(name);
      if (u) u.users += by;
      else cache.groupUsers.set(name, { group, users: by });
    }
  };
  const { services, changed } = (cache.ruleset && renderInPlace(state, cache.ruleset.services, use)) ?? renderAll(state, cache.ruleset?.services, use);
  // Groups are few (distinct endpoint counts), so rebuilding this map is cheap.
  const groups = new Map<string, NftGroup>();
  for (const [name, u] of [...cache.groupUsers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (u.users > 0) groups.set(name, u.group);
    else cache.groupUsers.delete(name);
  }
  const ruleset: NftRuleset = { table: t, generation: options.generation, base: baseCommands(t, options, state.clusterCIDR), services, groups };
  const base = cache.ruleset;
  if (base) {
    // Only the newest render keeps a delta, so rulesets do not chain back through every sync.
    base.delta = undefined;
    ruleset.delta = { base, ids: changed };
  }
  cache.ruleset = ruleset;
  return ruleset;
}

type UseGroups = (objects: NftServiceObjects, by: number) => void;

/**
 * The common sync: the same service ports in the same order, some replaced by new objects (see
 * createProxyStateBuilder). Compares the two arrays by identity and copies the last table with the
 * changed entries re-rendered, sharing its id index: no per-service-port map work, which at 10k
 * service ports costs more than rendering the change. Undefined when the ids are not the same.
 */
function renderInPlace(state: ProxyState, last: NftServiceTable, use: UseGroups): { services: NftServiceTable; changed: Set<string> } | undefined {
  const sps = state.servicePorts;
  const before = last.servicePorts;
  if (sps.length !== before.length) return undefined;
  const at: number[] = [];
  for (let i = 0; i < sps.length; i++) {
    if (sps[i] === before[i]) continue;
    if (sps[i].id !== before[i].id) return undefined;
    at.push(i);
  }
  const objects = last.objects.slice();
  const changed = new Set<string>();
  for (const i of at) {
    use(objects[i], -1);
    objects[i] = renderServicePort(sps[i], state.clusterCIDR);
    use(objects[i], 1);
    changed.add(sps[i].id);
  }
  return { services: new NftServiceTable(last.index, sps, objects), changed };
}

function renderAll(state: ProxyState, last: NftServiceTable | undefined, use: UseGroups): { services: NftServiceTable; changed: Set<string> } {
  const index = new Map<string, number>();
  const servicePorts: ProxyServicePort[] = [];
  const objects: NftServiceObjects[] = [];
  const changed = new Set<string>();
  for (const sp of state.servicePorts) {
    let s = last?.get(sp.id);
    if (s?.from !== sp) {
      if (s) use(s, -1);
      s = renderServicePort(sp, state.clusterCIDR);
      use(s, 1);
      // A first render has nothing to diff against: no delta to record.
      if (last) changed.add(sp.id);
    }
    // A repeated id replaces the earlier entry in its place, as Map.set would.
    const i = index.get(sp.id);
    if (i !== undefined) {
      servicePorts[i] = sp;
      objects[i] = s;
    } else {
      index.set(sp.id, objects.length);
      servicePorts.push(sp);
      objects.push(s);
    }
  }
  if (last) {
    for (const [id, before] of last) {
      if (index.has(id)) continue;
      use(before, -1);
      changed.add(id);
    }
  }
  return { services: new NftServiceTable(index, servicePorts, objects), changed };
}

/**
 * The service ports' objects by id, in the state's order: an array and an id → position index that
 * successive renders share while the ids stay in place (see renderInPlace).
 */
export class NftServiceTable implements ReadonlyMap<string, NftServiceObjects> {
  constructor(
    readonly index: ReadonlyMap<string, number>,
    /** The service port each entry was rendered from, by position. */
    readonly servicePorts: readonly ProxyServicePort[],
    readonly objects: readonly NftServiceObjects[],
  ) {}

  get size(): number { return this.objects.length; }
  get(id: string): NftServiceObjects | undefined {
    const i = this.index.get(id);
    return i === undefined ? undefined : this.objects[i];
  }
  has(id: string): boolean { return this.index.has(id); }
  keys(): MapIterator<string> { return this.index.keys(); }
  values(): MapIterator<NftServiceObjects> { return this.objects.values(); }
  *entries(): MapIterator<[string, NftServiceObjects]> {
    for (const [id, i] of this.index) yield [id, this.objects[i]];
  }
  [Symbol.iterator](): MapIterator<[string, NftServiceObjects]> { return this.entries(); }
  forEach(fn: (value: NftServiceObjects, key: string, map: ReadonlyMap<string, NftServiceObjects>) => void): void {
    for (const [id, s] of this.entries()) fn(s, id, this);
  }
}

/** Which endpoints a group picks from: Cluster or Local policy; "external" is Cluster plus the masquerade mark. */
type GroupKind = 'cluster' | 'local' | 'external';
/** What identifies the service port in the lookup: its destination IP and port, or its node port alone (any local address). */
type GroupPath = 'ip' | 'nodeport';

/** Groups are few and never change: each is built once (see groupOf). */
const GROUPS = new Map<string, [string, NftGroup]>();

function groupOf(kind: GroupKind, path: GroupPath, p: string, n: number): [string, NftGroup] {
  const id = `${kind} ${path} ${p} ${n}`;
  let group = GROUPS.get(id);
  if (!group) GROUPS.set(id, (group = newGroup(kind, path, p, n)));
  return group;
}

function newGroup(kind: GroupKind, path: GroupPath, p: string, n: number): [string, NftGroup] {
  const key = path === 'ip' ? `ip daddr . ${p} dport` : `${p} dport`;
  // External traffic picks among the Cluster endpoints: it shares the cluster map, not the chain.
  const map = `endpoints-${kind === 'local' ? 'local' : 'cluster'}-${path}-${p}-${n}`;
  const rules = [`dnat ip addr . port to ${key} . numgen random mod ${n} map @${map}`];
  if (kind === 'external') rules.unshift('jump mark-for-masquerade');
  const layout: NftLayout = { key: path === 'ip' ? ['ipv4', 'port', 'int'] : ['port', 'int'], value: ['ipv4', 'port'] };
  return [`pick-${kind}-${path}-${p}-${n}`, { map, mapDecl: `{ typeof ${key} . numgen random mod ${n} : ip daddr . ${p} dport ; }`, layout, rules }];
}

function renderServicePort(sp: ProxyServicePort, clusterCIDR: string | undefined): NftServiceObjects {
  const runs: NftElementRun[] = [];
  const el = (map: string, key: NftFieldValue[], verdict: string): void => void runs.push({ kind: 'one', map, key, verdict, endpoints: NO_ENDPOINTS });
  // Most service ports own no chain or set: they share empty maps until they do.
  let chains = NO_CHAINS;
  let sets = NO_SETS;
  const groups = new Map<string, NftGroup>();
  const p = sp.protocol;
  const affinity = sp.affinityTimeoutSeconds > 0;
  // Hashed per-service names only where a service needs chains of its own (affinity, eTP=Local, source ranges).
  let hashedName: string | undefined;
  const hashed = (): string => (hashedName ??= hashName(`${sp.namespace}/${sp.name}/${p}/${sp.portName}`));
  const rulesOf = (chain: string): string[] => {
    if (chains === NO_CHAINS) chains = new Map();
    let rules = chains.get(chain);
    if (!rules) chains.set(chain, (rules = []));
    return rules;
  };

  const hasInternal = sp.hasEndpoints && (!sp.internalPolicyLocal || sp.localEndpoints.length > 0);
  const hasExternal = sp.hasEndpoints && (!sp.externalPolicyLocal || sp.localEndpoints.length > 0);
  const usesFw = sp.hasEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const noEndpointVerdict = sp.hasEndpoints ? 'drop' : 'goto reject-chain';
  const vip = (ip: string): NftFieldValue[] => [ip, p, sp.port];
  const externalIPs = [...sp.externalIPs, ...sp.loadBalancerIPs];
  // Lookup keys of each path: the ClusterIP for internal traffic, external/LB IPs and the node port for external.
  const keysOf = (path: GroupPath, internal: boolean): NftFieldValue[][] =>
    path === 'nodeport' ? [[sp.nodePort]] : internal ? [[sp.clusterIP, sp.port]] : externalIPs.map((ip) => [ip, sp.port]);

  // With affinity: per-service `service-`/`local-` chains with a chain and a dynamic set per endpoint.
  const affinityChain = (kind: 'cluster' | 'local'): string => {
    const chain = `${kind === 'local' ? 'local' : 'service'}-${hashed()}`;
    if (chains.has(chain)) return chain;
    const eps = kind === 'local' ? sp.localEndpoints : sp.clusterEndpoints;
    const r = rulesOf(chain);
    const names = eps.map((ep) => hashName(`${sp.namespace}/${sp.name}/${p}/${sp.portName}__${ep.ip}/${ep.port}`));
    names.forEach((name) => r.push(`ip saddr @affinity-${name} goto endpoint-${name}`));
    r.push(`numgen random mod ${eps.length} vmap { ${names.map((name, i) => `${i} : goto endpoint-${name}`).join(' , ')} }`);
    if (sets === NO_SETS) sets = new Map();
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
    for (const key of keysOf(path, internal)) runs.push({ kind: 'slots', map: group.map, key, verdict: '', endpoints: eps });
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

  el('cluster-ips', [sp.clusterIP], '');
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
    if (sp.hasEndpoints) el('service-nodeports', [p, sp.nodePort], external('nodeport'));
    if (!hasExternal) el('no-endpoint-nodeports', [p, sp.nodePort], noEndpointVerdict);
  }
  // Hairpin happens where the packet was DNATed: on the client's own node, or here for a remote pod
  // short-circuited by eTP=Local (not masqueraded otherwise). Endpoints of other nodes need no pair.
  const pairs = sp.externalPolicyLocal ? sp.reachableEndpoints : sp.reachableEndpoints.filter((ep) => ep.isLocal || ep.nodeName === undefined);
  if (pairs.length > 0) runs.push({ kind: 'pairs', map: 'hairpin', key: NO_FIELDS, verdict: '', endpoints: pairs });
  return new ServiceObjects(chains, sets, runs, groups, sp);
}

const NO_ENDPOINTS: readonly ProxyEndpoint[] = [];
// Shared by every service port without chains or sets of its own; never written to.
const NO_CHAINS: Map<string, string[]> = new Map();
const NO_SETS: Map<string, string> = new Map();
const NO_FIELDS: readonly NftFieldValue[] = [];

/** A run's elements in `nft` syntax. */
function runElements(run: NftElementRun, out: NftElement[]): void {
  const { map, key, endpoints } = run;
  if (run.kind === 'one') out.push([map, key.join(' . '), run.verdict]);
  else if (run.kind === 'pairs') for (const ep of endpoints) out.push([map, `${ep.ip} . ${ep.ip}`, '']);
  else {
    const prefix = key.join(' . ');
    for (let i = 0; i < endpoints.length; i++) out.push([map, `${prefix} . ${i}`, `${endpoints[i].ip} . ${endpoints[i].port}`]);
  }
}

/** The text forms of the elements are built only for `nft -f` scripts: a netlink full sync encodes the runs. */
class ServiceObjects implements NftServiceObjects {
  #elements?: NftElement[];
  #elementText?: Map<string, string>;
  constructor(
    readonly chains: Map<string, string[]>,
    readonly sets: Map<string, string>,
    readonly runs: readonly NftElementRun[],
    readonly groups: Map<string, NftGroup>,
    readonly from: ProxyServicePort,
  ) {}

  get elements(): NftElement[] {
    if (this.#elements) return this.#elements;
    const out: NftElement[] = [];
    for (const run of this.runs) runElements(run, out);
    return (this.#elements = out);
  }

  get elementText(): Map<string, string> {
    if (this.#elementText) return this.#elementText;
    const byMap = new Map<string, string[]>();
    for (const [map, key, value] of this.elements) {
      if (SHARED_SETS.has(map)) continue;
      const text = value ? `${key} : ${value}` : key;
      const list = byMap.get(map);
      if (list) list.push(text);
      else byMap.set(map, [text]);
    }
    return (this.#elementText = new Map([...byMap].map(([map, list]) => [map, list.join(', ')])));
  }
}

/** Element commands, one per map and up to ELEMENTS_PER_COMMAND elements (the parse cost of nft is per command). */
function elementCommands(verb: 'add' | 'delete', t: string, generation: string | undefined, elements: Iterable<NftElement>): string[] {
  const byMap = new Map<string, string[]>();
  for (const [map, key, value] of elements) {
    const text = verb === 'add' && value ? `${key} : ${value}` : key;
    const list = byMap.get(map);
    if (list) list.push(text);
    else byMap.set(map, [text]);
  }
  const out: string[] = [];
  for (const [map, list] of byMap) {
    for (let i = 0; i < list.length; i += ELEMENTS_PER_COMMAND) out.push(`${verb} element ip ${t} ${generationName(map, generation)} { ${list.slice(i, i + ELEMENTS_PER_COMMAND).join(', ')} }`);
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

/** A group's rules naming its map in `generation`. */
function groupRules(g: NftGroup, generation: string | undefined): string[] {
  return generation ? g.rules.map((r) => r.replace(`@${g.map}`, `@${generationName(g.map, generation)}`)) : g.rules;
}

/** Maps, chains and rules of the groups in `groups` and not in `existing` (maps shared by groups are added once). */
function addGroups(out: ObjectCommands, t: string, generation: string | undefined, groups: ReadonlyMap<string, NftGroup>, existing: ReadonlyMap<string, NftGroup> = new Map()): void {
  const existingMaps = new Set([...existing.values()].map((g) => g.map));
  for (const [name, g] of groups) {
    if (existing.has(name)) continue;
    if (!existingMaps.has(g.map)) {
      existingMaps.add(g.map);
      out.sets.push(`add map ip ${t} ${generationName(g.map, generation)} ${g.mapDecl}`);
    }
    out.chains.push(`add chain ip ${t} ${name}`);
    for (const r of groupRules(g, generation)) out.rules.push(`add rule ip ${t} ${name} ${r}`);
  }
}

/** Sets whose keys several service ports can hold: a Service's ports share its clusterIP, services share endpoints. */
const SHARED_SETS = new Set(['cluster-ips', 'hairpin']);

/**
 * How many service ports hold each shared element, by set and then by IP (the cluster-ips key, or
 * the address of a hairpin pair `ip . ip`): it is added with its first holder and deleted with its
 * last. Other keys belong to exactly one service port.
 */
export type NftElementCounts = Map<string, Map<string, number>>;

/** The holder counts of a shared set, created on first use; undefined for other sets and maps. */
function holders(counts: NftElementCounts, map: string): Map<string, number> | undefined {
  if (!SHARED_SETS.has(map)) return undefined;
  let byIp = counts.get(map);
  if (!byIp) counts.set(map, (byIp = new Map()));
  return byIp;
}

export function countElements(ruleset: NftRuleset): NftElementCounts {
  const counts: NftElementCounts = new Map();
  for (const s of ruleset.services.values()) {
    for (const run of s.runs) {
      const byIp = holders(counts, run.map);
      if (!byIp) continue;
      if (run.kind === 'pairs') for (const ep of run.endpoints) byIp.set(ep.ip, (byIp.get(ep.ip) ?? 0) + 1);
      else byIp.set(run.key[0] as string, (byIp.get(run.key[0] as string) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * Adds `by` to the holders of each element of a shared run; `edge` gets, in `nft` syntax, those
 * that gain their first holder (by 1) or lose their last (by -1).
 */
function countRun(byIp: Map<string, number>, run: NftElementRun, by: 1 | -1, edge: NftElement[]): void {
  const ips = run.kind === 'pairs' ? run.endpoints.map((ep) => ep.ip) : [run.key[0] as string];
  for (const ip of ips) {
    const n = (byIp.get(ip) ?? 0) + by;
    if (n > 0) byIp.set(ip, n);
    else byIp.delete(ip);
    if (by > 0 ? n === 1 : n <= 0) edge.push([run.map, run.kind === 'pairs' ? `${ip} . ${ip}` : ip, '']);
  }
}

/** The whole table, replacing whatever is there in one transaction (affinity state is reset). */
export function nftFullScript(ruleset: NftRuleset): string {
  const t = ruleset.table;
  const out: ObjectCommands = { chains: [], sets: [], rules: [] };
  const gen = ruleset.generation;
  addGroups(out, t, gen, ruleset.groups);
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
    for (let i = 0; i < list.length; i += FRAGMENTS_PER_COMMAND) elements.push(`add element ip ${t} ${generationName(map, gen)} { ${list.slice(i, i + FRAGMENTS_PER_COMMAND).join(', ')} }`);
  }
  for (const [map, keys] of shared) {
    const list = [...keys];
    for (let i = 0; i < list.length; i += ELEMENTS_PER_COMMAND) elements.push(`add element ip ${t} ${generationName(map, gen)} { ${list.slice(i, i + ELEMENTS_PER_COMMAND).join(', ')} }`);
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
  if (ruleset.table !== previous.table || ruleset.generation !== previous.generation || !sameLines(ruleset.base, previous.base)) {
    counts.clear();
    for (const [k, v] of countElements(ruleset)) counts.set(k, v);
    return nftFullScript(ruleset);
  }
  const t = ruleset.table;
  const gen = ruleset.generation;
  const removed: NftElement[] = [];
  const added: NftElement[] = [];
  const flush: string[] = [];
  const deleteChains: string[] = [];
  const deleteSets: string[] = [];
  const out: ObjectCommands = { chains: [], sets: [], rules: [] };
  const count = (s: NftServiceObjects, by: 1 | -1, out: NftElement[]): void => {
    for (const run of s.runs) {
      const byIp = holders(counts, run.map);
      if (byIp) countRun(byIp, run, by, out);
      else runElements(run, out);
    }
  };
  const drop = (s: NftServiceObjects): void => count(s, -1, removed);
  const take = (s: NftServiceObjects): void => count(s, 1, added);
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
      deleteSets.push(`delete map ip ${t} ${generationName(g.map, gen)}`);
    }
  }
  const groupsOut: ObjectCommands = { chains: [], sets: [], rules: [] };
  addGroups(groupsOut, t, gen, ruleset.groups, previous.groups);
  // An element removed and added again unchanged (a shared key moving between holders) is left alone;
  // elements of deleted maps go with their map.
  const elementId = (e: NftElement): string => `${e[0]}\u0000${e[1]}\u0000${e[2]}`;
  const addedIds = new Set(added.map(elementId));
  const removedIds = new Set(removed.map(elementId));
  return [
    ...elementCommands('delete', t, gen, removed.filter((e) => !addedIds.has(elementId(e)) && !deletedMaps.has(e[0]))),
    ...flush, ...deleteChains, ...deleteSets,
    ...groupsOut.sets, ...groupsOut.chains, ...groupsOut.rules,
    ...out.sets, ...out.chains, ...out.rules,
    ...elementCommands('add', t, gen, added.filter((e) => !removedIds.has(elementId(e)))),
    '',
  ].join('\n');
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

function sameObjects(a: NftServiceObjects, b: NftServiceObjects): boolean {
  if (a.chains.size !== b.chains.size || a.sets.size !== b.sets.size || a.runs.length !== b.runs.length) return false;
  for (const [name, rules] of a.chains) {
    const other = b.chains.get(name);
    if (!other || !sameLines(rules, other)) return false;
  }
  for (const [name, decl] of a.sets) if (b.sets.get(name) !== decl) return false;
  // Groups follow from the elements (their maps) and the chains' verdicts.
  const ea = a.elements;
  const eb = b.elements;
  return ea.length === eb.length && ea.every((e, i) => e[0] === eb[i][0] && e[1] === eb[i][1] && e[2] === eb[i][2]);
}

/** Kernel names of the chains, and of the sets and maps with their kind, that a ruleset defines. */
export interface NftObjectNames {
  chains: Set<string>;
  sets: Map<string, 'set' | 'map'>;
}

export function nftObjectNames(ruleset: NftRuleset): NftObjectNames {
  const gen = ruleset.generation;
  const chains = new Set<string>();
  for (const line of ruleset.base) if (line.startsWith('add chain ')) chains.add(line.split(' ')[4]);
  const sets = new Map<string, 'set' | 'map'>(MAPS.map(([name, kind]) => [generationName(name, gen), kind]));
  for (const [name, g] of ruleset.groups) {
    chains.add(name);
    sets.set(generationName(g.map, gen), 'map');
  }
  for (const s of ruleset.services.values()) {
    for (const name of s.chains.keys()) chains.add(name);
    for (const name of s.sets.keys()) sets.set(name, 'set');
  }
  return { chains, sets };
}

/** One set or map by its name in the kernel, its layout, and the runs of its elements. */
export interface NftElementSet {
  name: string;
  layout: NftLayout;
  runs: readonly NftElementRun[];
}

/** Every set and map that holds elements, by kernel name, with its layout and element runs (shared keys may repeat). */
export function nftElementSets(ruleset: NftRuleset): NftElementSet[] {
  const byMap = new Map<string, NftElementSet & { runs: NftElementRun[] }>();
  for (const [name, , , layout] of MAPS) byMap.set(name, { name: generationName(name, ruleset.generation), layout, runs: [] });
  for (const g of ruleset.groups.values()) {
    if (!byMap.has(g.map)) byMap.set(g.map, { name: generationName(g.map, ruleset.generation), layout: g.layout, runs: [] });
  }
  for (const s of ruleset.services.values()) {
    for (const run of s.runs) byMap.get(run.map)?.runs.push(run);
  }
  return [...byMap.values()].filter((m) => m.runs.length > 0);
}

/**
 * First step of a generation switch (see nftSwitchScript), with the live generation untouched:
 * the new generation's sets and maps, empty, and every chain its elements will name.
 */
export function nftStageScript(ruleset: NftRuleset): string {
  const t = ruleset.table;
  const out = ruleset.base.filter((line) => line.startsWith('add table ') || line.startsWith('add set ') || line.startsWith('add map '));
  const maps = new Set<string>();
  for (const g of ruleset.groups.values()) {
    if (!maps.has(g.map)) out.push(`add map ip ${t} ${generationName(g.map, ruleset.generation)} ${g.mapDecl}`);
    maps.add(g.map);
  }
  for (const name of nftObjectNames(ruleset).chains) if (!HOOKS.has(name)) out.push(`add chain ip ${t} ${name}`);
  return [...out, ''].join('\n');
}

/**
 * The one transaction that makes a staged generation (nftStageScript, then its elements) live
 * over `live` (what the table holds): every chain is rewritten to name the new sets and maps, the
 * old generation's sets and maps and the chains the new ruleset lacks are deleted. Affinity state
 * is reset, as in a full script. Packets see the old ruleset or the new one, nothing between.
 */
export function nftSwitchScript(ruleset: NftRuleset, live: NftObjectNames): string {
  const t = ruleset.table;
  const next = nftObjectNames(ruleset);
  const out: string[] = [];
  for (const name of next.chains) out.push(addChain(t, name));
  for (const name of new Set([...live.chains, ...next.chains])) out.push(`flush chain ip ${t} ${name}`);
  // Deleting the old sets and maps drops their elements' references to chains, so chains go after.
  // Affinity sets are deleted and added again; the new generation's own sets are the ones just staged.
  const staged = new Set([...MAPS.map(([name]) => name), ...[...ruleset.groups.values()].map((g) => g.map)].map((name) => generationName(name, ruleset.generation)));
  for (const [name, kind] of live.sets) if (!staged.has(name)) out.push(`delete ${kind} ip ${t} ${name}`);
  for (const name of live.chains) if (!next.chains.has(name) && !HOOKS.has(name)) out.push(`delete chain ip ${t} ${name}`);
  const objects: ObjectCommands = { chains: [], sets: [], rules: [] };
  for (const s of ruleset.services.values()) addServiceObjects(objects, t, s);
  out.push(...objects.sets);
  out.push(...ruleset.base.filter((line) => line.startsWith('add rule ')));
  for (const [name, g] of ruleset.groups) for (const r of groupRules(g, ruleset.generation)) out.push(`add rule ip ${t} ${name} ${r}`);
  out.push(...objects.rules, '');
  return out.join('\n');
}

// The node's side of the flat pod network as data: from the current leases and this node's name,
// the routes, neighbours and forwarding entries that must exist in the node's namespace (pure,
// golden-tested), and the `ip -b` / `bridge -b` lines that turn what is there into that.
import { contains, formatIPv4, parseCidr, parseIPv4 } from '../../mesh-control/model/cidr.ts';

export type Backend = 'host-gw' | 'vxlan';

/** The part of a node subnet lease this renderer reads (structurally a mesh-control lease). */
export interface NodeLease {
  node: string;
  subnet: string;
  attrs: { underlayIP?: string; vtepMAC?: string };
}

/** flannel's scheme: VNI 1 on the kernel's VXLAN port 8472, one device per node. */
export const VXLAN_DEVICE = 'weft.1';
export const VXLAN_VNI = 1;
export const VXLAN_PORT = 8472;
/** Route protocol number marking the routes weft owns, so a sync can list and prune exactly those. */
export const ROUTE_PROTOCOL = 87;

export interface RouteEntry { dst: string; via: string; dev: string; onlink: boolean }
export interface NeighEntry { ip: string; mac: string; dev: string }
export interface FdbEntry { mac: string; dst: string; dev: string }

export interface NodeRoutes {
  routes: RouteEntry[];
  neighs: NeighEntry[];
  fdb: FdbEntry[];
}

export interface RenderInput {
  self: string;
  leases: NodeLease[];
  backend: Backend;
  clusterCIDR: string;
  /** The node's interface on the underlay (host-gw routes leave through it). */
  underlayDevice: string;
}

/** The VTEP address flannel gives a node: its subnet's network address, as a /32 on the device. */
export function vtepAddress(subnet: string): string {
  return formatIPv4(parseCidr(subnet, false).network);
}

/**
 * A stable, locally administered unicast MAC for a node's VTEP, derived from its underlay address
 * so the lease can carry it before the device exists and a restarted node keeps the same one.
 */
export function vtepMAC(underlayIP: string): string {
  const ip = parseIPv4(underlayIP);
  const bytes = [0x0e, 0x57, ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Desired state: one route per other node's subnet (plus neighbour and fdb entries for vxlan). */
export function renderNodeRoutes(input: RenderInput): NodeRoutes {
  const cluster = parseCidr(input.clusterCIDR);
  const out: NodeRoutes = { routes: [], neighs: [], fdb: [] };
  const peers = input.leases
    .filter((l) => l.node !== input.self && l.attrs.underlayIP !== undefined)
    // Never route anything outside the cluster CIDR, whatever a lease says.
    .filter((l) => { const c = parseCidr(l.subnet, false); return c.prefix >= cluster.prefix && contains(cluster, c.network); })
    .sort((a, b) => parseCidr(a.subnet, false).network - parseCidr(b.subnet, false).network || a.node.localeCompare(b.node));
  for (const lease of peers) {
    const underlayIP = lease.attrs.underlayIP as string;
    if (input.backend === 'host-gw') {
      out.routes.push({ dst: lease.subnet, via: underlayIP, dev: input.underlayDevice, onlink: false });
      continue;
    }
    const mac = lease.attrs.vtepMAC;
    if (!mac) continue;
    const vtep = vtepAddress(lease.subnet);
    out.routes.push({ dst: lease.subnet, via: vtep, dev: VXLAN_DEVICE, onlink: true });
    out.neighs.push({ ip: vtep, mac, dev: VXLAN_DEVICE });
    out.fdb.push({ mac, dst: underlayIP, dev: VXLAN_DEVICE });
  }
  return out;
}

/** Batches that move the kernel from `observed` to `desired`, ordered so no packet meets a half state. */
export interface NodeRoutesBatch {
  /** `bridge -b -` lines run first: forwarding entries for new peers. */
  bridgeBefore: string[];
  /** `ip -b -` lines: neighbours, then routes, then stale neighbours. */
  ip: string[];
  /** `bridge -b -` lines run last: forwarding entries of peers that left. */
  bridgeAfter: string[];
}

const routeKey = (r: RouteEntry) => `${r.dst} ${r.via} ${r.dev} ${r.onlink}`;
const neighKey = (n: NeighEntry) => `${n.ip} ${n.mac} ${n.dev}`;
const fdbKey = (f: FdbEntry) => `${f.mac} ${f.dst} ${f.dev}`;

function missing<T>(want: T[], have: T[], key: (x: T) => string): T[] {
  const present = new Set(have.map(key));
  return want.filter((x) => !present.has(key(x)));
}

export function renderBatch(desired: NodeRoutes, observed: NodeRoutes): NodeRoutesBatch {
  const wantedDst = new Set(desired.routes.map((r) => r.dst));
  const wantedNeigh = new Set(desired.neighs.map((n) => `${n.ip} ${n.dev}`));
  // `fdb replace` already moved a MAC whose underlay address changed; only MACs that left are deleted.
  const wantedMAC = new Set(desired.fdb.map((f) => `${f.mac} ${f.dev}`));
  return {
    bridgeBefore: missing(desired.fdb, observed.fdb, fdbKey).map((f) => `fdb replace ${f.mac} dev ${f.dev} dst ${f.dst} self permanent`),
    ip: [
      ...missing(desired.neighs, observed.neighs, neighKey).map((n) => `neigh replace ${n.ip} lladdr ${n.mac} dev ${n.dev} nud permanent`),
      ...missing(desired.routes, observed.routes, routeKey).map((r) => `route replace ${r.dst} via ${r.via} dev ${r.dev}${r.onlink ? ' onlink' : ''} proto ${ROUTE_PROTOCOL}`),
      ...observed.routes.filter((r) => !wantedDst.has(r.dst)).map((r) => `route del ${r.dst} proto ${ROUTE_PROTOCOL}`),
      ...observed.neighs.filter((n) => !wantedNeigh.has(`${n.ip} ${n.dev}`)).map((n) => `neigh del ${n.ip} dev ${n.dev}`),
    ],
    bridgeAfter: observed.fdb.filter((f) => !wantedMAC.has(`${f.mac} ${f.dev}`)).map((f) => `fdb del ${f.mac} dev ${f.dev} dst ${f.dst} self`),
  };
}

/**
 * The node's one masquerade rule: traffic from its pods to anything outside the cluster leaves with
 * the node's address; pod-to-pod traffic keeps its source. Replaces the table atomically (`nft -f -`).
 */
export function renderMasquerade(podSubnet: string, clusterCIDR: string): string {
  return [
    'table ip weft-nat {}',
    'delete table ip weft-nat',
    'table ip weft-nat {',
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    `\t\tip saddr ${podSubnet} ip daddr != ${clusterCIDR} masquerade`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

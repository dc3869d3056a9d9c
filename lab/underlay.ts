// The network between the lab's nodes and hosts, living in its own namespace: a bridge (l2: every
// node and host in 172.30.0.0/24, so host-gw routes work) or a router (routed: each in its own
// 172.30.<i>.0/24 behind 172.30.<i>.1, so pod traffic between nodes needs the VXLAN overlay).
import { contains, formatIPv4, parseCidr, parseIPv4 } from '../mesh-control/model/cidr.ts';
import { LabError } from './errors.ts';
import { addNetns, ipBatch, netnsSysctl } from './netns.ts';

export type UnderlayMode = 'l2' | 'routed';

export const L2_SUBNET = '172.30.0.0/24';
const BRIDGE = 'ul0';
/** The interface name of the underlay link inside a node or host namespace. */
export const UNDERLAY_DEVICE = 'eth0';

export interface Attachment {
  ip: string;
  prefix: number;
  /** Default route of the attached namespace (routed mode). */
  gateway?: string;
}

/** Where a node (index 1..89) or host (index 1..) sits on the underlay. Pure. */
export function planAttachment(mode: UnderlayMode, kind: 'node' | 'host', index: number, requestedIP?: string): Attachment {
  if (mode === 'l2') {
    if (requestedIP !== undefined) {
      if (!contains(parseCidr(L2_SUBNET), parseIPv4(requestedIP))) {
        throw new LabError('WEFT_LAB_PLAN', `LabHost address ${requestedIP} is outside the l2 underlay ${L2_SUBNET}`);
      }
      return { ip: requestedIP, prefix: 24 };
    }
    const host = kind === 'node' ? 10 + index : 100 + index;
    if (host > 250 || (kind === 'node' && index > 89)) throw new LabError('WEFT_LAB_PLAN', `no underlay address left for ${kind} #${index}`);
    return { ip: `172.30.0.${host}`, prefix: 24 };
  }
  if (requestedIP !== undefined) {
    const ip = parseIPv4(requestedIP);
    const net = (ip & 0xffffff00) >>> 0;
    const gateway = formatIPv4((ip & 255) === 1 ? net + 254 : net + 1);
    return { ip: requestedIP, prefix: 24, gateway };
  }
  const third = kind === 'node' ? index : 100 + index;
  if (third > 254 || (kind === 'node' && index > 99)) throw new LabError('WEFT_LAB_PLAN', `no underlay subnet left for ${kind} #${index}`);
  return { ip: `172.30.${third}.2`, prefix: 24, gateway: `172.30.${third}.1` };
}

export async function createUnderlay(netns: string, mode: UnderlayMode): Promise<void> {
  await addNetns(netns);
  if (mode === 'l2') await ipBatch(netns, [`link add ${BRIDGE} type bridge`, `link set ${BRIDGE} up`], `create underlay bridge ${BRIDGE}`);
  else await netnsSysctl(netns, 'net.ipv4.ip_forward', '1');
}

/**
 * Joins NETNS to the underlay with a veth pair: `link` inside the underlay namespace, eth0 inside
 * NETNS. Both ends are created directly in their namespaces, never in the root one.
 */
export async function attachToUnderlay(underlayNetns: string, mode: UnderlayMode, netns: string, link: string, at: Attachment): Promise<void> {
  const ulSide = mode === 'l2'
    ? [`link set ${link} master ${BRIDGE}`, `link set ${link} up`]
    : [`addr add ${at.gateway}/${at.prefix} dev ${link}`, `link set ${link} up`];
  await ipBatch(underlayNetns, [`link add ${link} type veth peer name ${UNDERLAY_DEVICE} netns ${netns}`, ...ulSide], `attach ${netns} to the underlay as ${link}`);
  await ipBatch(netns, [
    `addr add ${at.ip}/${at.prefix} dev ${UNDERLAY_DEVICE}`,
    `link set ${UNDERLAY_DEVICE} up`,
    ...(at.gateway ? [`route add default via ${at.gateway}`] : []),
  ], `address ${UNDERLAY_DEVICE} of ${netns}`);
}

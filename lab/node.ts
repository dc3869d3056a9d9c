// A lab node: a network namespace on the underlay with its own directory as if it were a separate
// machine (bin/ and net.d/ from `weft cni install`, ipam/), a subnet lease, and one long-lived node
// process inside it: `weft agent` (service proxy, CNI daemon and node network, see agentArgv), which
// joins the lab's mesh-control with a one-time token and streams its view from it.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { installCni } from '../cni/install.ts';
import type { Backend } from '../cni/node-network/render.ts';
import { vtepMAC } from '../cni/node-network/render.ts';
import { createSubnetAllocator, openLeaseStore } from '../mesh-control/leases/index.ts';
import { joinToken } from './control.ts';
import type { LabLayout } from './layout.ts';
import { addNetns, ipBatch } from './netns.ts';
import { distEntry, startInNetns } from './processes.ts';
import type { LabNodeState, ProxyMode } from './state.ts';
import { attachToUnderlay, planAttachment, UNDERLAY_DEVICE, type UnderlayMode } from './underlay.ts';

export interface NodeNetworkSettings {
  underlay: UnderlayMode;
  backend: Backend;
  clusterCIDR: string;
  nodeMask: number;
  proxyMode: ProxyMode;
  serviceCIDR: string;
}

/** host-gw needs the nodes on one L2 segment; a routed underlay needs the VXLAN overlay. */
export function backendFor(underlay: UnderlayMode): Backend {
  return underlay === 'l2' ? 'host-gw' : 'vxlan';
}

/**
 * Takes (or finds again) the node's subnet lease with its underlay address and VTEP MAC, before the
 * node process starts, so every node's first sync already sees every node created with it.
 */
export async function leaseNodeSubnet(layout: LabLayout, s: NodeNetworkSettings, node: string, underlayIP: string, podCIDR?: string): Promise<string> {
  const allocator = createSubnetAllocator(openLeaseStore({ dir: layout.leaseDir }), { clusterCIDR: s.clusterCIDR, nodeMask: s.nodeMask });
  const attrs = { underlayIP, ...(s.backend === 'vxlan' ? { vtepMAC: vtepMAC(underlayIP) } : {}) };
  const lease = await allocator.acquire(node, { owner: node, attrs, ...(podCIDR ? { podCIDR } : {}) });
  return lease.subnet;
}

export async function releaseNodeSubnet(layout: LabLayout, s: NodeNetworkSettings, node: string): Promise<void> {
  const allocator = createSubnetAllocator(openLeaseStore({ dir: layout.leaseDir }), { clusterCIDR: s.clusterCIDR, nodeMask: s.nodeMask });
  await allocator.release(node);
}

/**
 * The node's one long-lived process: `weft agent`, streaming the cluster from the lab's mesh-control
 * (the token is used once: the node credential then lives in `<node>/credentials`).
 */
export function agentArgv(layout: LabLayout, s: NodeNetworkSettings, node: LabNodeState, token: string): string[] {
  return [process.execPath, distEntry('weft.mjs'), 'agent',
    '--node', node.name, '--mode', s.proxyMode, '--server', `unix:${layout.controlSocket}`, '--join-token', token,
    '--credentials-dir', join(node.dir, 'credentials'),
    '--cluster-cidr', s.clusterCIDR, '--service-cidr', s.serviceCIDR, '--node-mask', String(s.nodeMask), '--backend', s.backend,
    '--cni-socket', join(node.dir, 'cni.sock'), '--lease-dir', layout.leaseDir,
    '--underlay-device', UNDERLAY_DEVICE, '--underlay-ip', node.address];
}

/** Builds the node up to its installed CNI config; the caller has leased its subnet already. */
export async function prepareLabNode(layout: LabLayout, s: NodeNetworkSettings, name: string, index: number, podCIDR: string): Promise<LabNodeState> {
  const netns = layout.nodeNetns(name);
  const dir = layout.nodeDir(name);
  const at = planAttachment(s.underlay, 'node', index);
  await addNetns(netns);
  await attachToUnderlay(layout.underlayNetns, s.underlay, netns, `nd${index}`, at);
  // A node reaches ClusterIPs and LB IPs from its own namespace only with a route for them (the
  // proxy's OUTPUT rules run after the route lookup): real nodes have a default route; on an l2
  // underlay, without a gateway, it is the underlay link itself.
  if (!at.gateway) await ipBatch(netns, [`route add default dev ${UNDERLAY_DEVICE}`], `add the default route of node ${name}`);
  await mkdir(join(dir, 'ipam'), { recursive: true });
  const { conflist } = await installCni({
    binDir: join(dir, 'bin'), confDir: join(dir, 'net.d'), node: name, leaseDir: layout.leaseDir,
    dataDir: join(dir, 'ipam'), daemonSocket: join(dir, 'cni.sock'), clusterCIDR: s.clusterCIDR,
    // Pods must fit their packets into the VXLAN device's MTU (the underlay's minus 50).
    ...(s.backend === 'vxlan' ? { mtu: 1450 } : {}),
  });
  return { name, index, podCIDR, address: at.ip, netns, dir, conflist };
}

/** Starts the node's agent; resolves to its pid once it is ready. */
export async function startNodeAgent(layout: LabLayout, s: NodeNetworkSettings, node: LabNodeState): Promise<number> {
  const token = await joinToken(layout, node.name);
  return startInNetns(node.netns, agentArgv(layout, s, node, token), join(layout.logDir, `node-${node.name}.log`), `agent of node ${node.name}`);
}

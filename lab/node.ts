// A lab node: a network namespace on the underlay with its own directory as if it were a separate
// machine (bin/ and net.d/ from `weft cni install`, ipam/), a subnet lease, and one long-lived node
// process inside it (the CNI daemon and the node network, see nodeAgentArgv).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { installCni } from '../cni/install.ts';
import type { Backend } from '../cni/node-network/render.ts';
import { vtepMAC } from '../cni/node-network/render.ts';
import { createSubnetAllocator, openLeaseStore } from '../mesh-control/leases/index.ts';
import type { LabLayout } from './layout.ts';
import { addNetns } from './netns.ts';
import { distEntry, startInNetns } from './processes.ts';
import type { LabNodeState } from './state.ts';
import { attachToUnderlay, planAttachment, UNDERLAY_DEVICE, type UnderlayMode } from './underlay.ts';

export interface NodeNetworkSettings {
  underlay: UnderlayMode;
  backend: Backend;
  clusterCIDR: string;
  nodeMask: number;
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

/** The node's long-lived process (the lead may move this onto `weft cni serve --node ...`). */
export function nodeAgentArgv(layout: LabLayout, s: NodeNetworkSettings, node: LabNodeState): string[] {
  return [process.execPath, distEntry('weft.mjs'), 'lab', 'node-agent',
    '--node', node.name, '--lease-dir', layout.leaseDir, '--socket', join(node.dir, 'cni.sock'),
    '--cluster-cidr', s.clusterCIDR, '--node-mask', String(s.nodeMask), '--backend', s.backend,
    '--underlay-device', UNDERLAY_DEVICE, '--underlay-ip', node.address];
}

/** Builds the node up to a running node process; the caller has leased its subnet already. */
export async function createLabNode(layout: LabLayout, s: NodeNetworkSettings, name: string, index: number, podCIDR: string): Promise<LabNodeState> {
  const netns = layout.nodeNetns(name);
  const dir = layout.nodeDir(name);
  const at = planAttachment(s.underlay, 'node', index);
  await addNetns(netns);
  await attachToUnderlay(layout.underlayNetns, s.underlay, netns, `nd${index}`, at);
  await mkdir(join(dir, 'ipam'), { recursive: true });
  const { conflist } = await installCni({
    binDir: join(dir, 'bin'), confDir: join(dir, 'net.d'), node: name, leaseDir: layout.leaseDir,
    dataDir: join(dir, 'ipam'), daemonSocket: join(dir, 'cni.sock'), clusterCIDR: s.clusterCIDR,
    // Pods must fit their packets into the VXLAN device's MTU (the underlay's minus 50).
    ...(s.backend === 'vxlan' ? { mtu: 1450 } : {}),
  });
  const node: LabNodeState = { name, index, podCIDR, address: at.ip, netns, dir, conflist };
  node.pid = await startInNetns(netns, nodeAgentArgv(layout, s, node), join(layout.logDir, `node-${name}.log`), `node process of ${name}`);
  return node;
}

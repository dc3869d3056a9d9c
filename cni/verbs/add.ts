// ADD: veth pair into the pod, address from the node subnet, default route via the bridge.
// Kernel work is two `ip -b` execs (node side, pod side) plus one `nft` when ports are mapped;
// the batches' own failures are the checks (no extra "does it exist" execs).
import { existsSync } from 'node:fs';
import { formatIPv4 } from '../../mesh-control/model/cidr.ts';
import type { CmdEnv, NetConf } from '../config.ts';
import { CniError, cniError, toCniError } from '../errors.ts';
import { assertAssignable, openAddressStore } from '../ipam/store.ts';
import { deleteLink, execIpRunner, linkExists, runIpBatch, writeSysctl, type BatchFailure, type IpRunner } from '../link/apply.ts';
import { hostVethMac, hostVethName, macFromIPv4 } from '../link/names.ts';
import { renderBridgeCreate, renderNodeSide, renderPodSide, VETH_CREATE_LINE } from '../link/render.ts';
import { addPortMappings, removePortMappings } from '../portmap/apply.ts';
import { renderResult, type CniResult } from '../result.ts';
import { createRollback } from '../rollback.ts';
import { requireNodeSubnet } from '../subnet.ts';

function kernelError(what: string, f: BatchFailure): never {
  throw cniError('WEFT_CNI_KERNEL', `failed to ${what}: ${f.command}: ${f.cause}`);
}

/** Creates the bridge when missing (another ADD may race us: "File exists" is fine). */
async function ensureBridge(bridge: string, mac: string, ipRunner: IpRunner): Promise<void> {
  if (!linkExists(bridge)) {
    const failed = await runIpBatch(renderBridgeCreate(bridge, mac), undefined, ipRunner);
    if (failed && !linkExists(bridge)) kernelError(`create bridge ${bridge}`, failed);
  }
  try {
    writeSysctl('net/ipv4/ip_forward', '1');
  } catch (err) {
    throw cniError('WEFT_CNI_KERNEL', `failed to enable IPv4 forwarding in the node namespace: ${(err as Error).message}`);
  }
}

export async function cmdAdd(env: CmdEnv, conf: NetConf, ipRunner: IpRunner = execIpRunner): Promise<CniResult> {
  const subnet = await requireNodeSubnet(conf);
  const gateway = subnet.network + 1;
  const key = { containerID: env.containerID, ifname: env.ifname };
  if (!existsSync(env.netns)) throw cniError('WEFT_CNI_INVALID_ENV', `CNI_NETNS ${env.netns}: no such network namespace`);
  const hostVeth = hostVethName(key.containerID, key.ifname);
  const hostMac = hostVethMac(key.containerID, key.ifname);
  const bridgeMac = macFromIPv4(gateway);
  const store = openAddressStore({ dataDir: conf.dataDir, network: conf.name });
  const range = { subnet, gateway };
  if (conf.requestedIPs.length > 0) assertAssignable(range, conf.requestedIPs[0]);
  const undo = createRollback();
  try {
    await ensureBridge(conf.bridge, bridgeMac, ipRunner);
    const node = { bridge: conf.bridge, gatewayCidr: `${formatIPv4(gateway)}/${subnet.prefix}`, hostVeth, hostMac, ifname: env.ifname, mtu: conf.mtu, netnsPath: env.netns };
    let failed = await runIpBatch(renderNodeSide(node), undefined, ipRunner);
    if (failed && failed.line < VETH_CREATE_LINE && !linkExists(conf.bridge)) {
      // The bridge vanished between the check and the batch: recreate it once.
      await ensureBridge(conf.bridge, bridgeMac, ipRunner);
      failed = await runIpBatch(renderNodeSide(node), undefined, ipRunner);
    }
    if (failed && failed.line > VETH_CREATE_LINE) undo.push(`delete host veth ${hostVeth}`, () => deleteLink(hostVeth, ipRunner));
    if (failed && failed.line === VETH_CREATE_LINE && /File exists/.test(failed.cause)) {
      if (linkExists(hostVeth)) {
        throw cniError('WEFT_CNI_INTERFACE_EXISTS', `host veth ${hostVeth} for ${key.containerID}/${key.ifname} already exists (ADD repeated without DEL?)`);
      }
      throw cniError('WEFT_CNI_INTERFACE_EXISTS', `interface ${env.ifname} already exists in ${env.netns}`);
    }
    if (failed) kernelError(`create veth ${hostVeth} for ${env.ifname} in ${env.netns} on bridge ${conf.bridge}`, failed);
    if (!failed) undo.push(`delete host veth ${hostVeth}`, () => deleteLink(hostVeth, ipRunner));

    const ip = store.reserve(key, range, conf.requestedIPs[0]);
    undo.push(`release ${formatIPv4(ip)}`, () => store.release(key, formatIPv4(ip)));
    const address = `${formatIPv4(ip)}/${subnet.prefix}`;
    const podMac = macFromIPv4(ip);
    const podFailed = await runIpBatch(renderPodSide({ ifname: env.ifname, address, mac: podMac, gateway: formatIPv4(gateway) }), env.netns);
    if (podFailed) kernelError(`configure ${env.ifname} in ${env.netns}`, podFailed);

    if (conf.portMappings.length > 0) {
      // Lets hostPort traffic from the node's own 127/8 be routed to the bridge (then masqueraded).
      writeSysctl(`net/ipv4/conf/${conf.bridge}/route_localnet`, '1');
      undo.push(`remove port mappings of ${key.containerID}/${key.ifname}`, () => removePortMappings([key]));
      await addPortMappings(key, formatIPv4(ip), conf.portMappings).catch((err: Error) => {
        throw cniError('WEFT_CNI_KERNEL', err.message);
      });
    }
    return renderResult(conf.cniVersion, {
      bridge: { name: conf.bridge, mac: bridgeMac },
      hostVeth: { name: hostVeth, mac: hostMac },
      pod: { name: env.ifname, mac: podMac, sandbox: env.netns },
      address,
      gateway: formatIPv4(gateway),
      mtu: conf.mtu,
      dns: conf.dns,
    });
  } catch (err) {
    const leftovers = await undo.run();
    if (leftovers.length === 0) throw err;
    const e = toCniError(err);
    throw new CniError(e.errorName, e.message, `rollback incomplete: ${leftovers.join('; ')}`);
  }
}

// DEL: best effort and idempotent. Releases the address by (containerID, ifname) and removes the
// host veth by its derived name, so it needs neither the pod netns nor a prevResult.
import type { CmdEnv, NetConf } from '../config.ts';
import { cniError } from '../errors.ts';
import { openAddressStore } from '../ipam/store.ts';
import { deleteLink, execIpRunner, type IpRunner } from '../link/apply.ts';
import { hostVethName } from '../link/names.ts';
import { removePortMappings } from '../portmap/apply.ts';
import { prevResultAddress } from './prev-result.ts';

export async function cmdDel(env: CmdEnv, conf: NetConf, ipRunner: IpRunner = execIpRunner): Promise<void> {
  const key = { containerID: env.containerID, ifname: env.ifname };
  const store = openAddressStore({ dataDir: conf.dataDir, network: conf.name });
  store.release(key, prevResultAddress(conf.prevResult, env.ifname));
  const hostVeth = hostVethName(key.containerID, key.ifname);
  try {
    // Deleting the host end also removes the pod end when the pod netns still exists.
    await deleteLink(hostVeth, ipRunner);
    // Mappings come back in runtimeConfig on DEL; without them, GC removes the chains.
    if (conf.portMappings.length > 0) await removePortMappings([key]);
  } catch (err) {
    throw cniError('WEFT_CNI_KERNEL', (err as Error).message);
  }
}

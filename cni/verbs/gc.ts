// GC: releases every reservation whose attachment is no longer valid, with its host veth and
// port mapping chains; continues past errors and reports them all at the end.
import type { NetConf } from '../config.ts';
import { cniError } from '../errors.ts';
import { openAddressStore } from '../ipam/store.ts';
import { deleteLink, execIpRunner, type IpRunner } from '../link/apply.ts';
import { hostVethName } from '../link/names.ts';
import { listPortmapBases, removeChains } from '../portmap/apply.ts';
import { portmapChainBase } from '../portmap/render.ts';

export async function cmdGc(conf: NetConf, ipRunner: IpRunner = execIpRunner): Promise<void> {
  const valid = conf.validAttachments ?? [];
  const validKeys = new Set(valid.map((a) => `${a.containerID}\0${a.ifname}`));
  const store = openAddressStore({ dataDir: conf.dataDir, network: conf.name });
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => unknown) => {
    try {
      await fn();
    } catch (err) {
      errors.push(`failed to ${what}: ${(err as Error).message}`);
    }
  };
  store.sweepTemp();
  let allocations: ReturnType<typeof store.list> = [];
  await attempt(`list ${store.dir}`, () => { allocations = store.list(); });
  for (const a of allocations) {
    if (validKeys.has(`${a.containerID}\0${a.ifname}`)) continue;
    await attempt(`release ${a.ip} of ${a.containerID}/${a.ifname}`, () => store.release(a, a.ip));
    await attempt(`delete host veth of ${a.containerID}/${a.ifname}`, () => deleteLink(hostVethName(a.containerID, a.ifname), ipRunner));
  }
  const keep = new Set(valid.map(portmapChainBase));
  await attempt('remove stale port mappings', async () => {
    await removeChains((await listPortmapBases()).filter((b) => !keep.has(b)));
  });
  if (errors.length > 0) throw cniError('WEFT_CNI_GC', `GC: ${errors.length} stale resource(s) not removed: ${errors.join('; ')}`);
}

// STATUS: code 50 whenever an ADD would fail for a node-level reason.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { contains, formatCidr, parseIPv4 } from '../../mesh-control/model/cidr.ts';
import type { NetConf } from '../config.ts';
import { cniError, CniError } from '../errors.ts';
import { capacity, openAddressStore } from '../ipam/store.ts';
import { describeSource, findNodeSubnet } from '../subnet.ts';

function notAvailable(message: string): never {
  throw cniError('WEFT_CNI_NOT_AVAILABLE', message);
}

export async function cmdStatus(conf: NetConf): Promise<void> {
  let subnet;
  try {
    subnet = await findNodeSubnet(conf);
  } catch (err) {
    notAvailable((err as CniError).message);
  }
  if (!subnet) notAvailable(`no subnet known for this node: ${conf.subnet || conf.node ? describeSource(conf) : 'neither "subnet" nor "node" is configured'}${conf.node ? ' does not exist' : ''}`);
  const store = openAddressStore({ dataDir: conf.dataDir, network: conf.name });
  try {
    mkdirSync(store.dir, { recursive: true, mode: 0o700 });
    accessSync(store.dir, constants.W_OK);
  } catch (err) {
    notAvailable(`address store ${store.dir} is unusable: ${(err as Error).message}`);
  }
  const range = { subnet, gateway: subnet.network + 1 };
  const used = store.list().filter((a) => contains(subnet, parseIPv4(a.ip))).length;
  if (used >= capacity(range)) notAvailable(`no free address in ${formatCidr(subnet)}: all ${capacity(range)} in use`);
}

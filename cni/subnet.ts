// Where the node subnet comes from: the static `subnet` key, or the node's lease.
import { lookupNodeSubnet } from '../mesh-control/leases/index.ts';
import { parseCidr, type Cidr } from '../mesh-control/model/cidr.ts';
import type { NetConf } from './config.ts';
import { cniError } from './errors.ts';

/** The node subnet, or undefined when the node holds no lease (yet). */
export async function findNodeSubnet(conf: NetConf): Promise<Cidr | undefined> {
  if (conf.subnet) return conf.subnet;
  if (!conf.node) return undefined;
  let text: string | undefined;
  try {
    text = await lookupNodeSubnet({ dir: conf.etcdEndpoints?.length ? undefined : conf.leaseDir, etcdEndpoints: conf.etcdEndpoints }, conf.node);
  } catch (err) {
    throw cniError('WEFT_CNI_TRY_AGAIN', `failed to look up the subnet lease of node ${conf.node}: ${(err as Error).message}`);
  }
  if (text === undefined) return undefined;
  try {
    return parseCidr(text);
  } catch (err) {
    throw cniError('WEFT_CNI_TRY_AGAIN', `the subnet lease of node ${conf.node} is unusable: ${(err as Error).message}`);
  }
}

export function describeSource(conf: NetConf): string {
  if (conf.subnet) return 'config key "subnet"';
  return `the lease of node ${conf.node ?? '(no "node" configured)'}` + (conf.etcdEndpoints?.length ? ` in etcd ${conf.etcdEndpoints.join(',')}` : ` in ${conf.leaseDir ?? 'the default lease dir'}`);
}

/** The node subnet for ADD: a missing lease is transient (the node agent acquires it). */
export async function requireNodeSubnet(conf: NetConf): Promise<Cidr> {
  const subnet = await findNodeSubnet(conf);
  if (!subnet) throw cniError('WEFT_CNI_TRY_AGAIN', `no subnet known for this node: ${describeSource(conf)} does not exist yet`);
  return subnet;
}

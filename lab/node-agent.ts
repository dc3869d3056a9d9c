// `weft lab node-agent`: the long-lived process of a lab node, run inside the node's namespace —
// the CNI daemon the weft-cni shim talks to, plus the node network (lease, routes, masquerade).
// Lab-internal; the same composition belongs in `weft cni serve --node ...` (see lab/README.md).
import { intFlag, parseArgs, UsageError, choiceFlag } from '../cli/args.ts';
import { createCniDaemon } from '../cni/daemon/server.ts';
import { createNodeNetwork } from '../cni/node-network/index.ts';

export async function nodeAgentMain(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['node', 'lease-dir', 'socket', 'cluster-cidr', 'node-mask', 'backend', 'underlay-device', 'underlay-ip'] });
  const need = (flag: string): string => {
    const v = args.flags.get(flag);
    if (v === undefined) throw new UsageError(`lab node-agent: flag --${flag} is required`);
    return v;
  };
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const daemon = createCniDaemon({ socketPath: need('socket'), log });
  const network = createNodeNetwork({
    node: need('node'),
    leaseSource: { dir: need('lease-dir') },
    clusterCIDR: need('cluster-cidr'),
    nodeMask: intFlag(args, 'node-mask', 24, 8, 30),
    backend: choiceFlag(args, 'backend', ['host-gw', 'vxlan'] as const, 'host-gw'),
    underlayDevice: need('underlay-device'),
    underlayIP: need('underlay-ip'),
  }, { log });
  await network.start();
  await daemon.start();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.stdout.write('ready\n');
  });
  await Promise.all([daemon.stop(), network.stop()]);
  return 0;
}

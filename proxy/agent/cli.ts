// `weft agent`: the one long-lived process of a node, run inside the node's network namespace. It
// always runs the service proxy; with --cni-socket (or the lab's --socket) also the CNI daemon,
// and with a lease source and an underlay also the node network (lease, routes, masquerade).
//   weft agent --node NAME --mode iptables|nftables [--state FILE | --server HOST:PORT] ...
//   weft agent --cleanup --mode iptables|nftables     removes weft's rules and exits
import { choiceFlag, intFlag, parseArgs, UsageError, type ParsedArgs } from '../../cli/args.ts';
import { createCniDaemon } from '../../cni/daemon/server.ts';
import { createNodeNetwork } from '../../cni/node-network/index.ts';
import { createNodeAgent, type HostPort } from './agent.ts';
import type { Dataplane, ProxyMode } from './dataplane.ts';
import { createIptablesDataplane } from './iptables-dataplane.ts';
import { createNftablesDataplane } from './nftables-dataplane.ts';
import { createFileStateSource, type ClusterStateSource } from './source.ts';

const VALUE_FLAGS = [
  'node', 'mode', 'state', 'server', 'credentials-dir', 'join-token', 'cluster-cidr', 'service-cidr', 'metrics-listen', 'healthz-listen',
  'healthcheck-bind-address', 'cni-socket', 'socket', 'lease-dir', 'etcd-endpoints', 'node-mask', 'backend', 'underlay-device',
  'underlay-ip', 'min-sync-period', 'sync-period', 'masquerade-bit',
];

export function parseHostPort(flag: string, text: string): HostPort {
  const m = /^(.*):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) throw new UsageError(`flag --${flag}: "${text}" is not HOST:PORT`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

function optionalHostPort(args: ParsedArgs, flag: string, fallback: string | undefined): HostPort | undefined {
  const raw = args.flags.get(flag) ?? fallback;
  return raw === undefined || raw === '' || raw === 'off' ? undefined : parseHostPort(flag, raw);
}

function dataplaneFor(mode: ProxyMode, args: ParsedArgs): Dataplane {
  const masqueradeMark = 1 << intFlag(args, 'masquerade-bit', 14, 0, 31);
  const serviceCIDRs = args.flags.get('service-cidr')?.split(',').filter(Boolean);
  return mode === 'nftables' ? createNftablesDataplane({ masqueradeMark, serviceCIDRs }) : createIptablesDataplane({ masqueradeMark, randomFully: true });
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: VALUE_FLAGS, booleans: ['cleanup'] });
  if (args.positionals.length > 0) throw new UsageError(`agent: unexpected argument "${args.positionals[0]}"`);
  const mode = choiceFlag(args, 'mode', ['iptables', 'nftables'] as const, 'nftables');
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} weft agent: ${line}\n`);
  if (args.booleans.has('cleanup')) {
    await dataplaneFor(mode, args).cleanup();
    log(`removed weft's ${mode} rules`);
    return 0;
  }
  const node = args.flags.get('node');
  if (!node) throw new UsageError('agent: flag --node is required');
  const statePath = args.flags.get('state');
  const server = args.flags.get('server');
  if (statePath && server) throw new UsageError('agent: give --state or --server, not both');
  if (!statePath && !server) throw new UsageError('agent: flag --state FILE (or --server HOST:PORT) is required');
  const clusterCIDR = args.flags.get('cluster-cidr');

  let source: ClusterStateSource;
  if (server) {
    const { createControlStateSource } = await import('../../mesh-control/agent-client.ts');
    source = createControlStateSource({ server, node, credentialsDir: args.flags.get('credentials-dir'), joinToken: args.flags.get('join-token'), log });
  } else {
    source = createFileStateSource({ path: statePath as string, log });
  }

  const agent = createNodeAgent({
    node,
    clusterCIDR,
    minSyncPeriodMs: intFlag(args, 'min-sync-period', 100, 0, 600_000),
    syncPeriodMs: intFlag(args, 'sync-period', 30_000, 100, 3_600_000),
    metricsListen: optionalHostPort(args, 'metrics-listen', '127.0.0.1:10249'),
    healthzListen: optionalHostPort(args, 'healthz-listen', '0.0.0.0:10256'),
    healthCheckBindAddress: args.flags.get('healthcheck-bind-address'),
  }, { source, dataplane: dataplaneFor(mode, args), log });

  const cniSocket = args.flags.get('cni-socket') ?? args.flags.get('socket');
  const daemon = cniSocket ? createCniDaemon({ socketPath: cniSocket, log }) : undefined;

  const leaseDir = args.flags.get('lease-dir');
  const etcd = args.flags.get('etcd-endpoints')?.split(',').filter(Boolean);
  const underlayDevice = args.flags.get('underlay-device');
  const underlayIP = args.flags.get('underlay-ip');
  const wantsNetwork = leaseDir !== undefined || etcd !== undefined;
  if (wantsNetwork && (!underlayDevice || !underlayIP || !clusterCIDR)) {
    throw new UsageError('agent: the node network needs --underlay-device, --underlay-ip and --cluster-cidr with --lease-dir or --etcd-endpoints');
  }
  const network = wantsNetwork
    ? createNodeNetwork({
      node,
      leaseSource: etcd ? { etcdEndpoints: etcd } : { dir: leaseDir },
      clusterCIDR: clusterCIDR as string,
      nodeMask: intFlag(args, 'node-mask', 24, 8, 30),
      backend: choiceFlag(args, 'backend', ['host-gw', 'vxlan'] as const, 'host-gw'),
      underlayDevice: underlayDevice as string,
      underlayIP: underlayIP as string,
    }, { log })
    : undefined;

  const started: { stop(): Promise<void> }[] = [];
  try {
    // The node network first: pods created through the CNI daemon need the node's subnet lease.
    for (const part of [network, daemon, agent]) {
      if (!part) continue;
      await part.start();
      started.push(part);
    }
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
      process.stdout.write('ready\n');
    });
  } finally {
    // Rules stay in place (fail static): a restarted agent takes over without a gap.
    await Promise.all(started.reverse().map((p) => p.stop().catch((err: Error) => log(`failed to stop: ${err.message}`))));
  }
  return 0;
}

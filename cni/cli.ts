// `weft cni install` puts the shim, the fallback plugin and the conflist in place;
// `weft cni serve` runs the daemon the shim forwards to, in the node's network namespace.
import { readlinkSync } from 'node:fs';
import { intFlag, parseArgs, UsageError, type ParsedArgs } from '../cli/args.ts';
import { lookupNodeSubnet } from '../mesh-control/leases/index.ts';
import { DEFAULTS } from './config.ts';
import { createCniDaemon } from './daemon/server.ts';
import { installCni, pluginConfig, type CniNetworkOptions } from './install.ts';

const USAGE = `usage:
  weft cni install --bin-dir DIR --conf-dir DIR
                   [--subnet CIDR | [--node NAME] [--lease-dir DIR | --etcd-endpoints URL,...]]
                   [--data-dir DIR] [--socket PATH] [--bridge NAME] [--mtu N] [--cluster-cidr CIDR]
  weft cni serve   [--socket PATH] [--subnet CIDR | --node NAME [--lease-dir DIR | --etcd-endpoints URL,...]]
                   [--cluster-cidr CIDR]

install writes BIN/weft-cni (C shim), BIN/weft-cni.mjs (fallback plugin) and CONF/10-weft.conflist.
serve answers the shim on the socket (default ${DEFAULTS.daemonSocket}) until SIGTERM/SIGINT; run it
in the node's network namespace. The subnet comes from the config each call carries: serve's
subnet/lease flags only feed its readiness line.
`;

const LEASE_FLAGS = ['subnet', 'node', 'lease-dir', 'etcd-endpoints', 'cluster-cidr'];

function networkOptions(args: ParsedArgs): CniNetworkOptions {
  const endpoints = args.flags.get('etcd-endpoints');
  return {
    subnet: args.flags.get('subnet'),
    node: args.flags.get('node'),
    leaseDir: args.flags.get('lease-dir'),
    etcdEndpoints: endpoints === undefined ? undefined : endpoints.split(',').filter((e) => e !== ''),
    clusterCIDR: args.flags.get('cluster-cidr'),
    daemonSocket: args.flags.get('socket'),
  };
}

function requiredFlag(args: ParsedArgs, name: string): string {
  const value = args.flags.get(name);
  if (value === undefined) throw new UsageError(`flag --${name} is required\n\n${USAGE}`);
  return value;
}

async function install(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['bin-dir', 'conf-dir', 'data-dir', 'socket', 'bridge', 'mtu', ...LEASE_FLAGS] });
  if (args.positionals.length > 0) throw new UsageError(`weft cni install takes no arguments (got "${args.positionals[0]}")`);
  const result = await installCni({
    ...networkOptions(args),
    binDir: requiredFlag(args, 'bin-dir'),
    confDir: requiredFlag(args, 'conf-dir'),
    dataDir: args.flags.get('data-dir'),
    bridge: args.flags.get('bridge'),
    mtu: args.flags.has('mtu') ? intFlag(args, 'mtu', DEFAULTS.mtu, 68, 65535) : undefined,
  });
  process.stdout.write(`installed ${result.binary} (and weft-cni.mjs beside it) and ${result.conflist}\n`);
  return 0;
}

export interface CniNodeServiceOptions extends CniNetworkOptions {
  socketPath: string;
  log: (line: string) => void;
}

/** Everything `weft cni serve` runs on a node, started and stopped together. */
export function createCniNodeService(opts: CniNodeServiceOptions): { start(): Promise<void>; stop(): Promise<void> } {
  const daemon = createCniDaemon({ socketPath: opts.socketPath, log: opts.log });
  return {
    start: () => daemon.start(),
    stop: () => daemon.stop(),
  };
}

async function describeSubnet(opts: CniNetworkOptions, config: Record<string, unknown>): Promise<string> {
  if (opts.subnet !== undefined) return `static subnet ${opts.subnet}`;
  const node = String(config.node);
  const subnet = await lookupNodeSubnet({ dir: opts.leaseDir, etcdEndpoints: opts.etcdEndpoints }, node).catch((err: Error) => `unknown (${err.message})`);
  return `node ${node}, leased subnet ${subnet ?? 'none yet'}`;
}

async function serve(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['socket', ...LEASE_FLAGS] });
  if (args.positionals.length > 0) throw new UsageError(`weft cni serve takes no arguments (got "${args.positionals[0]}")`);
  const options = networkOptions(args);
  const config = pluginConfig(options);
  const socketPath = String(config.daemonSocket);
  const log = (line: string) => process.stderr.write(`weft cni serve: ${line}\n`);
  const service = createCniNodeService({ ...options, socketPath, log });

  const stopping = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  await service.start();
  log(`listening on ${socketPath} in ${readlinkSync('/proc/self/ns/net')} (${await describeSubnet(options, config)})`);
  const signal = await stopping;
  log(`${signal}: finishing in-flight requests`);
  await service.stop();
  log('stopped');
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'install':
      return install(rest);
    case 'serve':
      return serve(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown cni command "${command}"\n\n${USAGE}`);
  }
}

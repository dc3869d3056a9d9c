// `weft cni install`: puts the plugin where a container runtime finds it. Three files, each
// written to a temporary name and renamed into place, so a runtime that execs the plugin or reads
// the conf dir during an upgrade sees the old file or the new one, never half of one (and never
// hits "text file busy" on a binary it is running):
//   BIN/weft-cni        the C shim the runtime execs (forwards to `weft cni serve`)
//   BIN/weft-cni.mjs    the bundled Node plugin the shim falls back to, shebang pinned to this node
//   CONF/10-weft.conflist
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../cli/args.ts';
import { DEFAULT_LEASE_DIR } from '../mesh-control/leases/index.ts';
import { containsCidr, parseCidr, type Cidr } from '../mesh-control/model/cidr.ts';
import { DEFAULTS, validateIfname } from './config.ts';
import { buildShim } from './shim/build.ts';
import { cniPaths } from './shim/paths.ts';

export const SHIM_NAME = 'weft-cni';
export const FALLBACK_NAME = 'weft-cni.mjs';
export const CONFLIST_NAME = '10-weft.conflist';

export interface CniNetworkOptions {
  subnet?: string;
  node?: string;
  leaseDir?: string;
  etcdEndpoints?: string[];
  dataDir?: string;
  daemonSocket?: string;
  bridge?: string;
  mtu?: number;
  clusterCIDR?: string;
}

export interface InstallCniOptions extends CniNetworkOptions {
  binDir: string;
  confDir: string;
}

/** Longest unix socket path the kernel accepts (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function cidrFlag(flag: string, text: string): Cidr {
  try {
    return parseCidr(text);
  } catch (err) {
    throw new UsageError(`flag --${flag}: ${(err as Error).message}`);
  }
}

function absolutePathFlag(flag: string, path: string): void {
  if (!isAbsolute(path)) throw new UsageError(`flag --${flag}: "${path}" is not an absolute path`);
}

/**
 * The one plugin object of the weft network (contract 1 keys), validated. Throws UsageError
 * naming the flag (same name as the option, kebab-cased) and the bad value.
 */
export function pluginConfig(opts: CniNetworkOptions): Record<string, unknown> {
  const clusterText = opts.clusterCIDR ?? DEFAULTS.clusterCIDR;
  const cluster = cidrFlag('cluster-cidr', clusterText);
  const bridge = opts.bridge ?? DEFAULTS.bridge;
  const badBridge = validateIfname(bridge, 'bridge name');
  if (badBridge) throw new UsageError(`flag --bridge: ${badBridge}`);
  const mtu = opts.mtu ?? DEFAULTS.mtu;
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new UsageError(`flag --mtu: ${mtu} is out of range 68..65535`);
  const dataDir = opts.dataDir ?? DEFAULTS.dataDir;
  absolutePathFlag('data-dir', dataDir);
  const daemonSocket = opts.daemonSocket ?? DEFAULTS.daemonSocket;
  absolutePathFlag('socket', daemonSocket);
  if (Buffer.byteLength(daemonSocket) > MAX_SOCKET_PATH) throw new UsageError(`flag --socket: "${daemonSocket}" is longer than ${MAX_SOCKET_PATH} bytes, the limit for a unix socket path`);

  const config: Record<string, unknown> = { type: SHIM_NAME, bridge, mtu };
  if (opts.subnet !== undefined) {
    const subnet = cidrFlag('subnet', opts.subnet);
    if (!containsCidr(cluster, subnet)) throw new UsageError(`flag --subnet: ${opts.subnet} is not inside the cluster CIDR ${clusterText} (set --cluster-cidr)`);
    const leaseFlag = opts.node !== undefined ? 'node' : opts.leaseDir !== undefined ? 'lease-dir' : opts.etcdEndpoints !== undefined ? 'etcd-endpoints' : undefined;
    if (leaseFlag) throw new UsageError(`flag --${leaseFlag} cannot be combined with --subnet: a static subnet needs no lease`);
    config.subnet = opts.subnet;
  } else {
    const node = opts.node ?? hostname().toLowerCase();
    if (!NODE_NAME.test(node)) throw new UsageError(`flag --node: "${node}" is not a valid node name (lowercase letters, digits, '-' and '.')`);
    config.node = node;
    if (opts.leaseDir !== undefined && opts.etcdEndpoints !== undefined) throw new UsageError('flag --lease-dir cannot be combined with --etcd-endpoints: choose one lease store');
    if (opts.etcdEndpoints !== undefined) {
      if (opts.etcdEndpoints.length === 0) throw new UsageError('flag --etcd-endpoints: no endpoint given');
      for (const url of opts.etcdEndpoints) {
        if (!/^https?:\/\/[^\s/]+/.test(url) || !URL.canParse(url)) throw new UsageError(`flag --etcd-endpoints: "${url}" is not an http(s) URL`);
      }
      config.etcdEndpoints = opts.etcdEndpoints;
    } else {
      const leaseDir = opts.leaseDir ?? DEFAULT_LEASE_DIR;
      absolutePathFlag('lease-dir', leaseDir);
      config.leaseDir = leaseDir;
    }
  }
  config.clusterCIDR = clusterText;
  config.dataDir = dataDir;
  config.daemonSocket = daemonSocket;
  config.capabilities = { portMappings: true, ips: true };
  return config;
}

/** The conflist text: cniVersion 1.0.0 for older runtimes, 1.1.0 offered to those that speak it. */
export function renderConflist(opts: CniNetworkOptions): string {
  const list = { cniVersion: '1.0.0', cniVersions: ['1.0.0', '1.1.0'], name: 'weft', plugins: [pluginConfig(opts)] };
  return JSON.stringify(list, null, 2) + '\n';
}

/** The bundled plugin with its first line pointing at this node binary, not whatever `env` finds. */
export function pinShebang(bundle: string, nodePath: string): string {
  const body = bundle.startsWith('#!') ? bundle.slice(bundle.indexOf('\n') + 1) : bundle;
  return `#!${nodePath}\n${body}`;
}

async function writeAtomic(path: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode); // the open mode is filtered by the umask
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new Error(`failed to write ${path}: ${(err as Error).message}`);
  }
}

export async function installCni(opts: InstallCniOptions): Promise<{ binary: string; conflist: string }> {
  const conflistText = renderConflist(opts);
  const binDir = resolve(opts.binDir);
  const confDir = resolve(opts.confDir);
  const paths = cniPaths();
  const bundle = await readFile(paths.pluginBundle, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`failed to install ${FALLBACK_NAME}: cannot read ${paths.pluginBundle} (${err.code ?? err.message}; run \`npm run build\` first)`);
  });
  const shim = await readFile(await buildShim(paths));
  await Promise.all([mkdir(binDir, { recursive: true }), mkdir(confDir, { recursive: true })]);

  const binary = join(binDir, SHIM_NAME);
  const conflist = join(confDir, CONFLIST_NAME);
  // Fallback first, config last: a runtime never finds a config whose binaries are missing.
  await writeAtomic(join(binDir, FALLBACK_NAME), pinShebang(bundle, process.execPath), 0o755);
  await writeAtomic(binary, shim, 0o755);
  await writeAtomic(conflist, conflistText, 0o644);
  return { binary, conflist };
}

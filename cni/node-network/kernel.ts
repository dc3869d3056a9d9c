// The thin applier of the node network: reads what weft owns in the node's namespace (routes
// marked with ROUTE_PROTOCOL, the VXLAN device's neighbours and fdb) and applies rendered batches.
// Runs in the current network namespace: the node's.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { NodeNetworkError } from './errors.ts';
import { type Backend, type NodeRoutes, type NodeRoutesBatch, ROUTE_PROTOCOL, VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI } from './render.ts';

/** Runs a command with optional stdin, resolving to stdout; rejects with the command's stderr. */
export type CommandRunner = (cmd: string, args: string[], input?: string) => Promise<string>;

export const runCommand: CommandRunner = (cmd, args, input) => new Promise((resolve, reject) => {
  const child = execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
    if (err) reject(new Error((stderr || err.message).trim()));
    else resolve(stdout);
  });
  // A command that exits without reading stdin must not turn into an EPIPE crash.
  child.stdin?.on('error', () => {});
  child.stdin?.end(input ?? '');
});

async function run(runner: CommandRunner, verb: string, cmd: string, args: string[], input?: string): Promise<string> {
  try {
    return await runner(cmd, args, input);
  } catch (err) {
    throw new NodeNetworkError('WEFT_NODENET_COMMAND', `failed to ${verb}: ${(err as Error).message}`);
  }
}

interface IpRoute { dst: string; gateway?: string; dev?: string; flags?: string[] }
interface IpNeigh { dst: string; lladdr?: string; dev?: string }
interface BridgeFdb { mac: string; dst?: string; ifname?: string }

const parseJSON = <T>(text: string): T[] => (text.trim() ? JSON.parse(text) as T[] : []);

export async function observeNodeRoutes(runner: CommandRunner, backend: Backend): Promise<NodeRoutes> {
  const routes = parseJSON<IpRoute>(await run(runner, `list routes with protocol ${ROUTE_PROTOCOL}`, 'ip', ['-j', 'route', 'show', 'proto', String(ROUTE_PROTOCOL)]));
  const out: NodeRoutes = {
    routes: routes.filter((r) => r.gateway && r.dev).map((r) => ({ dst: r.dst, via: r.gateway as string, dev: r.dev as string, onlink: (r.flags ?? []).includes('onlink') })),
    neighs: [],
    fdb: [],
  };
  if (backend !== 'vxlan') return out;
  const neighs = parseJSON<IpNeigh>(await run(runner, `list neighbours of ${VXLAN_DEVICE}`, 'ip', ['-j', 'neigh', 'show', 'dev', VXLAN_DEVICE, 'nud', 'permanent']));
  out.neighs = neighs.filter((n) => n.lladdr).map((n) => ({ ip: n.dst, mac: n.lladdr as string, dev: VXLAN_DEVICE }));
  const fdb = parseJSON<BridgeFdb>(await run(runner, `list fdb of ${VXLAN_DEVICE}`, 'bridge', ['-j', 'fdb', 'show', 'dev', VXLAN_DEVICE]));
  out.fdb = fdb.filter((f) => f.dst && f.mac !== '00:00:00:00:00:00').map((f) => ({ mac: f.mac, dst: f.dst as string, dev: VXLAN_DEVICE }));
  return out;
}

export async function applyBatch(runner: CommandRunner, batch: NodeRoutesBatch): Promise<void> {
  const text = (lines: string[]) => lines.join('\n') + '\n';
  if (batch.bridgeBefore.length) await run(runner, 'add vxlan fdb entries', 'bridge', ['-b', '-'], text(batch.bridgeBefore));
  if (batch.ip.length) await run(runner, 'apply node routes', 'ip', ['-b', '-'], text(batch.ip));
  if (batch.bridgeAfter.length) await run(runner, 'delete vxlan fdb entries', 'bridge', ['-b', '-'], text(batch.bridgeAfter));
}

/** Creates the VXLAN device if missing (idempotent) and gives it the node's VTEP address. */
export async function ensureVxlanDevice(runner: CommandRunner, opts: { underlayDevice: string; underlayIP: string; mac: string; address: string }): Promise<void> {
  const links = parseJSON<{ ifname: string }>(await run(runner, 'list links', 'ip', ['-j', 'link', 'show']));
  const underlay = parseJSON<{ mtu: number }>(await run(runner, `read ${opts.underlayDevice}`, 'ip', ['-j', 'link', 'show', 'dev', opts.underlayDevice]))[0];
  const lines: string[] = [];
  if (!links.some((l) => l.ifname === VXLAN_DEVICE)) {
    lines.push(`link add ${VXLAN_DEVICE} address ${opts.mac} type vxlan id ${VXLAN_VNI} local ${opts.underlayIP} dev ${opts.underlayDevice} dstport ${VXLAN_PORT} nolearning`);
  }
  lines.push(
    // VXLAN adds 50 bytes of headers on the underlay.
    `link set ${VXLAN_DEVICE} address ${opts.mac} mtu ${(underlay?.mtu ?? 1500) - 50}`,
    `addr replace ${opts.address}/32 dev ${VXLAN_DEVICE}`,
    `link set ${VXLAN_DEVICE} up`,
  );
  await run(runner, `set up vxlan device ${VXLAN_DEVICE}`, 'ip', ['-b', '-'], lines.join('\n') + '\n');
}

export async function applyMasquerade(runner: CommandRunner, ruleset: string): Promise<void> {
  await run(runner, 'apply masquerade table weft-nat', 'nft', ['-f', '-'], ruleset);
}

/** A node routes between its pods and other nodes; /proc/sys/net is the current namespace's. */
export async function enableForwarding(): Promise<void> {
  try {
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
  } catch (err) {
    throw new NodeNetworkError('WEFT_NODENET_COMMAND', `failed to enable IPv4 forwarding: ${(err as Error).message}`);
  }
}

// CHECK: compares the pod interface, its addresses and routes, the host veth and the address
// reservation against prevResult, and names every difference.
import { existsSync } from 'node:fs';
import type { CmdEnv, NetConf } from '../config.ts';
import { cniError } from '../errors.ts';
import { failureText, runCommand } from '../exec.ts';
import { openAddressStore } from '../ipam/store.ts';
import { podIpCommand } from '../link/apply.ts';
import { hostVethName } from '../link/names.ts';
import { prevAttachment } from './prev-result.ts';

interface IpAddr { ifname?: string; mtu?: number; addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }> }
interface IpRoute { dst?: string; gateway?: string; dev?: string }
interface IpLink { ifname?: string; master?: string; operstate?: string }

function parseJsonLines<T>(text: string): T[][] {
  return text.split('\n').filter((l) => l.trim().startsWith('[')).map((l) => JSON.parse(l) as T[]);
}

export async function cmdCheck(env: CmdEnv, conf: NetConf): Promise<void> {
  const prev = prevAttachment(conf.prevResult, env.ifname);
  if (!prev) throw cniError('WEFT_CNI_INVALID_CONFIG', 'invalid config: prevResult: required for CHECK but missing');
  const where = `${env.ifname} in ${env.netns}`;
  const fail = (problems: string[]): never => {
    throw cniError('WEFT_CNI_CHECK_FAILED', `CHECK: ${where}: ${problems.join('; ')}`);
  };
  if (!existsSync(env.netns)) fail(['network namespace does not exist']);
  const hostVeth = hostVethName(env.containerID, env.ifname);
  const pod = podIpCommand(env.netns);
  const [podQuery, hostQuery] = await Promise.all([
    runCommand(pod.file, [...pod.args, '-j', '-b', '-'], `addr show dev ${env.ifname}\nroute show\n`),
    runCommand('ip', ['-j', 'link', 'show', 'dev', hostVeth]),
  ]);
  if (podQuery.code !== 0) fail([`interface missing (${failureText(podQuery)})`]);
  const [addrs = [], routes = []] = parseJsonLines<IpAddr & IpRoute>(podQuery.stdout);
  const problems: string[] = [];

  const has = (addrs[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  for (const address of prev.addresses) {
    if (!has.includes(address)) problems.push(`address ${address} missing (has ${has.join(', ') || 'none'})`);
  }
  const routeText = (r: { dst: string; gw?: string }) => `${r.dst}${r.gw ? ` via ${r.gw}` : ''}`;
  const hasRoutes = (routes as IpRoute[]).map((r) => ({ dst: r.dst === 'default' ? '0.0.0.0/0' : r.dst ?? '', gw: r.gateway }));
  for (const want of prev.routes) {
    const found = hasRoutes.some((r) => (r.dst === want.dst || r.dst === want.dst.replace(/\/32$/, '')) && (!want.gw || r.gw === want.gw));
    if (!found) problems.push(`route ${routeText(want)} missing (has ${hasRoutes.filter((r) => r.gw).map(routeText).join(', ') || 'no gateway routes'})`);
  }
  if (addrs[0]?.mtu !== undefined && addrs[0].mtu !== conf.mtu) problems.push(`mtu ${addrs[0].mtu}, expected ${conf.mtu}`);

  if (hostQuery.code !== 0) problems.push(`host veth ${hostVeth} missing`);
  else {
    const link = parseJsonLines<IpLink>(hostQuery.stdout)[0]?.[0];
    if (link?.master !== conf.bridge) problems.push(`host veth ${hostVeth} not attached to bridge ${conf.bridge} (master: ${link?.master ?? 'none'})`);
  }
  const held = openAddressStore({ dataDir: conf.dataDir, network: conf.name }).find({ containerID: env.containerID, ifname: env.ifname });
  const wanted = prev.addresses.map((a) => a.split('/')[0]);
  if (!held) problems.push(`no address reserved for ${env.containerID}/${env.ifname}`);
  else if (wanted.length > 0 && !wanted.includes(held.ip)) problems.push(`reservation holds ${held.ip}, prevResult has ${wanted.join(', ')}`);
  if (problems.length > 0) fail(problems);
}

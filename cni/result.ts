// The ADD result in the version the runtime asked for. Pure.
import type { DnsConfig } from './config.ts';
import { compareVersions, type CniVersion } from './version.ts';

export interface AttachmentInfo {
  bridge: { name: string; mac: string };
  hostVeth: { name: string; mac: string };
  pod: { name: string; mac: string; sandbox: string };
  /** Pod address with prefix, e.g. 10.244.1.5/24. */
  address: string;
  gateway: string;
  mtu: number;
  dns?: DnsConfig;
}

export interface CniResult {
  cniVersion: string;
  interfaces: Array<{ name: string; mac?: string; mtu?: number; sandbox?: string }>;
  ips: Array<{ address: string; gateway?: string; interface?: number; version?: string }>;
  routes: Array<{ dst: string; gw?: string }>;
  dns: DnsConfig;
}

/** Index of the pod interface in `interfaces`, referenced by `ips[].interface`. */
export const POD_INTERFACE_INDEX = 2;

export function renderResult(version: CniVersion, a: AttachmentInfo): CniResult {
  // 1.1.0 added `mtu` on interfaces; 0.3.x/0.4.0 results carry `version` on each IP.
  const withMtu = compareVersions(version, '1.1.0') >= 0 ? { mtu: a.mtu } : {};
  return {
    cniVersion: version,
    interfaces: [
      { name: a.bridge.name, mac: a.bridge.mac, ...withMtu },
      { name: a.hostVeth.name, mac: a.hostVeth.mac, ...withMtu },
      { name: a.pod.name, mac: a.pod.mac, ...withMtu, sandbox: a.pod.sandbox },
    ],
    ips: [{ ...(version === '0.4.0' ? { version: '4' } : {}), address: a.address, gateway: a.gateway, interface: POD_INTERFACE_INDEX }],
    routes: [{ dst: '0.0.0.0/0', gw: a.gateway }],
    dns: a.dns ?? {},
  };
}

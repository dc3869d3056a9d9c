// Names and MAC addresses derived from the attachment, so DEL, CHECK and GC find what ADD made
// without looking into the pod namespace and without any stored state.
import { createHash } from 'node:crypto';

function digest(containerID: string, ifname: string): Buffer {
  return createHash('sha256').update(`${containerID}\0${ifname}`).digest();
}

/** `veth` + 8 hex chars, as the reference bridge plugin names host ends. */
export function hostVethName(containerID: string, ifname: string): string {
  return `veth${digest(containerID, ifname).subarray(0, 4).toString('hex')}`;
}

/** A locally administered unicast MAC for the host veth. */
export function hostVethMac(containerID: string, ifname: string): string {
  const b = digest(containerID, ifname).subarray(4, 10);
  b[0] = (b[0] & 0xfe) | 0x02;
  return formatMac(b);
}

/** 0a:58 + the IPv4 address: the pod's (or the bridge's, from the gateway) MAC never has to be read back. */
export function macFromIPv4(ip: number): string {
  return formatMac(Buffer.from([0x0a, 0x58, ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255]));
}

function formatMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

// Reads what DEL and CHECK need from a prevResult of any supported version, tolerantly.

export interface PrevAttachment {
  /** Addresses (with prefix) of the pod interface. */
  addresses: string[];
  routes: Array<{ dst: string; gw?: string }>;
  sandbox?: string;
}

interface RawResult {
  interfaces?: Array<{ name?: unknown; sandbox?: unknown }>;
  ips?: Array<{ address?: unknown; interface?: unknown }>;
  routes?: Array<{ dst?: unknown; gw?: unknown }>;
}

/** The pod interface's part of a prevResult, or undefined when there is no usable prevResult. */
export function prevAttachment(prevResult: unknown, ifname: string): PrevAttachment | undefined {
  if (!prevResult || typeof prevResult !== 'object') return undefined;
  const r = prevResult as RawResult;
  const interfaces = Array.isArray(r.interfaces) ? r.interfaces : [];
  const index = interfaces.findIndex((i) => i?.name === ifname && typeof i.sandbox === 'string' && i.sandbox !== '');
  const ips = (Array.isArray(r.ips) ? r.ips : []).filter((ip) => typeof ip?.address === 'string' && (index === -1 || ip.interface === undefined || ip.interface === index));
  return {
    addresses: ips.map((ip) => ip.address as string),
    routes: (Array.isArray(r.routes) ? r.routes : [])
      .filter((rt) => typeof rt?.dst === 'string')
      .map((rt) => ({ dst: rt.dst as string, ...(typeof rt.gw === 'string' ? { gw: rt.gw } : {}) })),
    sandbox: index === -1 ? undefined : (interfaces[index].sandbox as string),
  };
}

/** The pod's IPv4 address without prefix, as a hint for the store. */
export function prevResultAddress(prevResult: unknown, ifname: string): string | undefined {
  const first = prevAttachment(prevResult, ifname)?.addresses[0];
  return first?.split('/')[0];
}

// Parses and validates one request: the CNI_* environment and the plugin config on stdin
// (a single plugin config or one derived from a conflist, with runtime-injected keys).
import { formatIPv4, isIPv4, parseCidr, parseIPv4, type Cidr } from '../mesh-control/model/cidr.ts';
import { cniError } from './errors.ts';
import { negotiateVersion, VERBS, type CniVersion, type Verb } from './version.ts';

export interface AttachmentKey { containerID: string; ifname: string }

export interface PortMapping { hostPort: number; containerPort: number; protocol: 'tcp' | 'udp' | 'sctp'; hostIP?: string }

export interface DnsConfig { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  bridge: string;
  mtu: number;
  /** Static node subnet; otherwise the node's lease is looked up. */
  subnet?: Cidr;
  node?: string;
  leaseDir?: string;
  etcdEndpoints?: string[];
  dataDir: string;
  daemonSocket: string;
  clusterCIDR: Cidr;
  dns?: DnsConfig;
  portMappings: PortMapping[];
  /** Addresses asked for through runtimeConfig.ips, args.cni.ips or CNI_ARGS IP=. */
  requestedIPs: number[];
  prevResult?: unknown;
  /** GC only: the attachments that stay. */
  validAttachments?: AttachmentKey[];
}

export interface CmdEnv {
  command: Verb;
  containerID: string;
  /** Empty when the runtime did not pass one (allowed for DEL). */
  netns: string;
  ifname: string;
  args: Record<string, string>;
}

export const DEFAULTS = {
  bridge: 'weft0',
  mtu: 1500,
  dataDir: '/var/lib/cni/weft',
  daemonSocket: '/run/weft/cni.sock',
  clusterCIDR: '10.244.0.0/16',
} as const;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function validateIfname(ifname: string, what: string): string | undefined {
  if (ifname.length === 0) return `${what} is empty`;
  if (ifname.length > 15) return `${what} "${ifname}" is longer than 15 characters`;
  if (ifname === '.' || ifname === '..') return `${what} "${ifname}" is not a valid interface name`;
  if (/[/:\s]/.test(ifname)) return `${what} "${ifname}" contains '/', ':' or whitespace`;
  return undefined;
}

/** CNI_ARGS "K=V;K2=V2", tolerant of unknown keys (kubelet and containerd send K8S_*). */
export function parseCniArgs(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const part of text.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw cniError('WEFT_CNI_INVALID_ENV', `CNI_ARGS: invalid entry "${part}" (expected KEY=VALUE)`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** CNI_COMMAND alone; the other variables depend on the verb (see parseEnv). */
export function parseCommand(env: Record<string, string | undefined>): Verb | undefined {
  const command = env.CNI_COMMAND;
  if (command === undefined || command === '') return undefined;
  const verb = VERBS.find((v) => v === command);
  if (!verb) throw cniError('WEFT_CNI_INVALID_ENV', `CNI_COMMAND: unknown command "${command}"`, `expected one of ${VERBS.join(', ')}`);
  return verb;
}

export function parseEnv(command: Verb, env: Record<string, string | undefined>): CmdEnv {
  const needsAttachment = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  const required = needsAttachment ? ['CNI_CONTAINERID', 'CNI_IFNAME', ...(command === 'DEL' ? [] : ['CNI_NETNS'])] : [];
  const missing = required.filter((k) => !env[k]);
  if (missing.length) throw cniError('WEFT_CNI_INVALID_ENV', `required env variables [${missing.join(',')}] missing`);
  const containerID = env.CNI_CONTAINERID ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  if (needsAttachment) {
    if (!NAME_RE.test(containerID)) throw cniError('WEFT_CNI_INVALID_ENV', `CNI_CONTAINERID "${containerID}" must match ${NAME_RE.source}`);
    const bad = validateIfname(ifname, 'CNI_IFNAME');
    if (bad) throw cniError('WEFT_CNI_INVALID_ENV', bad);
  }
  const netns = env.CNI_NETNS ?? '';
  if (netns !== '' && !netns.startsWith('/')) throw cniError('WEFT_CNI_INVALID_ENV', `CNI_NETNS "${netns}" must be an absolute path`);
  return { command, containerID, netns, ifname, args: parseCniArgs(env.CNI_ARGS) };
}

/** Decodes stdin; a code-6 error names the JSON problem. */
export function decodeConfig(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw cniError('WEFT_CNI_DECODE', `error decoding network config: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw cniError('WEFT_CNI_DECODE', 'error decoding network config: expected a JSON object');
  return raw as Record<string, unknown>;
}

/** Looks a key up ignoring case: containerd serialises runtimeConfig with Go field names. */
export function pickKey(obj: Record<string, unknown>, key: string): unknown {
  if (key in obj) return obj[key];
  const lower = key.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}

function invalid(field: string, cause: string): never {
  throw cniError('WEFT_CNI_INVALID_CONFIG', `invalid config: ${field}: ${cause}`);
}

function optString(raw: Record<string, unknown>, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') invalid(key, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function cidrField(text: string, field: string): Cidr {
  try {
    return parseCidr(text);
  } catch (err) {
    return invalid(field, (err as Error).message);
  }
}

function intIn(v: unknown, field: string, min: number, max: number): number {
  if (typeof v === 'string' && /^\d+$/.test(v)) v = Number(v);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) invalid(field, `must be an integer ${min}-${max}, got ${JSON.stringify(v)}`);
  return v as number;
}

function parsePortMappings(v: unknown): PortMapping[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) invalid('runtimeConfig.portMappings', 'must be a list');
  return v.map((m, i) => {
    const field = `runtimeConfig.portMappings[${i}]`;
    if (m === null || typeof m !== 'object') invalid(field, 'must be an object');
    const o = m as Record<string, unknown>;
    const protocol = String(pickKey(o, 'protocol') ?? 'tcp').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') invalid(`${field}.protocol`, `must be tcp, udp or sctp, got "${protocol}"`);
    const hostIP = pickKey(o, 'hostIP');
    if (hostIP !== undefined && hostIP !== null && (typeof hostIP !== 'string' || (hostIP !== '' && !isIPv4(hostIP)))) {
      invalid(`${field}.hostIP`, `must be an IPv4 address or empty, got ${JSON.stringify(hostIP)}`);
    }
    return {
      hostPort: intIn(pickKey(o, 'hostPort'), `${field}.hostPort`, 1, 65535),
      containerPort: intIn(pickKey(o, 'containerPort'), `${field}.containerPort`, 1, 65535),
      protocol,
      ...(typeof hostIP === 'string' && hostIP !== '' && hostIP !== '0.0.0.0' ? { hostIP } : {}),
    };
  });
}

function parseRequestedIPs(raw: Record<string, unknown>, runtimeConfig: Record<string, unknown>, args: Record<string, string>): number[] {
  const texts: Array<{ text: unknown; field: string }> = [];
  const rc = pickKey(runtimeConfig, 'ips');
  if (rc !== undefined && rc !== null) {
    if (!Array.isArray(rc)) invalid('runtimeConfig.ips', 'must be a list');
    rc.forEach((text, i) => texts.push({ text, field: `runtimeConfig.ips[${i}]` }));
  }
  const argsIps = ((raw.args as Record<string, unknown> | undefined)?.cni as Record<string, unknown> | undefined)?.ips;
  if (Array.isArray(argsIps)) argsIps.forEach((text, i) => texts.push({ text, field: `args.cni.ips[${i}]` }));
  if (args.IP) args.IP.split(',').forEach((text) => texts.push({ text, field: 'CNI_ARGS IP' }));
  const ips = new Set<number>();
  for (const { text, field } of texts) {
    if (typeof text !== 'string') invalid(field, `must be a string, got ${JSON.stringify(text)}`);
    const addr = text.includes('/') ? text.slice(0, text.indexOf('/')) : text;
    if (!isIPv4(addr)) invalid(field, `"${text}" is not an IPv4 address`);
    ips.add(parseIPv4(addr));
  }
  if (ips.size > 1) invalid('ips', `only one IPv4 address per attachment, got ${[...ips].map(formatIPv4).join(', ')}`);
  return [...ips];
}

function parseDns(v: unknown): DnsConfig | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) invalid('dns', 'must be an object');
  const o = v as Record<string, unknown>;
  const list = (k: string): string[] | undefined => {
    if (o[k] === undefined) return undefined;
    if (!Array.isArray(o[k]) || !(o[k] as unknown[]).every((x) => typeof x === 'string')) invalid(`dns.${k}`, 'must be a list of strings');
    return o[k] as string[];
  };
  if (o.domain !== undefined && typeof o.domain !== 'string') invalid('dns.domain', 'must be a string');
  const dns: DnsConfig = { nameservers: list('nameservers'), domain: o.domain as string | undefined, search: list('search'), options: list('options') };
  return Object.fromEntries(Object.entries(dns).filter(([, x]) => x !== undefined)) as DnsConfig;
}

function parseAttachments(v: unknown, field: string): AttachmentKey[] {
  if (!Array.isArray(v)) invalid(field, 'must be a list of {containerID, ifname}');
  return v.map((a, i) => {
    const o = (a ?? {}) as Record<string, unknown>;
    const containerID = pickKey(o, 'containerID');
    const ifname = pickKey(o, 'ifname');
    if (typeof containerID !== 'string' || typeof ifname !== 'string') invalid(`${field}[${i}]`, 'needs string containerID and ifname');
    return { containerID, ifname };
  });
}

/** Validates a decoded config for `command`; every error names the key and the cause (code 7). */
export function parseNetConf(raw: Record<string, unknown>, command: Verb, args: Record<string, string> = {}): NetConf {
  if (typeof raw.cniVersion !== 'string') {
    throw cniError('WEFT_CNI_DECODE', `invalid config: cniVersion: must be a string, got ${JSON.stringify(raw.cniVersion)}`);
  }
  const cniVersion = negotiateVersion(raw.cniVersion, command);
  const name = raw.name;
  if (typeof name !== 'string' || name === '') invalid('name', 'missing network name');
  if (!NAME_RE.test(name)) invalid('name', `"${name}" must match ${NAME_RE.source}`);
  const bridge = optString(raw, 'bridge') ?? DEFAULTS.bridge;
  const badBridge = validateIfname(bridge, 'bridge');
  if (badBridge) invalid('bridge', badBridge);
  const mtu = raw.mtu === undefined ? DEFAULTS.mtu : intIn(raw.mtu, 'mtu', 576, 65535);
  const subnetText = optString(raw, 'subnet');
  const subnet = subnetText ? cidrField(subnetText, 'subnet') : undefined;
  if (subnet && subnet.prefix > 30) invalid('subnet', `${subnetText} is too small to allocate from (needs /30 or larger)`);
  const node = optString(raw, 'node');
  const leaseDir = optString(raw, 'leaseDir');
  let etcdEndpoints: string[] | undefined;
  if (raw.etcdEndpoints !== undefined) {
    if (!Array.isArray(raw.etcdEndpoints) || !raw.etcdEndpoints.every((e) => typeof e === 'string')) invalid('etcdEndpoints', 'must be a list of URLs');
    etcdEndpoints = raw.etcdEndpoints as string[];
  }
  if (!subnet && !node && command === 'ADD') invalid('subnet', 'neither "subnet" nor "node" (with "leaseDir" or "etcdEndpoints") is set');
  const dataDir = optString(raw, 'dataDir') ?? DEFAULTS.dataDir;
  if (!dataDir.startsWith('/')) invalid('dataDir', `must be an absolute path, got "${dataDir}"`);
  const runtimeConfig = (raw.runtimeConfig ?? {}) as Record<string, unknown>;
  if (typeof runtimeConfig !== 'object' || Array.isArray(runtimeConfig)) invalid('runtimeConfig', 'must be an object');
  let validAttachments: AttachmentKey[] | undefined;
  if (command === 'GC') {
    const key = raw['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
    validAttachments = raw[key] === undefined ? [] : parseAttachments(raw[key], key);
  }
  return {
    cniVersion,
    name,
    bridge,
    mtu,
    subnet,
    node,
    leaseDir,
    etcdEndpoints,
    dataDir,
    daemonSocket: optString(raw, 'daemonSocket') ?? DEFAULTS.daemonSocket,
    clusterCIDR: cidrField(optString(raw, 'clusterCIDR') ?? DEFAULTS.clusterCIDR, 'clusterCIDR'),
    dns: parseDns(raw.dns),
    portMappings: parsePortMappings(pickKey(runtimeConfig, 'portMappings')),
    requestedIPs: parseRequestedIPs(raw, runtimeConfig, args),
    prevResult: raw.prevResult ?? undefined,
    validAttachments,
  };
}

// Services and EndpointSlices, as pkg/apis/core/validation and pkg/apis/discovery/validation check them.
import { at, type Checker, type Fields } from './check.ts';
import { isIPv4 } from './cidr.ts';
import { checkDNS1035Label, checkDNS1123Label, checkDNS1123Subdomain, checkPortName } from './names.ts';
import { SERVICE_NAME_LABEL } from './types.ts';
import { checkLabels } from './validate-meta.ts';
import { PROTOCOLS } from './validate-workload.ts';

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;
/** The API server's default --service-node-port-range. */
export const NODE_PORT_MIN = 30000;
export const NODE_PORT_MAX = 32767;
/** sessionAffinityConfig.clientIP.timeoutSeconds bounds and default (3 hours). */
const MAX_CLIENT_IP_TIMEOUT_SECONDS = 86400;
export const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS = 10800;

/** Externally reachable services are the only ones where externalTrafficPolicy means anything. */
export function isExternallyAccessible(type: string, externalIPs: unknown): boolean {
  return type === 'NodePort' || type === 'LoadBalancer' || (Array.isArray(externalIPs) && externalIPs.length > 0);
}

export function checkService(c: Checker, svc: Fields): void {
  const spec = c.object(svc.spec, 'spec') ?? {};
  const type = c.oneOf(spec.type, 'spec.type', SERVICE_TYPES) ?? 'ClusterIP';
  const clusterIP = checkClusterIPs(c, spec, type);
  const headless = clusterIP === 'None';

  if (type === 'ExternalName') {
    const externalName = c.string(spec.externalName, 'spec.externalName', true);
    c.format(externalName?.replace(/\.$/, ''), 'spec.externalName', checkDNS1123Subdomain);
  }
  checkServicePorts(c, spec, type, headless);
  checkLabels(c, spec.selector, 'spec.selector');

  for (const [ip, i] of c.strings(spec.externalIPs, 'spec.externalIPs')) c.ipv4(ip, at('spec.externalIPs', i));
  const lbOnly = (value: unknown, path: string): void => {
    const set = Array.isArray(value) ? value.length > 0 : value != null && value !== '';
    if (set && type !== 'LoadBalancer') c.add(path, `may only be set when type is LoadBalancer, not ${type}`);
  };
  c.ipv4(spec.loadBalancerIP, 'spec.loadBalancerIP');
  lbOnly(spec.loadBalancerIP, 'spec.loadBalancerIP');
  for (const [range, i] of c.strings(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges')) {
    c.cidr(range, at('spec.loadBalancerSourceRanges', i), false);
  }
  lbOnly(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges');

  const etp = c.oneOf(spec.externalTrafficPolicy, 'spec.externalTrafficPolicy', ['Cluster', 'Local']);
  if (etp === 'Local' && !isExternallyAccessible(type, spec.externalIPs)) {
    c.add('spec.externalTrafficPolicy', `may only be Local for NodePort and LoadBalancer services or with externalIPs, not ${type}`);
  }
  c.oneOf(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', ['Cluster', 'Local']);
  const healthCheckNodePort = c.port(spec.healthCheckNodePort, 'spec.healthCheckNodePort');
  if (healthCheckNodePort !== undefined && (type !== 'LoadBalancer' || etp !== 'Local')) {
    c.add('spec.healthCheckNodePort', 'may only be set when type is LoadBalancer and externalTrafficPolicy is Local');
  }

  const affinity = c.oneOf(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP']) ?? 'None';
  const affinityConfig = c.object(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  if (affinityConfig !== undefined) {
    if (affinity !== 'ClientIP') c.add('spec.sessionAffinityConfig', 'may only be set when sessionAffinity is ClientIP');
    const clientIP = c.object(affinityConfig.clientIP, 'spec.sessionAffinityConfig.clientIP');
    c.int(clientIP?.timeoutSeconds, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 1, MAX_CLIENT_IP_TIMEOUT_SECONDS);
  }
  c.bool(spec.publishNotReadyAddresses, 'spec.publishNotReadyAddresses');
  c.string(spec.trafficDistribution, 'spec.trafficDistribution');

  const loadBalancer = c.object(c.object(svc.status, 'status')?.loadBalancer, 'status.loadBalancer');
  for (const [entry, i] of c.objects(loadBalancer?.ingress, 'status.loadBalancer.ingress')) {
    c.ipv4(entry.ip, `status.loadBalancer.ingress[${i}].ip`);
    c.string(entry.hostname, `status.loadBalancer.ingress[${i}].hostname`);
  }
}

/** clusterIP is "None" (headless), empty (allocate one) or an IPv4 address; returns it. */
function checkClusterIPs(c: Checker, spec: Fields, type: string): string | undefined {
  const clusterIP = c.string(spec.clusterIP, 'spec.clusterIP');
  const validIP = (ip: string, path: string): void => {
    if (ip !== '' && ip !== 'None' && !isIPv4(ip)) c.add(path, `must be "None" or an IPv4 address, got ${JSON.stringify(ip)}`);
  };
  if (clusterIP !== undefined) validIP(clusterIP, 'spec.clusterIP');
  const clusterIPs = c.strings(spec.clusterIPs, 'spec.clusterIPs');
  for (const [ip, i] of clusterIPs) validIP(ip, at('spec.clusterIPs', i));
  if (clusterIPs.length > 1) c.add('spec.clusterIPs', `must have at most one entry (weft is IPv4 single-stack), got ${clusterIPs.length}`);
  if (clusterIP && clusterIPs.length > 0 && clusterIPs[0][0] !== clusterIP) {
    c.add('spec.clusterIPs[0]', `must match spec.clusterIP ${JSON.stringify(clusterIP)}, got ${JSON.stringify(clusterIPs[0][0])}`);
  }
  const ip = clusterIP || clusterIPs[0]?.[0];
  if (type === 'ExternalName' && ip) c.add('spec.clusterIP', 'may not be set for ExternalName services');
  if (ip === 'None' && (type === 'NodePort' || type === 'LoadBalancer')) c.add('spec.clusterIP', `may not be "None" for ${type} services`);
  return ip;
}

function checkServicePorts(c: Checker, spec: Fields, type: string, headless: boolean): void {
  const portsRequired = type !== 'ExternalName' && !headless;
  if (portsRequired && Array.isArray(spec.ports) && spec.ports.length === 0) c.add('spec.ports', 'required');
  const ports = c.objects(spec.ports, 'spec.ports', portsRequired);
  const requireNames = Array.isArray(spec.ports) && spec.ports.length > 1;
  const names: { key: string | undefined; path: string }[] = [];
  const numbers: { key: string | undefined; path: string }[] = [];
  const nodePorts: { key: string | undefined; path: string }[] = [];
  for (const [port, i] of ports) {
    const p = at('spec.ports', i);
    const name = c.string(port.name, at(p, 'name'));
    if (requireNames && !name) c.add(at(p, 'name'), 'required when a Service has more than one port');
    c.format(name, at(p, 'name'), checkDNS1123Label);
    const number = c.port(port.port, at(p, 'port'), true);
    const protocol = c.oneOf(port.protocol, at(p, 'protocol'), PROTOCOLS) ?? 'TCP';
    checkTargetPort(c, port.targetPort, at(p, 'targetPort'));
    if (port.nodePort !== 0 && port.nodePort != null) {
      const nodePort = c.int(port.nodePort, at(p, 'nodePort'), NODE_PORT_MIN, NODE_PORT_MAX);
      if (type !== 'NodePort' && type !== 'LoadBalancer') c.add(at(p, 'nodePort'), `may only be set when type is NodePort or LoadBalancer, not ${type}`);
      nodePorts.push({ key: nodePort === undefined ? undefined : `${nodePort}/${protocol}`, path: at(p, 'nodePort') });
    }
    c.string(port.appProtocol, at(p, 'appProtocol'));
    names.push({ key: name || undefined, path: at(p, 'name') });
    numbers.push({ key: number === undefined ? undefined : `${number}/${protocol}`, path: at(p, 'port') });
  }
  c.unique(names, 'port name');
  c.unique(numbers, 'port');
  c.unique(nodePorts, 'node port');
}

/** A port number, or the IANA name of a container port; 0 or "" mean "same as port". */
function checkTargetPort(c: Checker, value: unknown, path: string): void {
  if (value == null || value === 0 || value === '') return;
  if (typeof value === 'string') c.format(value, path, checkPortName);
  else if (typeof value === 'number') c.port(value, path);
  else c.add(path, `must be an integer 1-65535 or a port name, got ${JSON.stringify(value)}`);
}

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;
const MAX_ENDPOINTS = 1000;
const MAX_ADDRESSES = 100;
const MAX_PORTS = 100;

export function checkEndpointSlice(c: Checker, slice: Fields): void {
  const labels = (slice.metadata as Fields | undefined)?.labels as Fields | undefined;
  const serviceName = labels?.[SERVICE_NAME_LABEL];
  const labelPath = `metadata.labels[${SERVICE_NAME_LABEL}]`;
  if (serviceName == null || serviceName === '') c.add(labelPath, 'required: names the Service this slice belongs to');
  else if (typeof serviceName === 'string') c.format(serviceName, labelPath, checkDNS1035Label);

  const addressType = c.oneOf(slice.addressType, 'addressType', ADDRESS_TYPES, true);
  const endpoints = c.objects(slice.endpoints, 'endpoints');
  if (endpoints.length > MAX_ENDPOINTS) c.add('endpoints', `must have at most ${MAX_ENDPOINTS} entries, got ${endpoints.length}`);
  for (const [endpoint, i] of endpoints) {
    const p = at('endpoints', i);
    const addresses = c.strings(endpoint.addresses, at(p, 'addresses'), true);
    if (Array.isArray(endpoint.addresses) && (endpoint.addresses.length === 0 || endpoint.addresses.length > MAX_ADDRESSES)) {
      c.add(at(p, 'addresses'), `must have 1-${MAX_ADDRESSES} entries, got ${endpoint.addresses.length}`);
    }
    for (const [address, j] of addresses) checkAddress(c, address, at(at(p, 'addresses'), j), addressType);
    const conditions = c.object(endpoint.conditions, at(p, 'conditions'));
    for (const key of ['ready', 'serving', 'terminating']) c.bool(conditions?.[key], at(at(p, 'conditions'), key));
    c.format(c.string(endpoint.hostname, at(p, 'hostname')), at(p, 'hostname'), checkDNS1123Label);
    c.format(c.string(endpoint.nodeName, at(p, 'nodeName')), at(p, 'nodeName'), checkDNS1123Subdomain);
    c.string(endpoint.zone, at(p, 'zone'));
    const targetRef = c.object(endpoint.targetRef, at(p, 'targetRef'));
    for (const key of ['kind', 'namespace', 'name', 'uid']) c.string(targetRef?.[key], at(at(p, 'targetRef'), key));
    const hints = c.object(endpoint.hints, at(p, 'hints'));
    for (const key of ['forZones', 'forNodes']) {
      for (const [hint, j] of c.objects(hints?.[key], at(at(p, 'hints'), key))) c.string(hint.name, at(at(at(at(p, 'hints'), key), j), 'name'), true);
    }
  }
  const ports = c.objects(slice.ports, 'ports');
  if (ports.length > MAX_PORTS) c.add('ports', `must have at most ${MAX_PORTS} entries, got ${ports.length}`);
  const names = ports.map(([port, i]) => {
    const p = at('ports', i);
    const name = c.string(port.name, at(p, 'name'));
    c.format(name, at(p, 'name'), checkDNS1123Label);
    c.port(port.port, at(p, 'port'));
    c.oneOf(port.protocol, at(p, 'protocol'), PROTOCOLS);
    c.string(port.appProtocol, at(p, 'appProtocol'));
    return { key: JSON.stringify(name ?? ''), path: at(p, 'name') };
  });
  c.unique(names, 'port name');
}

function checkAddress(c: Checker, address: string, path: string, addressType: string | undefined): void {
  if (addressType === 'IPv4') c.ipv4(address, path);
  else if (addressType === 'FQDN') c.format(address, path, checkDNS1123Subdomain);
  else if (addressType === 'IPv6' && !/^[0-9a-fA-F:.]+$/.test(address)) c.add(path, `must be an IPv6 address, got ${JSON.stringify(address)}`);
}

// What a probe or exec endpoint names — the one place endpoint text is read:
//   NS/POD, host/NAME (a LabHost; wins over a namespace called "host"), node/NAME (a node's own
//   namespace; wins over a namespace called "node"), and, as probe targets only, a Service —
//   svc/NS/NAME, or NS/NAME when no pod has that name — or a bare IPv4 address (a ClusterIP, LB IP,
//   externalIP, or a node address with a NodePort).
import { isIPv4 } from '../mesh-control/model/cidr.ts';
import type { Service } from '../mesh-control/model/types.ts';
import { LabError } from './errors.ts';
import type { LabState } from './state.ts';

export type ProbeProtocol = 'TCP' | 'UDP';

export interface Endpoint {
  /** Canonical key: "ns/pod", "host/name", "node/name" or the IP itself. */
  key: string;
  ip: string;
  netns?: string;
  /** The endpoint's pod server control socket (pods and LabHosts; nodes start a dialer per probe). */
  control?: string;
}

export interface ProbeTarget {
  key: string;
  ip: string;
  port: number;
  protocol: ProbeProtocol;
}

export function endpointKeys(state: LabState): string[] {
  return [...state.pods.map((p) => `${p.namespace}/${p.name}`), ...state.hosts.map((h) => `host/${h.name}`)];
}

function split(text: string): [string, string] | undefined {
  const slash = text.indexOf('/');
  return slash > 0 ? [text.slice(0, slash), text.slice(slash + 1)] : undefined;
}

function findEndpoint(state: LabState, text: string): Endpoint | undefined {
  const parts = split(text);
  if (!parts) return undefined;
  const [ns, name] = parts;
  const host = ns === 'host' ? state.hosts.find((h) => h.name === name) : undefined;
  if (host) return { key: text, ip: host.ip, netns: host.netns, control: host.control };
  const node = ns === 'node' ? state.nodes.find((n) => n.name === name) : undefined;
  if (node) return { key: text, ip: node.address, netns: node.netns };
  const pod = state.pods.find((p) => p.namespace === ns && p.name === name);
  if (pod) return { key: text, ip: pod.ip, netns: pod.netns, control: pod.control };
  return undefined;
}

/** A probe source or exec target: NS/POD, host/NAME or node/NAME. */
export function resolveEndpoint(state: LabState, text: string): Endpoint {
  const found = findEndpoint(state, text);
  if (found) return found;
  throw new LabError('WEFT_LAB_TARGET', `"${text}" names nothing in the lab (expected NS/POD, host/NAME or node/NAME; known: ${[...endpointKeys(state), ...state.nodes.map((n) => `node/${n.name}`)].join(', ') || 'none'})`);
}

function findService(state: LabState, text: string): Service | undefined {
  const parts = split(text.startsWith('svc/') ? text.slice(4) : text);
  if (!parts) return undefined;
  return state.services.find((s) => (s.metadata.namespace ?? 'default') === parts[0] && s.metadata.name === parts[1]);
}

/** A Service's ClusterIP and port: `port` is the service port (default its first one of `protocol`). */
function serviceTarget(svc: Service, port: number | undefined, protocol: ProbeProtocol | undefined): ProbeTarget {
  const key = `svc/${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`;
  const ip = svc.spec.clusterIP ?? '';
  if (!isIPv4(ip)) throw new LabError('WEFT_LAB_TARGET', `Service ${key} has no ClusterIP (headless or ExternalName): probe its pods instead`);
  const ports = svc.spec.ports ?? [];
  const match = ports.find((p) => (port === undefined || p.port === port) && (protocol === undefined || (p.protocol ?? 'TCP') === protocol));
  if (!match) {
    const list = ports.map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(', ') || 'none';
    throw new LabError('WEFT_LAB_TARGET', `Service ${key} has no port ${port ?? ''}${protocol ? `/${protocol}` : ''} (its ports: ${list})`);
  }
  const proto = match.protocol ?? 'TCP';
  if (proto === 'SCTP') throw new LabError('WEFT_LAB_TARGET', `Service ${key} port ${match.port} is SCTP: this kernel cannot carry SCTP traffic`);
  return { key, ip, port: match.port, protocol: proto };
}

/**
 * A probe target. For pods, hosts, nodes and IPs `port` is required and `protocol` defaults to TCP;
 * for a Service both default to its first port.
 */
export function resolveTarget(state: LabState, text: string, port: number | undefined, protocol: ProbeProtocol | undefined): ProbeTarget {
  const endpoint = text.startsWith('svc/') ? undefined : isIPv4(text) ? { key: text, ip: text } : findEndpoint(state, text);
  if (endpoint) {
    if (port === undefined) throw new LabError('WEFT_LAB_TARGET', `probe to ${text}: --port is required (only a Service target has a default port)`);
    return { key: endpoint.key, ip: endpoint.ip, port, protocol: protocol ?? 'TCP' };
  }
  const svc = findService(state, text);
  if (svc) return serviceTarget(svc, port, protocol);
  const services = state.services.map((s) => `svc/${s.metadata.namespace ?? 'default'}/${s.metadata.name}`);
  throw new LabError('WEFT_LAB_TARGET', `"${text}" names nothing in the lab (expected NS/POD, host/NAME, node/NAME, NS/SERVICE, svc/NS/SERVICE or an IPv4 address; known: ${[...endpointKeys(state), ...services].join(', ') || 'none'})`);
}

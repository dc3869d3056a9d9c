// What a probe or exec endpoint names: `NS/POD`, `host/NAME` (a LabHost; wins over a namespace
// called "host") or, as a target only, a bare IPv4 address. The one place endpoint text is read.
import { isIPv4 } from '../mesh-control/model/cidr.ts';
import { LabError } from './errors.ts';
import type { LabState } from './state.ts';

export interface Endpoint {
  /** Canonical key: "ns/pod", "host/name" or the IP itself. */
  key: string;
  ip: string;
  netns?: string;
  /** The endpoint's pod server control socket (absent for a bare IP). */
  control?: string;
}

export function endpointKeys(state: LabState): string[] {
  return [...state.pods.map((p) => `${p.namespace}/${p.name}`), ...state.hosts.map((h) => `host/${h.name}`)];
}

export function resolveEndpoint(state: LabState, text: string, allowIP: boolean): Endpoint {
  if (allowIP && isIPv4(text)) return { key: text, ip: text };
  const slash = text.indexOf('/');
  if (slash > 0) {
    const [ns, name] = [text.slice(0, slash), text.slice(slash + 1)];
    const host = ns === 'host' ? state.hosts.find((h) => h.name === name) : undefined;
    if (host) return { key: text, ip: host.ip, netns: host.netns, control: host.control };
    const pod = state.pods.find((p) => p.namespace === ns && p.name === name);
    if (pod) return { key: text, ip: pod.ip, netns: pod.netns, control: pod.control };
  }
  const kinds = allowIP ? 'NS/POD, host/NAME or an IPv4 address' : 'NS/POD or host/NAME';
  throw new LabError('WEFT_LAB_TARGET', `"${text}" names nothing in the lab (expected ${kinds}; known: ${endpointKeys(state).join(', ') || 'none'})`);
}

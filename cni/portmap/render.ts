// nftables rules for hostPort mappings, as the portmap plugin does them: DNAT traffic to the
// node's local addresses (from outside, and from the node itself) to the pod, and masquerade
// the two cases whose replies would otherwise bypass conntrack (hairpin, node-local 127/8).
// Each attachment owns three chains named by a hash of (containerID, ifname), so DEL and GC
// delete them by name in one transaction without listing rule handles. Pure.
import { createHash } from 'node:crypto';
import type { AttachmentKey, PortMapping } from '../config.ts';

export const PORTMAP_TABLE = 'weft-portmap';
const HOOKS = [
  { suffix: 'pre', spec: 'type nat hook prerouting priority dstnat;' },
  { suffix: 'out', spec: 'type nat hook output priority -100;' },
  { suffix: 'post', spec: 'type nat hook postrouting priority srcnat;' },
] as const;

/** `pm-` + 12 hex chars; the chains are `<base>-pre`, `<base>-out`, `<base>-post`. */
export function portmapChainBase(key: AttachmentKey): string {
  return `pm-${createHash('sha256').update(`${key.containerID}\0${key.ifname}`).digest('hex').slice(0, 12)}`;
}

function chainDecl(base: string, hook: (typeof HOOKS)[number]): string {
  return `add chain ip ${PORTMAP_TABLE} ${base}-${hook.suffix} { ${hook.spec} }`;
}

/** Replaces the attachment's chains (idempotent: add, flush, fill). */
export function renderPortmapAdd(key: AttachmentKey, podIP: string, mappings: PortMapping[]): string {
  const base = portmapChainBase(key);
  const comment = `comment "${key.containerID}/${key.ifname}"`;
  const lines = [`add table ip ${PORTMAP_TABLE}`];
  for (const hook of HOOKS) lines.push(chainDecl(base, hook), `flush chain ip ${PORTMAP_TABLE} ${base}-${hook.suffix}`);
  for (const m of mappings) {
    const dst = m.hostIP ? `ip daddr ${m.hostIP}` : 'fib daddr type local';
    const dnat = `${dst} ${m.protocol} dport ${m.hostPort} dnat to ${podIP}:${m.containerPort} ${comment}`;
    lines.push(`add rule ip ${PORTMAP_TABLE} ${base}-pre ${dnat}`, `add rule ip ${PORTMAP_TABLE} ${base}-out ${dnat}`);
    const to = `ip daddr ${podIP} ${m.protocol} dport ${m.containerPort}`;
    lines.push(`add rule ip ${PORTMAP_TABLE} ${base}-post ip saddr ${podIP} ${to} masquerade ${comment}`);
    lines.push(`add rule ip ${PORTMAP_TABLE} ${base}-post ip saddr 127.0.0.0/8 ${to} masquerade ${comment}`);
  }
  return lines.join('\n') + '\n';
}

/** Deletes chains by base name; declaring each first makes deleting a missing chain a no-op. */
export function renderPortmapDelete(bases: string[]): string {
  const lines = [`add table ip ${PORTMAP_TABLE}`];
  for (const base of bases) {
    for (const hook of HOOKS) lines.push(chainDecl(base, hook), `delete chain ip ${PORTMAP_TABLE} ${base}-${hook.suffix}`);
  }
  return lines.join('\n') + '\n';
}

/** Chain bases present in `nft list table ip weft-portmap` output. */
export function parsePortmapBases(listing: string): string[] {
  const bases = new Set<string>();
  for (const m of listing.matchAll(/chain (pm-[0-9a-f]{12})-(?:pre|out|post) \{/g)) bases.add(m[1]);
  return [...bases];
}

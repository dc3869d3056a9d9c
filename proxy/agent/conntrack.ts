// Stale UDP conntrack entries (kube-proxy's pkg/proxy/conntrack, event-based form): UDP has no
// connection end, so a flow DNATed to an endpoint that went away keeps black-holing (DNS!) until
// its entry is deleted; and a UDP service that had no endpoints may have entries created while
// nothing DNATed them. TCP entries are never touched. Pure planning + a thin runner.
import type { ProxyServicePort, ProxyState } from '../model/types.ts';
import { runCommand } from '../run-command.ts';

/** Arguments of one `conntrack -D` call. */
export type ConntrackDeletion = string[];

function frontends(sp: ProxyServicePort): string[] {
  return [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs];
}

/** The deletions a sync from `before` to `after` needs. */
export function staleUdpDeletions(before: ProxyState | undefined, after: ProxyState): ConntrackDeletion[] {
  const prev = new Map((before?.servicePorts ?? []).filter((sp) => sp.protocol === 'udp').map((sp) => [sp.id, sp]));
  const out: ConntrackDeletion[] = [];
  for (const sp of after.servicePorts) {
    if (sp.protocol !== 'udp') continue;
    const old = prev.get(sp.id);
    prev.delete(sp.id);
    if (old === sp) continue;
    if (sp.hasEndpoints && !old?.hasEndpoints) {
      // 0 → some endpoints: whatever was recorded while nothing DNATed is stale.
      for (const ip of frontends(sp)) out.push(['-p', 'udp', '--orig-dst', ip, '--orig-port-dst', String(sp.port)]);
      if (sp.nodePort) out.push(['-p', 'udp', '--orig-port-dst', String(sp.nodePort)]);
      continue;
    }
    if (old) out.push(...removedEndpointDeletions(old, new Set(sp.reachableEndpoints.map((ep) => ep.ip))));
  }
  // Deleted service ports: their endpoints are gone for them.
  for (const old of prev.values()) out.push(...removedEndpointDeletions(old, new Set()));
  return out;
}

function removedEndpointDeletions(old: ProxyServicePort, remaining: ReadonlySet<string>): ConntrackDeletion[] {
  const out: ConntrackDeletion[] = [];
  for (const ep of old.reachableEndpoints) {
    if (remaining.has(ep.ip)) continue;
    for (const ip of frontends(old)) out.push(['-p', 'udp', '--orig-dst', ip, '--orig-port-dst', String(old.port), '--reply-src', ep.ip]);
    if (old.nodePort) out.push(['-p', 'udp', '--orig-port-dst', String(old.nodePort), '--reply-src', ep.ip]);
  }
  return out;
}

/** conntrack has no batch mode: one process per deletion, this many at a time. */
export const CONNTRACK_CONCURRENCY = 4;

/** Runs the deletions, CONCURRENCY at a time; "0 flow entries" (exit 1 with that message) is success. Returns failures as messages. */
export async function runConntrackDeletions(deletions: readonly ConntrackDeletion[], opts: { netns?: string; concurrency?: number } = {}): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < deletions.length) {
      const args = deletions[next++];
      const r = await runCommand('conntrack', ['-D', ...args], { netns: opts.netns, timeoutMs: 10_000 });
      if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) failures.push(`failed to delete conntrack entries (${args.join(' ')}): ${r.stderr.trim() || `exit ${r.code}`}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? CONNTRACK_CONCURRENCY, deletions.length) }, worker));
  return failures;
}

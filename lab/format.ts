// Readable tables for `weft lab status` and the probe matrix.
import type { LoadProbeResult, MatrixResult } from './probe.ts';
import type { LabState } from './state.ts';

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export interface ServiceRow { service: string; type: string; clusterIP: string; external: string[]; ports: string[]; healthCheckNodePort?: number }

/** Services as `kubectl get svc` shows them: ports as port[:nodePort]/protocol, LB IPs and externalIPs. */
export function serviceRows(state: LabState): ServiceRow[] {
  return state.services.map((s) => ({
    service: `${s.metadata.namespace ?? 'default'}/${s.metadata.name}`,
    type: s.spec.type ?? 'ClusterIP',
    clusterIP: s.spec.clusterIP ?? '',
    external: [...(s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? ''), ...(s.spec.externalIPs ?? [])].filter(Boolean),
    ports: (s.spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`),
    ...(s.spec.healthCheckNodePort ? { healthCheckNodePort: s.spec.healthCheckNodePort } : {}),
  }));
}

/** A request loop: how many answered, who answered (a Service spreading its load), the errors. */
export function formatLoad(r: LoadProbeResult): string {
  const rows = Object.entries(r.answeredBy).sort(([a], [b]) => (a < b ? -1 : 1)).map(([pod, n]) => [pod, String(n)]);
  const errors = Object.entries(r.errors).map(([e, n]) => `  ${n} × ${e}\n`).join('');
  return `${r.from} -> ${r.to} ${r.protocol}/${r.port}: ${r.ok}/${r.requests} ok in ${r.elapsedMs} ms\n${table(['ANSWERED BY', 'REQUESTS'], rows)}${errors ? `errors:\n${errors}` : ''}`;
}

export function formatStatus(state: LabState): string {
  const ports = (list: { containerPort: number; protocol?: string }[]) => list.map((p) => `${p.containerPort}/${p.protocol ?? 'TCP'}`).join(',') || '-';
  return [
    `underlay ${state.underlay} (${state.backend}), cluster CIDR ${state.clusterCIDR}, service CIDR ${state.serviceCIDR}, proxy mode ${state.proxyMode}\n`,
    table(['NODE', 'POD CIDR', 'ADDRESS'], state.nodes.map((n) => [n.name, n.podCIDR, n.address])),
    table(['POD', 'NODE', 'IP', 'PORTS'], state.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.ip, ports(p.ports)])),
    state.hosts.length ? table(['HOST', 'IP', 'PORTS'], state.hosts.map((h) => [h.name, h.ip, ports(h.ports)])) : '',
    state.services.length ? table(['SERVICE', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORTS'], serviceRows(state).map((r) => [r.service, r.type, r.clusterIP, r.external.join(',') || '-', r.ports.join(',')])) : '',
  ].filter(Boolean).join('\n');
}

/** Rows are sources, columns targets (numbered, keyed below the grid to keep it narrow). */
export function formatMatrix(m: MatrixResult): string {
  const keys = Object.keys(m.results);
  const header = ['FROM \\ TO', ...keys.map((_, i) => String(i + 1))];
  const rows = keys.map((from, i) => [`${i + 1} ${from}`, ...keys.map((to) => (m.results[from][to] ? 'ok' : 'FAIL'))]);
  const failed = keys.reduce((n, from) => n + keys.filter((to) => !m.results[from][to]).length, 0);
  return `${m.protocol} port ${m.port}: ${keys.length * keys.length - failed}/${keys.length * keys.length} ok\n${table(header, rows)}`;
}

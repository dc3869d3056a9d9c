// Readable tables for `weft lab status` and the probe matrix.
import type { MatrixResult } from './probe.ts';
import type { LabState } from './state.ts';

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function formatStatus(state: LabState): string {
  const ports = (list: { containerPort: number; protocol?: string }[]) => list.map((p) => `${p.containerPort}/${p.protocol ?? 'TCP'}`).join(',') || '-';
  return [
    `underlay ${state.underlay} (${state.backend}), cluster CIDR ${state.clusterCIDR}\n`,
    table(['NODE', 'POD CIDR', 'ADDRESS'], state.nodes.map((n) => [n.name, n.podCIDR, n.address])),
    table(['POD', 'NODE', 'IP', 'PORTS'], state.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.ip, ports(p.ports)])),
    state.hosts.length ? table(['HOST', 'IP', 'PORTS'], state.hosts.map((h) => [h.name, h.ip, ports(h.ports)])) : '',
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

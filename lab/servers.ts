// Starting the pod server (dist/pod-server.mjs) of a pod or LabHost inside its namespace.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { ContainerPort } from '../mesh-control/model/types.ts';
import type { LabLayout } from './layout.ts';
import { distEntry, startInNetns } from './processes.ts';

/** A short control socket path for an endpoint key such as "default/web-0" or "host/outside". */
export function controlSocket(layout: LabLayout, key: string): string {
  return join(layout.sockDir, `${createHash('sha256').update(key).digest('hex').slice(0, 12)}.sock`);
}

/** Ports the server answers on; SCTP is declared but cannot be served (no SCTP sockets here). */
export function servedPorts(ports: ContainerPort[]): { tcp: number[]; udp: number[]; sctp: number[] } {
  const by = (p: string) => ports.filter((x) => (x.protocol ?? 'TCP') === p).map((x) => x.containerPort);
  return { tcp: by('TCP'), udp: by('UDP'), sctp: by('SCTP') };
}

export function startPodServer(layout: LabLayout, netns: string, key: string, ports: ContainerPort[], control: string): Promise<number> {
  const { tcp, udp } = servedPorts(ports);
  const argv = [process.execPath, distEntry('pod-server.mjs'), '--pod', key, '--control', control,
    ...tcp.flatMap((p) => ['--tcp', String(p)]), ...udp.flatMap((p) => ['--udp', String(p)])];
  return startInNetns(netns, argv, join(layout.logDir, `${key.replace('/', '_')}.log`), `pod server of ${key}`);
}

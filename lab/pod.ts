// A lab pod: a network namespace wired to its node by executing the node's installed weft-cni
// binary inside the node's namespace, exactly as containerd would (CNI_* environment, the
// conflist's plugin config with name, cniVersion and runtimeConfig on stdin).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LabError } from './errors.ts';
import { addNetns, deleteNetns, run } from './netns.ts';
import type { PlannedPod } from './plan.ts';
import type { LabNodeState } from './state.ts';

export const POD_IFNAME = 'eth0';

interface Conflist { cniVersion: string; name: string; plugins: (Record<string, unknown> & { capabilities?: Record<string, boolean> })[] }

/** A stable 64-hex container ID, like a sandbox ID from containerd. */
export function containerIDFor(netns: string): string {
  return createHash('sha256').update(netns).digest('hex');
}

/** runtimeConfig for the capabilities the plugin declares: `ips` (weft.dev/ip) and `portMappings` (hostPort). */
export function runtimeConfigFor(pod: Pick<PlannedPod, 'ports' | 'requestedIP'>, capabilities: Record<string, boolean>): Record<string, unknown> {
  const rc: Record<string, unknown> = {};
  if (capabilities.ips && pod.requestedIP) rc.ips = [pod.requestedIP];
  const mappings = pod.ports.filter((p) => p.hostPort).map((p) => ({
    hostPort: p.hostPort, containerPort: p.containerPort, protocol: (p.protocol ?? 'TCP').toLowerCase(), ...(p.hostIP ? { hostIP: p.hostIP } : {}),
  }));
  if (capabilities.portMappings && mappings.length) rc.portMappings = mappings;
  return rc;
}

async function cniExec(command: 'ADD' | 'DEL', node: LabNodeState, pod: Pick<PlannedPod, 'namespace' | 'name' | 'ports' | 'requestedIP'>, netns: string): Promise<string> {
  const list = JSON.parse(await readFile(node.conflist, 'utf8')) as Conflist;
  const plugin = list.plugins[0];
  const stdin = JSON.stringify({ ...plugin, name: list.name, cniVersion: list.cniVersion, runtimeConfig: runtimeConfigFor(pod, plugin.capabilities ?? {}) });
  const containerID = containerIDFor(netns);
  const env = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerID,
    CNI_NETNS: `/run/netns/${netns}`,
    CNI_IFNAME: POD_IFNAME,
    CNI_PATH: join(node.dir, 'bin'),
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${containerID}`,
  };
  try {
    return await run(`${command.toLowerCase()} pod ${pod.namespace}/${pod.name}`, 'ip', ['netns', 'exec', node.netns, join(node.dir, 'bin', 'weft-cni')], stdin, env);
  } catch (err) {
    throw new LabError('WEFT_LAB_CNI', `weft-cni ${command} of pod ${pod.namespace}/${pod.name} on node ${node.name} failed: ${(err as Error).message.replace(/^failed to [^:]*: /, '')}`);
  }
}

/** Creates the pod's namespace and attaches it; resolves to the pod's IP. */
export async function addPod(node: LabNodeState, pod: PlannedPod, netns: string): Promise<{ ip: string; containerID: string }> {
  await addNetns(netns);
  const out = await cniExec('ADD', node, pod, netns);
  const result = JSON.parse(out) as { ips?: { address: string }[] };
  const address = result.ips?.[0]?.address;
  if (!address) throw new LabError('WEFT_LAB_CNI', `weft-cni ADD of pod ${pod.namespace}/${pod.name} returned no IP: ${out.trim()}`);
  return { ip: address.split('/')[0], containerID: containerIDFor(netns) };
}

/** CNI DEL (releases the pod's address and links), then the namespace; both tolerate a second run. */
export async function removePod(node: LabNodeState, pod: Pick<PlannedPod, 'namespace' | 'name' | 'ports'>, netns: string): Promise<void> {
  await cniExec('DEL', node, pod, netns);
  await deleteNetns(netns);
}

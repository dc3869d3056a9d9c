// Pods, Deployments and LabHosts: the objects that run (or stand in for) containers with ports.
import { at, atKey, type Checker, type Fields } from './check.ts';
import { checkDNS1123Label, checkDNS1123Subdomain, checkPortName } from './names.ts';
import { deploymentPodName } from './objects.ts';
import { matchesSelector } from './selector.ts';
import { REQUESTED_IP_ANNOTATION } from './types.ts';
import { checkAnnotations, checkLabels, checkLabelSelector } from './validate-meta.ts';

export const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

/**
 * Container ports of one pod (or LabHost), possibly spread over several lists: names and
 * number/protocol pairs must be unique across the pod, since they share one network namespace and
 * named ports resolve per pod.
 */
function checkContainerPorts(c: Checker, lists: { value: unknown; path: string }[]): void {
  const names: { key: string | undefined; path: string }[] = [];
  const numbers: { key: string | undefined; path: string }[] = [];
  for (const { value, path } of lists) {
    for (const [port, i] of c.objects(value, path)) {
      const p = at(path, i);
      const name = c.string(port.name, at(p, 'name'));
      c.format(name, at(p, 'name'), checkPortName);
      const number = c.port(port.containerPort, at(p, 'containerPort'), true);
      const protocol = c.oneOf(port.protocol, at(p, 'protocol'), PROTOCOLS) ?? 'TCP';
      if (port.hostPort !== 0) c.port(port.hostPort, at(p, 'hostPort'));
      c.ipv4(port.hostIP, at(p, 'hostIP'));
      names.push({ key: name === '' ? undefined : name, path: at(p, 'name') });
      numbers.push({ key: number === undefined ? undefined : `${number}/${protocol}`, path: at(p, 'containerPort') });
    }
  }
  c.unique(names, 'port name');
  c.unique(numbers, 'port');
}

function checkPodSpec(c: Checker, value: unknown, path: string): void {
  const spec = c.object(value, path, true);
  if (spec === undefined) return;
  const containersPath = at(path, 'containers');
  if (Array.isArray(spec.containers) && spec.containers.length === 0) c.add(containersPath, 'must have at least one container');
  const containers = c.objects(spec.containers, containersPath, true);
  const names = containers.map(([container, i]) => {
    const p = at(containersPath, i);
    const name = c.string(container.name, at(p, 'name'), true);
    c.format(name, at(p, 'name'), checkDNS1123Label);
    c.string(container.image, at(p, 'image'));
    return { key: name, path: at(p, 'name') };
  });
  c.unique(names, 'container name');
  checkContainerPorts(c, containers.map(([container, i]) => ({ value: container.ports, path: at(at(containersPath, i), 'ports') })));
  c.format(c.string(spec.nodeName, at(path, 'nodeName')), at(path, 'nodeName'), checkDNS1123Subdomain);
  c.bool(spec.hostNetwork, at(path, 'hostNetwork'));
  c.int(spec.terminationGracePeriodSeconds, at(path, 'terminationGracePeriodSeconds'), 0, Number.MAX_SAFE_INTEGER);
}

/** The weft.dev/ip annotation, when present, must be an IPv4 address. Returns it when it is. */
function checkRequestedIP(c: Checker, annotations: unknown, path: string): string | undefined {
  if (annotations === null || typeof annotations !== 'object') return undefined;
  const value = (annotations as Fields)[REQUESTED_IP_ANNOTATION];
  if (typeof value !== 'string') return undefined;
  const before = c.problems.length;
  c.ipv4(value, atKey(path, REQUESTED_IP_ANNOTATION), true);
  return c.problems.length === before ? value : undefined;
}

const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
const CONDITION_TYPES = ['Ready', 'PodScheduled', 'Initialized', 'ContainersReady'] as const;

export function checkPod(c: Checker, pod: Fields): void {
  checkRequestedIP(c, (pod.metadata as Fields | undefined)?.annotations, 'metadata.annotations');
  checkPodSpec(c, pod.spec, 'spec');
  const status = c.object(pod.status, 'status');
  if (status === undefined) return;
  c.ipv4(status.podIP, 'status.podIP');
  c.ipv4(status.hostIP, 'status.hostIP');
  for (const [entry, i] of c.objects(status.podIPs, 'status.podIPs')) c.ipv4(entry.ip, `status.podIPs[${i}].ip`, true);
  c.oneOf(status.phase, 'status.phase', PHASES);
  for (const [cond, i] of c.objects(status.conditions, 'status.conditions')) {
    c.oneOf(cond.type, `status.conditions[${i}].type`, CONDITION_TYPES, true);
    c.oneOf(cond.status, `status.conditions[${i}].status`, ['True', 'False', 'Unknown'], true);
  }
}

/** Longest pod name; expandDeployment's pod names must stay within it. */
const POD_NAME_MAX = 253;

export function checkDeployment(c: Checker, deployment: Fields): void {
  const spec = c.object(deployment.spec, 'spec', true);
  if (spec === undefined) return;
  const replicas = c.int(spec.replicas, 'spec.replicas', 0, Number.MAX_SAFE_INTEGER) ?? 1;
  const selector = checkLabelSelector(c, spec.selector, 'spec.selector', true);
  if (selector !== undefined && Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0) {
    c.add('spec.selector', 'must not be empty (a Deployment would select every pod of its namespace)');
  }
  const template = c.object(spec.template, 'spec.template', true);
  if (template !== undefined) {
    const meta = c.object(template.metadata, 'spec.template.metadata');
    const before = c.problems.length;
    const labels = checkLabels(c, meta?.labels, 'spec.template.metadata.labels');
    if (selector !== undefined && c.problems.length === before && !matchesSelector(selector, labels)) {
      c.add('spec.template.metadata.labels', 'must match spec.selector');
    }
    checkAnnotations(c, meta?.annotations, 'spec.template.metadata.annotations');
    const ip = checkRequestedIP(c, meta?.annotations, 'spec.template.metadata.annotations');
    if (ip !== undefined && replicas > 1) {
      c.add(atKey('spec.template.metadata.annotations', REQUESTED_IP_ANNOTATION), `would give all ${replicas} replicas the same address ${ip}`);
    }
    checkPodSpec(c, template.spec, 'spec.template.spec');
  }
  const name = (deployment.metadata as Fields | undefined)?.name;
  if (typeof name === 'string' && replicas > 0) {
    const longest = deploymentPodName(name, replicas - 1);
    if (longest.length > POD_NAME_MAX) c.add('metadata.name', `is too long: pod name ${longest.slice(0, 20)}... would exceed ${POD_NAME_MAX} characters`);
  }
}

export function checkLabHost(c: Checker, host: Fields): void {
  const spec = c.object(host.spec, 'spec');
  if (spec === undefined) return;
  c.ipv4(spec.ip, 'spec.ip');
  checkContainerPorts(c, [{ value: spec.ports, path: 'spec.ports' }]);
}

// NetworkPolicy, as pkg/apis/networking/validation checks it (netpol.md 1.8).
import { at, type Checker, type Fields } from './check.ts';
import { containsCidr } from './cidr.ts';
import { checkPortName } from './names.ts';
import { checkLabelSelector } from './validate-meta.ts';
import { PROTOCOLS } from './validate-workload.ts';

export function checkNetworkPolicy(c: Checker, policy: Fields): void {
  // A missing spec decodes to the zero value: podSelector {} and no rules (deny all ingress).
  const spec = c.object(policy.spec, 'spec') ?? {};
  checkLabelSelector(c, spec.podSelector, 'spec.podSelector');
  const types = c.array(spec.policyTypes, 'spec.policyTypes') ?? [];
  if (types.length > 2) c.add('spec.policyTypes', `must have at most 2 entries, got ${types.length}`);
  types.forEach((t, i) => c.oneOf(t, at('spec.policyTypes', i), ['Ingress', 'Egress'], true));
  for (const [direction, peers] of [['ingress', 'from'], ['egress', 'to']] as const) {
    for (const [rule, i] of c.objects(spec[direction], at('spec', direction))) {
      const p = at(at('spec', direction), i);
      for (const [port, j] of c.objects(rule.ports, at(p, 'ports'))) checkPolicyPort(c, port, at(at(p, 'ports'), j));
      for (const [peer, j] of c.objects(rule[peers], at(p, peers))) checkPeer(c, peer, at(at(p, peers), j));
    }
  }
}

function checkPolicyPort(c: Checker, port: Fields, path: string): void {
  c.oneOf(port.protocol, at(path, 'protocol'), PROTOCOLS);
  const value = port.port;
  if (typeof value === 'string') c.format(value, at(path, 'port'), checkPortName);
  else if (value != null && typeof value !== 'number') c.add(at(path, 'port'), `must be an integer 1-65535 or a port name, got ${JSON.stringify(value)}`);
  const number = typeof value === 'number' ? c.port(value, at(path, 'port')) : undefined;
  const endPort = c.port(port.endPort, at(path, 'endPort'));
  if (endPort === undefined) return;
  if (value == null) c.add(at(path, 'endPort'), 'may not be set without port');
  else if (typeof value === 'string') c.add(at(path, 'endPort'), 'may not be set when port is a named port');
  else if (number !== undefined && endPort < number) c.add(at(path, 'endPort'), `must be greater than or equal to port ${number}, got ${endPort}`);
}

function checkPeer(c: Checker, peer: Fields, path: string): void {
  const hasSelector = peer.podSelector != null || peer.namespaceSelector != null;
  if (!hasSelector && peer.ipBlock == null) {
    c.add(path, 'must specify a peer (podSelector, namespaceSelector or ipBlock)');
    return;
  }
  if (hasSelector && peer.ipBlock != null) c.add(path, 'may not specify both ipBlock and another peer');
  checkLabelSelector(c, peer.podSelector, at(path, 'podSelector'));
  checkLabelSelector(c, peer.namespaceSelector, at(path, 'namespaceSelector'));
  const ipBlock = c.object(peer.ipBlock, at(path, 'ipBlock'));
  if (ipBlock === undefined) return;
  // Host bits are tolerated here, as the API server does; the network part is what matches.
  const cidr = c.cidr(ipBlock.cidr, at(at(path, 'ipBlock'), 'cidr'), false, true);
  for (const [text, i] of c.strings(ipBlock.except, at(at(path, 'ipBlock'), 'except'))) {
    const exceptPath = at(at(at(path, 'ipBlock'), 'except'), i);
    const except = c.cidr(text, exceptPath, false, true);
    if (cidr !== undefined && except !== undefined && (except.prefix <= cidr.prefix || !containsCidr(cidr, except))) {
      c.add(exceptPath, `must be a strict subset of cidr ${String(ipBlock.cidr)}, got ${JSON.stringify(text)}`);
    }
  }
}

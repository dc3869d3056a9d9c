import { describe, expect, it } from 'vitest';
import { checkDNS1035Label, checkDNS1123Label, checkDNS1123Subdomain, checkLabelValue, checkPortName, checkQualifiedName } from '../mesh-control/model/names.ts';
import { validate } from '../mesh-control/model/validate.ts';
import { deployment, endpointSlice, labHost, networkPolicy, node, pod, problemPaths, problems, service } from './helpers/model.ts';

describe('name formats', () => {
  it('DNS-1123 labels', () => {
    for (const ok of ['a', 'web', 'web-1', '0abc', 'a'.repeat(63)]) expect(checkDNS1123Label(ok)).toBeUndefined();
    for (const bad of ['', 'Web', '-web', 'web-', 'web.x', 'a_b', 'a'.repeat(64)]) expect(checkDNS1123Label(bad)).toMatch(/RFC 1123 label/);
  });
  it('DNS-1123 subdomains', () => {
    for (const ok of ['a', 'web.default', 'node-a.lab.local', `${'a'.repeat(63)}.${'b'.repeat(63)}`]) expect(checkDNS1123Subdomain(ok)).toBeUndefined();
    for (const bad of ['', 'a..b', '.a', 'a.', 'A.b', 'a_b', 'a'.repeat(254)]) expect(checkDNS1123Subdomain(bad)).toMatch(/RFC 1123 subdomain/);
  });
  it('DNS-1035 labels start with a letter', () => {
    expect(checkDNS1035Label('web-1')).toBeUndefined();
    expect(checkDNS1035Label('1web')).toMatch(/RFC 1035/);
  });
  it('qualified names (label keys)', () => {
    for (const ok of ['app', 'App_Name.x-y', 'kubernetes.io/service-name', 'a.b/c']) expect(checkQualifiedName(ok)).toBeUndefined();
    expect(checkQualifiedName('/app')).toMatch(/prefix/);
    expect(checkQualifiedName('Bad_Prefix/app')).toMatch(/prefix/);
    for (const bad of ['-app', 'app-', 'a b', 'a/b/c', 'x'.repeat(64)]) expect(checkQualifiedName(bad)).toBeDefined();
  });
  it('label values', () => {
    for (const ok of ['', 'v1', 'My_Value.1']) expect(checkLabelValue(ok)).toBeUndefined();
    for (const bad of ['-v', 'v/1', 'v'.repeat(64)]) expect(checkLabelValue(bad)).toBeDefined();
  });
  it('IANA service names (container port names)', () => {
    for (const ok of ['http', 'h2c', 'web-admin', 'a'.repeat(15), '8a']) expect(checkPortName(ok)).toBeUndefined();
    for (const bad of ['', '8080', 'HTTP', 'web--x', '-web', 'web-', 'a'.repeat(16), 'we_b']) expect(checkPortName(bad)).toMatch(/IANA service name/);
  });
});

describe('validate: kind, apiVersion, metadata', () => {
  it('accepts a minimal valid object of every kind', () => {
    const objects = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prod' } },
      node({ podCIDR: '10.244.1.0/24' }), pod(), deployment(), service(), endpointSlice(), networkPolicy(), labHost({ ip: '192.168.100.9' }),
    ];
    for (const o of objects) expect(problems(o), JSON.stringify(o)).toEqual([]);
  });
  it('rejects non-objects and requires apiVersion, kind, metadata.name', () => {
    expect(problems([1])).toEqual([': must be an object, got a list']);
    expect(problems({})).toEqual(['apiVersion: required', 'kind: required']);
    expect(problemPaths({ apiVersion: 'v1', kind: 'Pod', spec: {} })).toContain('metadata');
    expect(problemPaths({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: '' } })).toEqual(['metadata.name']);
  });
  it('names both kind and apiVersion for unknown kinds', () => {
    expect(problems({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } })).toEqual([
      'kind: unknown kind "ConfigMap" (apiVersion "v1"); expected one of Namespace, Node, Pod, Service, Deployment, EndpointSlice, NetworkPolicy, LabHost',
    ]);
  });
  it('names both for a wrong apiVersion', () => {
    expect(problems({ ...deployment(), apiVersion: 'v1' })).toEqual(['apiVersion: must be "apps/v1" for kind Deployment, got "v1"']);
    expect(problems({ ...labHost(), apiVersion: 'weft.dev/v1' })).toEqual(['apiVersion: must be "weft.dev/v1alpha1" for kind LabHost, got "weft.dev/v1"']);
  });
  it('uses each kind\'s name format', () => {
    expect(problemPaths(service({}, { name: '1web' }))).toEqual(['metadata.name']);
    expect(problemPaths(pod({}, { name: 'web.default' }))).toEqual([]);
    expect(problemPaths({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a.b' } })).toEqual(['metadata.name']);
    expect(problemPaths(node({}, 'Node_A'))).toEqual(['metadata.name']);
  });
  it('checks namespace, labels and annotations', () => {
    expect(problemPaths(pod({}, { namespace: 'Prod' }))).toEqual(['metadata.namespace']);
    expect(problems(pod({}, { labels: { app: 'web', '-bad': 'x', tier: 'front end', n: 3 } }))).toEqual([
      'metadata.labels[n]: must be a string, got 3',
      expect.stringMatching(/^metadata\.labels\[-bad\]: must be a qualified name/),
      expect.stringMatching(/^metadata\.labels\[tier\]: must be empty or at most 63/),
    ]);
    expect(problemPaths(pod({}, { annotations: { 'a/b/c': 'x', ok: 'y' } }))).toEqual(['metadata.annotations[a/b/c]']);
    expect(problems(pod({}, { annotations: { big: 'x'.repeat(300_000) } }))[0]).toMatch(/^metadata.annotations: must have at most 262144 bytes/);
  });
  it('tolerates unknown fields but not wrong types of known ones', () => {
    expect(problems({ ...pod(), extra: { anything: 1 }, metadata: { name: 'p', finalizers: ['x'] } })).toEqual([]);
    expect(problems(pod({ nodeName: 5, hostNetwork: 'yes' }))).toEqual(['spec.nodeName: must be a string, got 5', 'spec.hostNetwork: must be true or false, got "yes"']);
  });
  it('treats null as absent', () => {
    expect(problems(pod({ nodeName: null }, { labels: null }))).toEqual([]);
  });
});

describe('validate: Pod', () => {
  it('requires at least one container', () => {
    expect(problems(pod({ containers: [] }))).toEqual(['spec.containers: must have at least one container']);
    expect(problems(pod({ containers: undefined }))).toEqual(['spec.containers: required']);
    expect(problems({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' } })).toEqual(['spec: required']);
  });
  it('checks container names', () => {
    expect(problemPaths(pod({ containers: [{ name: 'App' }] }))).toEqual(['spec.containers[0].name']);
    expect(problems(pod({ containers: [{ name: 'a' }, { name: 'a' }] }))).toEqual(['spec.containers[1].name: duplicate container name a (also at spec.containers[0].name)']);
  });
  it('checks container ports', () => {
    const ports = (list: unknown[]) => problems(pod({ containers: [{ name: 'a', ports: list }] }));
    expect(ports([{ containerPort: 8080, name: 'http', protocol: 'UDP' }])).toEqual([]);
    expect(ports([{ containerPort: 70000 }])).toEqual(['spec.containers[0].ports[0].containerPort: must be an integer 1-65535, got 70000']);
    expect(ports([{ containerPort: 0 }])).toEqual(['spec.containers[0].ports[0].containerPort: must be an integer 1-65535, got 0']);
    expect(ports([{ containerPort: '80' }])).toEqual(['spec.containers[0].ports[0].containerPort: must be an integer 1-65535, got "80"']);
    expect(ports([{}])).toEqual(['spec.containers[0].ports[0].containerPort: required']);
    expect(ports([{ containerPort: 80, protocol: 'ICMP' }])).toEqual(['spec.containers[0].ports[0].protocol: must be one of TCP, UDP, SCTP, got "ICMP"']);
    expect(ports([{ containerPort: 80, protocol: 'tcp' }])).toHaveLength(1);
    expect(ports([{ containerPort: 80, name: 'web-server-admin' }])[0]).toMatch(/ports\[0\]\.name: must be an IANA service name/);
    expect(ports([{ containerPort: 80, hostPort: 0, hostIP: '1.2.3' }])).toEqual(['spec.containers[0].ports[0].hostIP: must be an IPv4 address, got "1.2.3"']);
  });
  it('rejects duplicate port names and number/protocol pairs across the pod', () => {
    const spec = {
      containers: [
        { name: 'a', ports: [{ containerPort: 80, name: 'http' }, { containerPort: 80, protocol: 'UDP' }] },
        { name: 'b', ports: [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 81, name: 'http' }] },
      ],
    };
    expect(problems(pod(spec))).toEqual([
      'spec.containers[1].ports[1].name: duplicate port name http (also at spec.containers[0].ports[0].name)',
      'spec.containers[1].ports[0].containerPort: duplicate port 80/TCP (also at spec.containers[0].ports[0].containerPort)',
    ]);
  });
  it('checks the weft.dev/ip annotation and nodeName', () => {
    expect(problems(pod({}, { annotations: { 'weft.dev/ip': '10.244.1.300' } }))).toEqual(['metadata.annotations[weft.dev/ip]: must be an IPv4 address, got "10.244.1.300"']);
    expect(problems(pod({ nodeName: 'node-a.lab' }, { annotations: { 'weft.dev/ip': '10.244.1.30' } }))).toEqual([]);
    expect(problemPaths(pod({ nodeName: 'Node_A' }))).toEqual(['spec.nodeName']);
  });
  it('checks status addresses and conditions', () => {
    expect(problemPaths({ ...pod(), status: { podIP: 'x', podIPs: [{ ip: '10.0.0.1' }, {}], phase: 'Running', conditions: [{ type: 'Ready', status: 'Maybe' }] } }))
      .toEqual(['status.podIP', 'status.podIPs[1].ip', 'status.conditions[0].status']);
  });
});

describe('validate: Node', () => {
  it('requires podCIDR to be a CIDR without host bits', () => {
    expect(problems(node({ podCIDR: '10.244.1.0/24' }))).toEqual([]);
    expect(problems(node({ podCIDR: '10.244.1.5/24' }))).toEqual(['spec.podCIDR: must be an IPv4 CIDR: "10.244.1.5/24" has host bits set (network is 10.244.1.0/24)']);
    expect(problemPaths(node({ podCIDR: '10.244.1.0' }))).toEqual(['spec.podCIDR']);
    expect(problemPaths(node({ podCIDR: '10.244.1.0/33' }))).toEqual(['spec.podCIDR']);
  });
  it('requires podCIDRs[0] to match podCIDR', () => {
    expect(problems(node({ podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] }))).toEqual([]);
    expect(problemPaths(node({ podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.2.0/24'] }))).toEqual(['spec.podCIDRs[0]']);
    expect(problemPaths(node({ podCIDRs: ['10.244.1.0/24', '10.244.2.0/24'] }))).toEqual(['spec.podCIDRs']);
  });
  it('checks status addresses', () => {
    const n = { ...node(), status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }, { type: 'Hostname', address: 'node-a' }, { type: 'ExternalIP', address: 'x' }, { type: 'Other', address: 'y' }] } };
    expect(problemPaths(n)).toEqual(['status.addresses[2].address', 'status.addresses[3].type']);
  });
});

describe('validate: Deployment', () => {
  it('requires replicas >= 0', () => {
    expect(problems(deployment({ replicas: 0 }))).toEqual([]);
    expect(problems(deployment({ replicas: -1 }))).toEqual(['spec.replicas: must be an integer >= 0, got -1']);
    expect(problems(deployment({ replicas: 1.5 }))).toEqual(['spec.replicas: must be an integer >= 0, got 1.5']);
  });
  it('requires a non-empty selector that matches the template labels', () => {
    expect(problems(deployment({ selector: undefined }))).toEqual(['spec.selector: required']);
    expect(problems(deployment({ selector: {} }))).toEqual(['spec.selector: must not be empty (a Deployment would select every pod of its namespace)']);
    expect(problems(deployment({ selector: { matchLabels: { app: 'api' } } }))).toEqual(['spec.template.metadata.labels: must match spec.selector']);
    expect(problems(deployment({ selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'api'] }] } }))).toEqual([]);
    expect(problems(deployment({ selector: { matchExpressions: [{ key: 'app', operator: 'In' }] } }))).toEqual(['spec.selector.matchExpressions[0].values: must be specified when operator is In']);
  });
  it('validates the pod template', () => {
    const d = deployment({ template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'a', ports: [{ containerPort: 0 }] }] } } });
    expect(problemPaths(d)).toEqual(['spec.template.spec.containers[0].ports[0].containerPort']);
    expect(problems(deployment({ template: undefined }))).toEqual(['spec.template: required']);
  });
  it('rejects one requested IP for several replicas', () => {
    const template = { metadata: { labels: { app: 'web' }, annotations: { 'weft.dev/ip': '10.244.1.9' } }, spec: { containers: [{ name: 'a' }] } };
    expect(problems(deployment({ template }))).toEqual(['spec.template.metadata.annotations[weft.dev/ip]: would give all 2 replicas the same address 10.244.1.9']);
    expect(problems(deployment({ template, replicas: 1 }))).toEqual([]);
  });
  it('leaves room for the pod index in the name', () => {
    expect(problemPaths(deployment({ replicas: 10 }, { name: 'a'.repeat(252) }))).toEqual(['metadata.name']);
  });
});

describe('validate: Service', () => {
  const svc = (spec: Record<string, unknown>) => problems(service(spec));
  it('requires ports except for ExternalName and headless services', () => {
    expect(svc({ ports: undefined })).toEqual(['spec.ports: required']);
    expect(svc({ ports: [] })).toEqual(['spec.ports: required']);
    expect(svc({ ports: undefined, clusterIP: 'None' })).toEqual([]);
    expect(svc({ ports: undefined, type: 'ExternalName', externalName: 'db.example.com.', selector: undefined })).toEqual([]);
    expect(problems({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' } })).toEqual(['spec.ports: required']);
  });
  it('checks ports, names and protocols', () => {
    expect(svc({ ports: [{ port: 70000 }] })).toEqual(['spec.ports[0].port: must be an integer 1-65535, got 70000']);
    expect(svc({ ports: [{ port: 80, protocol: 'ICMP' }] })).toEqual(['spec.ports[0].protocol: must be one of TCP, UDP, SCTP, got "ICMP"']);
    expect(svc({ ports: [{ port: 80, name: 'http' }, { port: 443 }] })).toEqual(['spec.ports[1].name: required when a Service has more than one port']);
    expect(svc({ ports: [{ port: 80, name: 'http' }, { port: 443, name: 'http' }] })).toEqual(['spec.ports[1].name: duplicate port name http (also at spec.ports[0].name)']);
    expect(svc({ ports: [{ port: 53, name: 'dns' }, { port: 53, name: 'dns-udp', protocol: 'UDP' }] })).toEqual([]);
    expect(svc({ ports: [{ port: 53, name: 'a' }, { port: 53, name: 'b' }] })).toEqual(['spec.ports[1].port: duplicate port 53/TCP (also at spec.ports[0].port)']);
    expect(problemPaths(service({ ports: [{ port: 80, name: 'Http' }] }))).toEqual(['spec.ports[0].name']);
  });
  it('accepts a numeric or IANA-named targetPort', () => {
    expect(svc({ ports: [{ port: 80, targetPort: 8080 }] })).toEqual([]);
    expect(svc({ ports: [{ port: 80, targetPort: 'http' }] })).toEqual([]);
    expect(svc({ ports: [{ port: 80, targetPort: 0 }] })).toEqual([]);
    expect(problemPaths(service({ ports: [{ port: 80, targetPort: 70000 }] }))).toEqual(['spec.ports[0].targetPort']);
    expect(svc({ ports: [{ port: 80, targetPort: '8080' }] })[0]).toMatch(/^spec.ports\[0\].targetPort: must be an IANA service name/);
    expect(svc({ ports: [{ port: 80, targetPort: true }] })).toEqual(['spec.ports[0].targetPort: must be an integer 1-65535 or a port name, got true']);
  });
  it('allows nodePort 30000-32767 only for NodePort and LoadBalancer', () => {
    expect(svc({ type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] })).toEqual([]);
    expect(svc({ type: 'LoadBalancer', ports: [{ port: 80, nodePort: 32767 }] })).toEqual([]);
    expect(svc({ type: 'NodePort', ports: [{ port: 80, nodePort: 8080 }] })).toEqual(['spec.ports[0].nodePort: must be an integer 30000-32767, got 8080']);
    expect(svc({ ports: [{ port: 80, nodePort: 30080 }] })).toEqual(['spec.ports[0].nodePort: may only be set when type is NodePort or LoadBalancer, not ClusterIP']);
    expect(svc({ type: 'NodePort', ports: [{ port: 80, nodePort: 30080, name: 'a' }, { port: 81, nodePort: 30080, name: 'b' }] }))
      .toEqual(['spec.ports[1].nodePort: duplicate node port 30080/TCP (also at spec.ports[0].nodePort)']);
  });
  it('checks type and clusterIP', () => {
    expect(svc({ type: 'Headless' })).toEqual(['spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Headless"']);
    expect(svc({ clusterIP: '10.96.0.10' })).toEqual([]);
    expect(svc({ clusterIP: '10.96.0.300' })).toEqual(['spec.clusterIP: must be "None" or an IPv4 address, got "10.96.0.300"']);
    expect(svc({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.11'] })).toEqual(['spec.clusterIPs[0]: must match spec.clusterIP "10.96.0.10", got "10.96.0.11"']);
    expect(svc({ type: 'NodePort', clusterIP: 'None' })).toEqual(['spec.clusterIP: may not be "None" for NodePort services']);
    expect(svc({ type: 'ExternalName', externalName: 'db', clusterIP: '10.96.0.1' })).toEqual(['spec.clusterIP: may not be set for ExternalName services']);
    expect(svc({ type: 'ExternalName' })).toEqual(['spec.externalName: required']);
    expect(problemPaths(service({ type: 'ExternalName', externalName: 'DB_host' }))).toEqual(['spec.externalName']);
  });
  it('checks externalIPs, loadBalancerIP and loadBalancerSourceRanges', () => {
    expect(svc({ externalIPs: ['192.168.100.7'] })).toEqual([]);
    expect(svc({ externalIPs: ['192.168.100'] })).toEqual(['spec.externalIPs[0]: must be an IPv4 address, got "192.168.100"']);
    expect(svc({ type: 'LoadBalancer', loadBalancerIP: '192.168.100.8', loadBalancerSourceRanges: ['10.0.0.0/8', '192.168.1.5/24'] })).toEqual([]);
    expect(problemPaths(service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/40', 'x'] }))).toEqual(['spec.loadBalancerSourceRanges[0]', 'spec.loadBalancerSourceRanges[1]']);
    expect(svc({ loadBalancerSourceRanges: ['10.0.0.0/8'] })).toEqual(['spec.loadBalancerSourceRanges: may only be set when type is LoadBalancer, not ClusterIP']);
    expect(svc({ loadBalancerIP: '192.168.100.8' })).toEqual(['spec.loadBalancerIP: may only be set when type is LoadBalancer, not ClusterIP']);
  });
  it('allows externalTrafficPolicy Local only for externally reachable services', () => {
    expect(svc({ type: 'NodePort', externalTrafficPolicy: 'Local' })).toEqual([]);
    expect(svc({ externalIPs: ['192.168.100.7'], externalTrafficPolicy: 'Local' })).toEqual([]);
    expect(svc({ externalTrafficPolicy: 'Cluster' })).toEqual([]);
    expect(svc({ externalTrafficPolicy: 'Local' })).toEqual(['spec.externalTrafficPolicy: may only be Local for NodePort and LoadBalancer services or with externalIPs, not ClusterIP']);
    expect(problemPaths(service({ externalTrafficPolicy: 'local', internalTrafficPolicy: 'Node' }))).toEqual(['spec.externalTrafficPolicy', 'spec.internalTrafficPolicy']);
    expect(svc({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 30999 })).toEqual([]);
    expect(svc({ type: 'NodePort', healthCheckNodePort: 30999 })).toEqual(['spec.healthCheckNodePort: may only be set when type is LoadBalancer and externalTrafficPolicy is Local']);
  });
  it('checks sessionAffinity and its timeout', () => {
    const cfg = (timeoutSeconds: unknown) => ({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds } } });
    expect(svc(cfg(1))).toEqual([]);
    expect(svc(cfg(86400))).toEqual([]);
    expect(svc(cfg(0))).toEqual(['spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be an integer 1-86400, got 0']);
    expect(svc(cfg(86401))).toEqual(['spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be an integer 1-86400, got 86401']);
    expect(svc({ sessionAffinity: 'Sticky' })).toEqual(['spec.sessionAffinity: must be one of None, ClientIP, got "Sticky"']);
    expect(svc({ sessionAffinityConfig: { clientIP: { timeoutSeconds: 10 } } })).toEqual(['spec.sessionAffinityConfig: may only be set when sessionAffinity is ClientIP']);
  });
  it('checks the selector as labels', () => {
    expect(problemPaths(service({ selector: { app: 'web app' } }))).toEqual(['spec.selector[app]']);
  });
});

describe('validate: EndpointSlice', () => {
  it('requires the kubernetes.io/service-name label', () => {
    expect(problems(endpointSlice({}, {}))).toEqual(['metadata.labels[kubernetes.io/service-name]: required: names the Service this slice belongs to']);
    expect(problemPaths(endpointSlice({}, { 'kubernetes.io/service-name': '1web' }))).toEqual(['metadata.labels[kubernetes.io/service-name]']);
  });
  it('checks addressType and addresses', () => {
    expect(problems(endpointSlice({ addressType: 'IPv5' }))).toEqual(['addressType: must be one of IPv4, IPv6, FQDN, got "IPv5"']);
    expect(problems(endpointSlice({ addressType: undefined }))).toEqual(['addressType: required']);
    expect(problems(endpointSlice({ endpoints: [{ addresses: ['10.244.1.300'] }] }))).toEqual(['endpoints[0].addresses[0]: must be an IPv4 address, got "10.244.1.300"']);
    expect(problems(endpointSlice({ endpoints: [{ addresses: [] }] }))).toEqual(['endpoints[0].addresses: must have 1-100 entries, got 0']);
    expect(problems(endpointSlice({ addressType: 'FQDN', endpoints: [{ addresses: ['db.example.com'] }] }))).toEqual([]);
    expect(problemPaths(endpointSlice({ addressType: 'FQDN', endpoints: [{ addresses: ['10.0.0.1', 'Bad_Name'] }] }))).toEqual(['endpoints[0].addresses[1]']);
    expect(problems(endpointSlice({ addressType: 'IPv6', endpoints: [{ addresses: ['fd00::1'] }] }))).toEqual([]);
    expect(problems(endpointSlice({ endpoints: undefined }))).toEqual([]);
  });
  it('checks endpoint fields and ports', () => {
    const e = endpointSlice({
      endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: 'yes' }, nodeName: 'Node_A', hostname: 'a.b', targetRef: { kind: 3 } }],
      ports: [{ name: 'http', port: 0 }, { name: 'http', protocol: 'UDP', port: 53 }, { name: 'Bad', port: 1 }],
    });
    expect(problemPaths(e)).toEqual([
      'endpoints[0].conditions.ready', 'endpoints[0].hostname', 'endpoints[0].nodeName', 'endpoints[0].targetRef.kind',
      'ports[0].port', 'ports[2].name', 'ports[1].name',
    ]);
  });
});

describe('validate: NetworkPolicy', () => {
  const np = (spec: Record<string, unknown>) => problems(networkPolicy(spec));
  const ingressFrom = (peer: unknown) => np({ ingress: [{ from: [peer] }] });
  const egressPort = (port: unknown) => np({ egress: [{ ports: [port] }] });
  it('accepts the usual shapes', () => {
    expect(np({ ingress: [{}] })).toEqual([]);
    expect(ingressFrom({ podSelector: {} })).toEqual([]);
    expect(ingressFrom({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'prod' } }, podSelector: { matchLabels: { app: 'web' } } })).toEqual([]);
    expect(np({ policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }], ports: [{ port: 53, protocol: 'UDP' }] }] })).toEqual([]);
    expect(problems({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'x' } })).toEqual([]);
  });
  it('checks policyTypes', () => {
    expect(np({ policyTypes: ['Ingress', 'Egress'] })).toEqual([]);
    expect(np({ policyTypes: ['ingress'] })).toEqual(['spec.policyTypes[0]: must be one of Ingress, Egress, got "ingress"']);
    expect(np({ policyTypes: ['Ingress', 'Egress', 'Ingress'] })).toEqual(['spec.policyTypes: must have at most 2 entries, got 3']);
  });
  it('checks peers', () => {
    expect(ingressFrom({})).toEqual(['spec.ingress[0].from[0]: must specify a peer (podSelector, namespaceSelector or ipBlock)']);
    expect(ingressFrom({ podSelector: {}, ipBlock: { cidr: '10.0.0.0/8' } })).toEqual(['spec.ingress[0].from[0]: may not specify both ipBlock and another peer']);
    expect(np({ egress: [{ to: [{ namespaceSelector: { matchLabels: { 'a b': 'x' } } }] }] })).toHaveLength(1);
  });
  it('checks ipBlock cidr and except', () => {
    expect(ingressFrom({ ipBlock: {} })).toEqual(['spec.ingress[0].from[0].ipBlock.cidr: required']);
    expect(problemPaths(networkPolicy({ ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }] }))).toEqual(['spec.ingress[0].from[0].ipBlock.cidr']);
    expect(ingressFrom({ ipBlock: { cidr: '10.0.0.1/8' } })).toEqual([]);
    expect(ingressFrom({ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } })).toEqual(['spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/8, got "11.0.0.0/16"']);
    expect(ingressFrom({ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.0.0/8'] } })).toHaveLength(1);
    expect(ingressFrom({ ipBlock: { cidr: '10.0.0.0/16', except: ['10.0.0.0/8'] } })).toHaveLength(1);
    expect(problemPaths(networkPolicy({ ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['x'] } }] }] }))).toEqual(['spec.ingress[0].from[0].ipBlock.except[0]']);
  });
  it('checks ports and endPort', () => {
    expect(egressPort({})).toEqual([]);
    expect(egressPort({ port: 'dns', protocol: 'UDP' })).toEqual([]);
    expect(egressPort({ port: 32000, endPort: 32768 })).toEqual([]);
    expect(egressPort({ port: 80, endPort: 80 })).toEqual([]);
    expect(egressPort({ protocol: 'ICMP' })).toEqual(['spec.egress[0].ports[0].protocol: must be one of TCP, UDP, SCTP, got "ICMP"']);
    expect(egressPort({ port: 0 })).toEqual(['spec.egress[0].ports[0].port: must be an integer 1-65535, got 0']);
    expect(egressPort({ port: 'Web_Port' })[0]).toMatch(/^spec.egress\[0\].ports\[0\].port: must be an IANA service name/);
    expect(egressPort({ port: [80] })).toEqual(['spec.egress[0].ports[0].port: must be an integer 1-65535 or a port name, got [80]']);
    expect(egressPort({ endPort: 90 })).toEqual(['spec.egress[0].ports[0].endPort: may not be set without port']);
    expect(egressPort({ port: 'http', endPort: 90 })).toEqual(['spec.egress[0].ports[0].endPort: may not be set when port is a named port']);
    expect(egressPort({ port: 100, endPort: 90 })).toEqual(['spec.egress[0].ports[0].endPort: must be greater than or equal to port 100, got 90']);
    expect(egressPort({ port: 100, endPort: 70000 })).toEqual(['spec.egress[0].ports[0].endPort: must be an integer 1-65535, got 70000']);
  });
  it('checks selectors: operators and values', () => {
    const sel = (expr: unknown) => np({ podSelector: { matchExpressions: [expr] } });
    expect(sel({ key: 'app', operator: 'In', values: ['a'] })).toEqual([]);
    expect(sel({ key: 'app', operator: 'Exists' })).toEqual([]);
    expect(sel({ key: 'app', operator: 'NotIn', values: [] })).toEqual(['spec.podSelector.matchExpressions[0].values: must be specified when operator is NotIn']);
    expect(sel({ key: 'app', operator: 'DoesNotExist', values: ['a'] })).toEqual(['spec.podSelector.matchExpressions[0].values: may not be specified when operator is DoesNotExist']);
    expect(sel({ key: 'app', operator: 'Equals', values: ['a'] })).toEqual(['spec.podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, got "Equals"']);
    expect(sel({ operator: 'Exists' })).toEqual(['spec.podSelector.matchExpressions[0].key: required']);
    expect(problemPaths(networkPolicy({ podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['a b'] }] } }))).toEqual(['spec.podSelector.matchExpressions[0].values[0]']);
    expect(problemPaths(networkPolicy({ podSelector: { matchLabels: { app: 1 } } }))).toEqual(['spec.podSelector.matchLabels[app]']);
  });
});

describe('validate: LabHost', () => {
  it('checks ip and ports', () => {
    expect(problems(labHost({ ip: '192.168.100.9', ports: [{ containerPort: 80, name: 'http' }, { containerPort: 53, protocol: 'UDP' }] }))).toEqual([]);
    expect(problems(labHost({ ip: '192.168.100' }))).toEqual(['spec.ip: must be an IPv4 address, got "192.168.100"']);
    expect(problemPaths(labHost({ ports: [{ containerPort: 80 }, { containerPort: 80 }, { containerPort: 99999 }] }))).toEqual(['spec.ports[2].containerPort', 'spec.ports[1].containerPort']);
    expect(problems(labHost())).toEqual([]);
  });
});

describe('validate never throws', () => {
  it('on arbitrary shapes', () => {
    const shapes: unknown[] = [null, 1, 'x', [], { kind: 1 }, { apiVersion: 'v1', kind: 'Pod', metadata: 'x', spec: [] },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: { ports: [null, 1, { port: null }] } },
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: null, spec: { template: { metadata: 'x', spec: null } } },
      { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'a' }, spec: { ingress: [{ from: 'x', ports: [1] }], egress: 1 } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'a', labels: 'x' }, endpoints: [{ addresses: 'x' }] }];
    for (const s of shapes) expect(() => validate(s)).not.toThrow();
    expect(validate({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: { ports: [null, 1, { port: null }] } }).map((p) => p.path))
      .toEqual(['spec.ports[0]', 'spec.ports[1]', 'spec.ports[2].name', 'spec.ports[2].port']);
  });
});

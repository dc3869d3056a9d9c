// Builders of minimal valid cluster objects (as decoded YAML: plain, untyped) and a view of
// validation problems as "path: message" lines, for the model tests.
import { validate } from '../../mesh-control/model/validate.ts';

type Fields = Record<string, unknown>;

export function pod(spec: Fields = {}, metadata: Fields = {}): Fields {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-0', ...metadata }, spec: { containers: [{ name: 'app', image: 'agnhost' }], ...spec } };
}

export function service(spec: Fields = {}, metadata: Fields = {}): Fields {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', ...metadata }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }], ...spec } };
}

export function deployment(spec: Fields = {}, metadata: Fields = {}): Fields {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', ...metadata },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'app', ports: [{ containerPort: 8080, name: 'http' }] }] } },
      ...spec,
    },
  };
}

export function endpointSlice(fields: Fields = {}, labels: Fields = { 'kubernetes.io/service-name': 'web' }): Fields {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc', labels },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080 }],
    ...fields,
  };
}

export function networkPolicy(spec: Fields = {}): Fields {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'deny' }, spec: { podSelector: {}, ...spec } };
}

export function node(spec: Fields = {}, name = 'node-a'): Fields {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec };
}

export function labHost(spec: Fields = {}): Fields {
  return { apiVersion: 'weft.dev/v1alpha1', kind: 'LabHost', metadata: { name: 'outside' }, spec };
}

/** Validation problems as "path: message" lines. */
export function problems(obj: unknown): string[] {
  return validate(obj).map((p) => `${p.path}: ${p.message}`);
}

/** The paths that have problems. */
export function problemPaths(obj: unknown): string[] {
  return validate(obj).map((p) => p.path);
}

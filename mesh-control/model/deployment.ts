// Deployments become pods. weft has no rollouts or ReplicaSets: a Deployment is a count of
// identical pods, so pods are named `<deployment>-<index>` (index 0..replicas-1) rather than
// Kubernetes' `<deployment>-<template-hash>-<random>`. The names are deterministic (the lab derives
// network namespace names from them and reruns find the same pods), readable in logs, and scaling
// down removes the highest indexes, as a StatefulSet does.
import { applyDefaults } from './defaults.ts';
import { deploymentPodName } from './objects.ts';
import type { Deployment, Pod } from './types.ts';

/** Annotation on each expanded pod naming the Deployment (same namespace) that owns it. */
export const DEPLOYMENT_ANNOTATION = 'weft.dev/deployment';

export function expandDeployment(d: Deployment): Pod[] {
  const template = d.spec.template;
  const pods: Pod[] = [];
  for (let i = 0; i < (d.spec.replicas ?? 1); i++) {
    pods.push(applyDefaults({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: deploymentPodName(d.metadata.name, i),
        namespace: d.metadata.namespace,
        labels: { ...template.metadata?.labels },
        annotations: { ...template.metadata?.annotations, [DEPLOYMENT_ANNOTATION]: d.metadata.name },
      },
      spec: structuredClone(template.spec),
    }));
  }
  return pods;
}

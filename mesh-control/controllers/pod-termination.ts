// Graceful deletion of Pods, as the API server does it (the pod strategy's CheckGracefulDelete and
// BeforeDelete): deleting a Pod sets metadata.deletionTimestamp to the time by which it must be
// gone (now + grace period) and deletionGracePeriodSeconds, and leaves the object in place,
// terminating, so its endpoints turn ready:false/serving:true/terminating:true while its kubelet
// drains and stops it; the kubelet then removes the object (a delete with grace period 0). A
// second delete may shorten the deadline, never extend it. A pod no kubelet runs (not scheduled,
// or finished) goes at once. Nothing else removes a terminating pod but the control service itself,
// once nobody can be running it any more: at its deadline when its node is gone, and
// KUBELET_REPORT_SECONDS after it otherwise (a kubelet that went away with its Node left in place).
import { ControlError, isControlError } from '../errors.ts';
import type { ClusterObject, ObjectMeta, Pod } from '../model/types.ts';
import type { ObjectStore } from '../store/types.ts';

/** Kubernetes' default spec.terminationGracePeriodSeconds. */
export const DEFAULT_GRACE_SECONDS = 30;
/** How long past its deadline a terminating pod waits for its kubelet's report. */
export const KUBELET_REPORT_SECONDS = 30;

export type DeletionPlan = { action: 'remove' } | { action: 'terminate'; object: Pod } | { action: 'keep' };

/**
 * What deleting `o` at `now` (ms) does: remove it, store it terminating, or keep it as it is (a
 * terminating pod whose deadline is already as early). `gracePeriodSeconds` absent: the pod's own.
 */
export function planDeletion(o: ClusterObject, now: number, gracePeriodSeconds?: number): DeletionPlan {
  if (o.kind !== 'Pod') return { action: 'remove' };
  const grace = gracePeriodSeconds ?? o.spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  const phase = o.status?.phase;
  if (grace <= 0 || !o.spec.nodeName || phase === 'Succeeded' || phase === 'Failed') return { action: 'remove' };
  const deadline = now + grace * 1000;
  const current = o.metadata.deletionTimestamp === undefined ? undefined : Date.parse(o.metadata.deletionTimestamp);
  if (current !== undefined && current <= deadline) return { action: 'keep' };
  const metadata: ObjectMeta = { ...o.metadata, deletionTimestamp: new Date(deadline).toISOString(), deletionGracePeriodSeconds: grace };
  return { action: 'terminate', object: { ...o, metadata } };
}

/** When the control service removes a terminating pod itself (ms), or undefined when it is not terminating. */
export function expiresAt(pod: Pod, nodeExists: boolean): number | undefined {
  if (pod.metadata.deletionTimestamp === undefined) return undefined;
  const deadline = Date.parse(pod.metadata.deletionTimestamp);
  return nodeExists && pod.spec.nodeName ? deadline + KUBELET_REPORT_SECONDS * 1000 : deadline;
}

/**
 * Deletes `key` the way planDeletion says; returns the object as it is now (terminating) or as it
 * was (removed), or undefined when there was none. Retries when a writer came in between.
 */
export async function deleteGracefully(store: ObjectStore, key: string, gracePeriodSeconds?: number): Promise<ClusterObject | undefined> {
  for (let attempt = 0; ; attempt++) {
    const current = store.get(key);
    if (current === undefined) return undefined;
    const plan = planDeletion(current, Date.now(), gracePeriodSeconds);
    if (plan.action === 'keep') return current;
    const expectRevision = Number(current.metadata.resourceVersion);
    try {
      if (plan.action === 'remove') return (await store.delete(key, { expectRevision })) ?? current;
      return await store.put(plan.object, { expectRevision });
    } catch (err) {
      if (!isControlError(err, 'WEFT_CONTROL_CONFLICT')) throw err;
      if (attempt >= 5) throw new ControlError('WEFT_CONTROL_CONFLICT', `failed to delete ${key}: still conflicting with other writers after ${attempt + 1} attempts`);
    }
  }
}

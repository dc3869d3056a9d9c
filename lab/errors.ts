// Coded errors of the lab (a cluster of network namespaces on this machine).

export type LabErrorCode =
  | 'WEFT_LAB_NOT_UP' // no lab state at the lab directory
  | 'WEFT_LAB_COMMAND' // a kernel command (ip, nft) failed
  | 'WEFT_LAB_PLAN' // manifests the lab cannot build (unknown node, bad LabHost address, ...)
  | 'WEFT_LAB_CNI' // the CNI plugin refused a pod
  | 'WEFT_LAB_PROCESS' // a node agent or pod server did not start
  | 'WEFT_LAB_TARGET' // a probe/exec endpoint names nothing in the lab
  | 'WEFT_LAB_NODE'; // node add/remove of an existing/unknown node

export class LabError extends Error {
  override name = 'LabError';
  constructor(readonly code: LabErrorCode, message: string) {
    super(message);
  }
}

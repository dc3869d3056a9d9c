// Coded errors of the node network (the node's routes to other nodes' pod subnets).

export type NodeNetworkErrorCode =
  | 'WEFT_NODENET_COMMAND' // an ip/bridge/nft command failed
  | 'WEFT_NODENET_LEASE'; // the node's subnet lease could not be acquired or renewed

export class NodeNetworkError extends Error {
  override name = 'NodeNetworkError';
  constructor(readonly code: NodeNetworkErrorCode, message: string) {
    super(message);
  }
}

// Coded errors of the node subnet leases. Codes are stable API: callers (the node agent, the CNI
// plugin, `weft` commands) branch on `code`, people read `message`.

interface Templates {
  WEFT_LEASE_INVALID_CONFIG: { what: string; value: string; cause: string };
  WEFT_LEASE_INVALID_NODE: { node: string };
  WEFT_LEASE_POD_CIDR_INVALID: { node: string; podCIDR: string; cause: string };
  WEFT_LEASE_SUBNET_TAKEN: { node: string; subnet: string; holder: string };
  WEFT_LEASE_SUBNET_MISMATCH: { node: string; subnet: string; podCIDR: string };
  WEFT_LEASE_EXHAUSTED: { node: string; clusterCIDR: string; nodeMask: number; count: number };
  WEFT_LEASE_NOT_FOUND: { verb: string; node: string };
  WEFT_LEASE_OWNER_MISMATCH: { verb: string; node: string; owner: string; holder: string };
  WEFT_LEASE_CONFLICT: { verb: string; node: string; cause: string };
  WEFT_LEASE_CONTENDED: { verb: string; node: string; attempts: number };
  WEFT_LEASE_STORE_BUSY: { dir: string; holder: string; waitedMs: number };
  WEFT_LEASE_STORE_IO: { verb: string; path: string; cause: string };
  WEFT_LEASE_CORRUPT: { path: string; cause: string };
  WEFT_LEASE_ETCD_UNAVAILABLE: { verb: string; endpoints: string; cause: string };
  WEFT_LEASE_ETCD_REQUEST: { verb: string; endpoint: string; cause: string };
}

export type LeaseErrorCode = keyof Templates;

const templates: { [C in LeaseErrorCode]: (p: Templates[C]) => string } = {
  WEFT_LEASE_INVALID_CONFIG: (p) => `invalid lease ${p.what} "${p.value}": ${p.cause}`,
  WEFT_LEASE_INVALID_NODE: (p) =>
    `invalid node name "${p.node}": must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)`,
  WEFT_LEASE_POD_CIDR_INVALID: (p) => `failed to acquire podCIDR ${p.podCIDR} for node ${p.node}: ${p.cause}`,
  WEFT_LEASE_SUBNET_TAKEN: (p) => `failed to acquire subnet ${p.subnet} for node ${p.node}: held by node ${p.holder}`,
  WEFT_LEASE_SUBNET_MISMATCH: (p) =>
    `failed to acquire podCIDR ${p.podCIDR} for node ${p.node}: the node already holds ${p.subnet} (release it first)`,
  WEFT_LEASE_EXHAUSTED: (p) =>
    `failed to acquire a subnet for node ${p.node}: cluster CIDR ${p.clusterCIDR} is exhausted (all ${p.count} /${p.nodeMask} subnets are leased)`,
  WEFT_LEASE_NOT_FOUND: (p) => `failed to ${p.verb} lease of node ${p.node}: no such lease`,
  WEFT_LEASE_OWNER_MISMATCH: (p) =>
    `failed to ${p.verb} lease of node ${p.node} as owner ${p.owner}: held by owner ${p.holder}`,
  WEFT_LEASE_CONFLICT: (p) => `failed to ${p.verb} lease of node ${p.node}: ${p.cause}`,
  WEFT_LEASE_CONTENDED: (p) =>
    `failed to ${p.verb} lease of node ${p.node}: still conflicting with other writers after ${p.attempts} attempts`,
  WEFT_LEASE_STORE_BUSY: (p) =>
    `failed to lock lease store ${p.dir}: still held by ${p.holder} after ${p.waitedMs} ms`,
  WEFT_LEASE_STORE_IO: (p) => `failed to ${p.verb} ${p.path}: ${p.cause}`,
  WEFT_LEASE_CORRUPT: (p) => `failed to read lease record ${p.path}: ${p.cause}`,
  WEFT_LEASE_ETCD_UNAVAILABLE: (p) => `failed to ${p.verb} on etcd (tried ${p.endpoints}): ${p.cause}`,
  WEFT_LEASE_ETCD_REQUEST: (p) => `failed to ${p.verb} on etcd ${p.endpoint}: ${p.cause}`,
};

export class LeaseError extends Error {
  override readonly name = 'LeaseError';
  readonly code: LeaseErrorCode;
  /** Set when an etcd watch was refused because its start revision is compacted: the oldest one etcd keeps. */
  compactRevision?: number;

  constructor(code: LeaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function leaseError<C extends LeaseErrorCode>(code: C, params: Templates[C], cause?: unknown): LeaseError {
  return new LeaseError(code, templates[code](params), cause === undefined ? undefined : { cause });
}

export function isLeaseError(err: unknown, code?: LeaseErrorCode): err is LeaseError {
  return err instanceof LeaseError && (code === undefined || err.code === code);
}

/** The short cause text of a thrown value, for messages. */
export function causeText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.startsWith(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

// Every error the service proxy reports, with its stable name. Messages name verb, object and cause.

export const PROXY_ERRORS = {
  WEFT_PROXY_INVALID_CONFIG: 'a proxy or allocator option has an invalid value',
  WEFT_PROXY_IP_NOT_IN_RANGE: 'a requested clusterIP is outside the service CIDR',
  WEFT_PROXY_IP_ALLOCATED: 'a requested clusterIP is already allocated to another service',
  WEFT_PROXY_IP_RANGE_FULL: 'every address of the service CIDR is allocated',
  WEFT_PROXY_PORT_NOT_IN_RANGE: 'a requested nodePort is outside the node port range',
  WEFT_PROXY_PORT_ALLOCATED: 'a requested nodePort is already allocated to another service',
  WEFT_PROXY_PORT_RANGE_FULL: 'every port of the node port range is allocated',
  WEFT_PROXY_APPLY_FAILED: 'iptables-restore or nft rejected a ruleset',
} as const;

export type ProxyErrorName = keyof typeof PROXY_ERRORS;

export class ProxyError extends Error {
  constructor(readonly code: ProxyErrorName, message: string) {
    super(message);
    this.name = 'ProxyError';
  }
}

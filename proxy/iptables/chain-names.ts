// Chain names as kube-proxy derives them (pkg/proxy/iptables/proxier.go), under a configurable
// prefix: per-service-port chains are PREFIX-{SVC,SVL,EXT,FW}-<hash>, per-endpoint chains
// PREFIX-SEP-<hash>, the hash being base32(sha256(portName + protocol [+ endpoint]))[:16]; hashing
// keeps names under iptables' 28-character limit.
import { base32Sha256 } from '../hash-name.ts';

export function hash16(text: string): string {
  return base32Sha256(text, 16);
}

export interface TopLevelChains {
  services: string;
  externalServices: string;
  nodePorts: string;
  postrouting: string;
  markMasq: string;
  forward: string;
  proxyFirewall: string;
  canary: string;
}

export function topLevelChains(prefix: string): TopLevelChains {
  return {
    services: `${prefix}-SERVICES`,
    externalServices: `${prefix}-EXTERNAL-SERVICES`,
    nodePorts: `${prefix}-NODEPORTS`,
    postrouting: `${prefix}-POSTROUTING`,
    markMasq: `${prefix}-MARK-MASQ`,
    forward: `${prefix}-FORWARD`,
    proxyFirewall: `${prefix}-PROXY-FIREWALL`,
    canary: `${prefix}-PROXY-CANARY`,
  };
}

/** The per-service chain kinds; a chain whose name starts with PREFIX-<kind>- belongs to one service port. */
export const SERVICE_CHAIN_KINDS = ['SVC', 'SVL', 'EXT', 'FW', 'SEP'] as const;

export function isServiceChain(prefix: string, chain: string): boolean {
  return SERVICE_CHAIN_KINDS.some((k) => chain.startsWith(`${prefix}-${k}-`));
}

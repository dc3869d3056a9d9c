// `ip -b` batch scripts for one attachment. Pure: the applier runs them and maps a failed line
// back to the command that failed (ip stops a batch at its first error).

export interface NodeSide {
  bridge: string;
  /** Gateway address with prefix, e.g. 10.244.1.1/24. */
  gatewayCidr: string;
  hostVeth: string;
  hostMac: string;
  ifname: string;
  mtu: number;
  netnsPath: string;
}

export interface PodSide {
  ifname: string;
  /** Pod address with prefix. */
  address: string;
  mac: string;
  gateway: string;
}

export function renderBridgeCreate(bridge: string, mac: string): string[] {
  return [`link add ${bridge} address ${mac} type bridge`];
}

/** Bridge address and state (idempotent), then the veth pair with its pod end created directly in the pod netns. */
export function renderNodeSide(n: NodeSide): string[] {
  return [
    `addr replace ${n.gatewayCidr} dev ${n.bridge}`,
    `link set ${n.bridge} up`,
    `link add ${n.hostVeth} mtu ${n.mtu} address ${n.hostMac} type veth peer name ${n.ifname} mtu ${n.mtu} netns ${n.netnsPath}`,
    `link set ${n.hostVeth} master ${n.bridge} up`,
    // A pod reaching itself through a service or hostPort DNAT goes back out its own port.
    `link set ${n.hostVeth} type bridge_slave hairpin on`,
  ];
}

/** Index (0-based) of the veth creation in renderNodeSide: lines after it mean the veth exists. */
export const VETH_CREATE_LINE = 2;

export function renderPodSide(p: PodSide): string[] {
  return [
    `addr add ${p.address} dev ${p.ifname}`,
    `link set ${p.ifname} address ${p.mac} up`,
    `route add default via ${p.gateway} dev ${p.ifname}`,
  ];
}

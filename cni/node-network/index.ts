// The node's side of the flat pod network, run inside the node's namespace by the long-lived node
// process: holds and renews this node's subnet lease (publishing its underlay address and VTEP MAC,
// as flannel publishes PublicIP/BackendData), watches every lease, and level-triggered keeps one
// route per other node (host-gw: via its underlay address; vxlan: through the weft.1 VTEP) plus the
// node's one masquerade rule.
import { createSubnetAllocator, type LeaseSource, openLeaseStore, type SubnetAllocator } from '../../mesh-control/leases/index.ts';
import { NodeNetworkError } from './errors.ts';
import { applyBatch, applyMasquerade, type CommandRunner, enableForwarding, ensureVxlanDevice, observeNodeRoutes, runCommand } from './kernel.ts';
import { type Backend, type NodeLease, renderBatch, renderMasquerade, renderNodeRoutes, vtepAddress, vtepMAC } from './render.ts';

export interface NodeNetworkConfig {
  node: string;
  leaseSource: LeaseSource;
  clusterCIDR: string;
  /** Prefix length of node subnets, for a lease this node does not hold yet (default 24). */
  nodeMask?: number;
  backend: Backend;
  /** The node's interface on the underlay and its address there. */
  underlayDevice: string;
  underlayIP: string;
  /** Lease owner identity (default: the node name). */
  owner?: string;
  /** Full resync period, catching anything a watch missed (default 10 s). */
  resyncMs?: number;
  /** Lease renewal period (default 10 s). */
  renewMs?: number;
}

export interface NodeNetworkDeps {
  allocator?: SubnetAllocator;
  runner?: CommandRunner;
  log?: (message: string) => void;
}

export interface NodeNetwork {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The node's pod subnet, once started. */
  readonly subnet: string | undefined;
}

export function createNodeNetwork(config: NodeNetworkConfig, deps: NodeNetworkDeps = {}): NodeNetwork {
  const runner = deps.runner ?? runCommand;
  const log = deps.log ?? ((m: string) => process.stderr.write(`weft node-network: ${m}\n`));
  const owner = config.owner ?? config.node;
  const mac = vtepMAC(config.underlayIP);
  const attrs = { underlayIP: config.underlayIP, ...(config.backend === 'vxlan' ? { vtepMAC: mac } : {}) };
  let subnet: string | undefined;
  let leases: NodeLease[] = [];
  let unwatch: (() => void) | undefined;
  const timers: NodeJS.Timeout[] = [];
  let syncing: Promise<void> | undefined;
  let dirty = false;
  let stopped = false;

  async function acquire(a: SubnetAllocator): Promise<string> {
    try {
      const lease = await a.acquire(config.node, { owner, attrs });
      return lease.subnet;
    } catch (err) {
      throw new NodeNetworkError('WEFT_NODENET_LEASE', `failed to acquire subnet lease for node ${config.node}: ${(err as Error).message}`);
    }
  }

  // Level-triggered: every sync renders from the whole lease list and diffs against the kernel.
  async function syncOnce(): Promise<void> {
    const desired = renderNodeRoutes({ self: config.node, leases, backend: config.backend, clusterCIDR: config.clusterCIDR, underlayDevice: config.underlayDevice });
    const observed = await observeNodeRoutes(runner, config.backend);
    await applyBatch(runner, renderBatch(desired, observed));
  }

  function requestSync(): Promise<void> {
    dirty = true;
    if (syncing) return syncing;
    syncing = (async () => {
      while (dirty && !stopped) {
        dirty = false;
        try {
          await syncOnce();
        } catch (err) {
          log((err as Error).message);
        }
      }
    })().finally(() => { syncing = undefined; });
    return syncing;
  }

  async function renew(a: SubnetAllocator): Promise<void> {
    try {
      await a.renew(config.node, owner);
    } catch (err) {
      log(`failed to renew subnet lease for node ${config.node}: ${(err as Error).message}; acquiring again`);
      subnet = await acquire(a).catch((e: Error) => { log(e.message); return subnet; });
    }
  }

  return {
    get subnet() { return subnet; },
    async start() {
      const a = deps.allocator ?? createSubnetAllocator(openLeaseStore(config.leaseSource), { clusterCIDR: config.clusterCIDR, nodeMask: config.nodeMask ?? 24 });
      subnet = await acquire(a);
      await enableForwarding();
      if (config.backend === 'vxlan') {
        await ensureVxlanDevice(runner, { underlayDevice: config.underlayDevice, underlayIP: config.underlayIP, mac, address: vtepAddress(subnet) });
      }
      await applyMasquerade(runner, renderMasquerade(subnet, config.clusterCIDR));
      leases = await a.list();
      await syncOnce();
      unwatch = a.watch((current) => { leases = current; void requestSync(); });
      timers.push(setInterval(() => { void a.list().then((l) => { leases = l; return requestSync(); }, (e: Error) => log(e.message)); }, config.resyncMs ?? 10_000));
      timers.push(setInterval(() => { void renew(a); }, config.renewMs ?? 10_000));
    },
    // Leaves routes and the lease in place (fail static): a restarted node process picks them up.
    async stop() {
      stopped = true;
      unwatch?.();
      for (const t of timers) clearInterval(t);
      await syncing;
    },
  };
}

// `weft lab ...`: a cluster on this machine in network namespaces.
import { spawn } from 'node:child_process';
import { choiceFlag, intFlag, parseArgs, type ParsedArgs, UsageError } from '../cli/args.ts';
import { parseCidr } from '../mesh-control/model/cidr.ts';
import { loadManifests } from '../mesh-control/model/parse.ts';
import { type DeleteKind, labApply, labDelete } from './apply.ts';
import { listObjects } from './control.ts';
import { LabError } from './errors.ts';
import { formatLoad, formatMatrix, formatStatus, serviceRows } from './format.ts';
import { labDown, labNodeAdd, labNodeRemove, labUp } from './lab.ts';
import { runKubelet } from './kubelet.ts';
import { labDirFromEnv, labLayout } from './layout.ts';
import { type LoadProbeResult, probe, probeMatrix, type ProbeResult } from './probe.ts';
import { loadState, type LabState } from './state.ts';
import type { Service } from '../mesh-control/model/types.ts';
import { resolveEndpoint } from './targets.ts';

const USAGE = `usage: weft lab <command> [flags]   (lab directory: $WEFT_LAB_DIR, default /run/weft/lab)

  up --nodes N [--cluster-cidr CIDR] [--node-mask BITS] [--underlay l2|routed] [--proxy-mode nftables|iptables]
     [--service-cidr CIDR] -f FILE_OR_DIR
  status [--output json]
  probe --from NS/POD|host/NAME|node/NAME --to NS/POD|host/NAME|node/NAME|NS/SERVICE|svc/NS/SERVICE|IP
        [--port P] [--protocol TCP|UDP] [--timeout-ms MS] [--source-port P (UDP)]
        [--count N [--concurrency C] [--keep-alive] [--duration-ms MS]] [--output json]
  probe --matrix --port P [--protocol TCP|UDP] [--timeout-ms MS] [--output json]
  apply -f FILE_OR_DIR
  delete pod|deployment|service NS/NAME
  exec NS/POD|host/NAME|node/NAME -- CMD [ARGS]
  node add NAME | node remove NAME
  down
`;

const out = (text: string) => process.stdout.write(text);
const json = (v: unknown) => out(JSON.stringify(v, null, 2) + '\n');

function wantsJSON(args: ParsedArgs): boolean {
  return choiceFlag(args, 'output', ['json', 'table'] as const, 'table') === 'json';
}

function cidrFlag(args: ParsedArgs, name: string, fallback: string): string {
  const text = args.flags.get(name) ?? fallback;
  try {
    parseCidr(text);
  } catch (err) {
    throw new UsageError(`flag --${name}: ${(err as Error).message}`);
  }
  return text;
}

async function up(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['nodes', 'cluster-cidr', 'node-mask', 'underlay', 'proxy-mode', 'service-cidr', 'file', 'output'], aliases: { f: 'file', o: 'output' } });
  const file = args.flags.get('file');
  if (!file) throw new UsageError('lab up: flag -f FILE_OR_DIR is required');
  const nodeMask = intFlag(args, 'node-mask', 24, 8, 30);
  const clusterCIDR = cidrFlag(args, 'cluster-cidr', '10.244.0.0/16');
  if (parseCidr(clusterCIDR).prefix > nodeMask) throw new UsageError(`flag --node-mask: /${nodeMask} subnets do not fit in ${clusterCIDR}`);
  const objects = await loadManifests(file);
  const state = await labUp({
    dir: labDirFromEnv(),
    nodes: intFlag(args, 'nodes', 1, 1, 89),
    clusterCIDR,
    nodeMask,
    underlay: choiceFlag(args, 'underlay', ['l2', 'routed'] as const, 'l2'),
    proxyMode: choiceFlag(args, 'proxy-mode', ['nftables', 'iptables'] as const, 'nftables'),
    serviceCIDR: cidrFlag(args, 'service-cidr', '10.96.0.0/16'),
    objects,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (wantsJSON(args)) json(statusJSON(state));
  else out(formatStatus(state));
  return 0;
}

/** The lab's state with Services as mesh-control holds them now (`weft apply` may have added some). */
async function liveState(): Promise<LabState> {
  const layout = labLayout(labDirFromEnv());
  const state = await loadState(layout);
  state.services = await listObjects<Service>(layout, 'Service');
  return state;
}

function statusJSON(state: LabState) {
  return {
    nodes: state.nodes.map((n) => ({ name: n.name, podCIDR: n.podCIDR, address: n.address })),
    pods: state.pods.map((p) => ({ namespace: p.namespace, name: p.name, node: p.node, ip: p.ip, ports: p.ports })),
    hosts: state.hosts.map((h) => ({ name: h.name, ip: h.ip })),
    proxyMode: state.proxyMode,
    services: serviceRows(state),
  };
}

async function status(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['output'], aliases: { o: 'output' } });
  const state = await liveState();
  if (wantsJSON(args)) json(statusJSON(state));
  else out(formatStatus(state));
  return 0;
}

async function probeCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    values: ['from', 'to', 'port', 'protocol', 'timeout-ms', 'count', 'concurrency', 'duration-ms', 'source-port', 'output'],
    booleans: ['matrix', 'keep-alive'], aliases: { o: 'output' },
  });
  const port = args.flags.has('port') ? intFlag(args, 'port', 0, 1, 65535) : undefined;
  const protocol = args.flags.has('protocol') ? choiceFlag(args, 'protocol', ['TCP', 'UDP'] as const, 'TCP') : undefined;
  const timeoutMs = intFlag(args, 'timeout-ms', 2_000, 1, 60_000);
  // Services as last synced from mesh-control (the lab kubelet keeps them current): a probe
  // costs no control round trip unless its target is a Service too new for that copy.
  const state = await loadState(labLayout(labDirFromEnv()));
  if (args.booleans.has('matrix')) {
    if (args.flags.has('from') || args.flags.has('to')) throw new UsageError('lab probe: --matrix probes every endpoint; drop --from/--to');
    if (port === undefined) throw new UsageError('lab probe --matrix: flag --port is required');
    const m = await probeMatrix(state, port, protocol ?? 'TCP', timeoutMs);
    if (wantsJSON(args)) json(m);
    else out(formatMatrix(m));
    // A matrix is a report (some pairs are expected to fail, e.g. a LabHost to pods): exit 0.
    return 0;
  }
  const from = args.flags.get('from');
  const to = args.flags.get('to');
  if (!from || !to) throw new UsageError('lab probe: flags --from and --to are required (or --matrix)');
  const opts = {
    port, protocol, timeoutMs,
    count: intFlag(args, 'count', 1, 1, 1_000_000),
    concurrency: intFlag(args, 'concurrency', 1, 1, 256),
    keepAlive: args.booleans.has('keep-alive'),
    durationMs: intFlag(args, 'duration-ms', 60_000, 1, 600_000),
    ...(args.flags.has('source-port') ? { sourcePort: intFlag(args, 'source-port', 0, 1, 65535) } : {}),
  };
  const r = await probe(state, from, to, opts).catch(async (err: unknown) => {
    if (!(err instanceof LabError && err.code === 'WEFT_LAB_TARGET')) throw err;
    return probe(await liveState(), from, to, opts);
  });
  if (wantsJSON(args)) json(r);
  else if ('requests' in r) out(formatLoad(r));
  else {
    const head = `${r.from} -> ${r.to} ${r.protocol}/${r.port}`;
    const answer = r.answeredBy ? `answered by ${r.answeredBy}, client address ${r.clientAddress}` : `HTTP ${r.httpStatus}: ${r.body}`;
    out(r.ok ? `${head}: ok, ${answer}\n` : `${head}: FAIL (${r.error}${r.body ? `: ${r.body}` : ''})\n`);
  }
  return 'requests' in r ? ((r as LoadProbeResult).failed === 0 ? 0 : 1) : ((r as ProbeResult).ok ? 0 : 1);
}

async function apply(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['file'], aliases: { f: 'file' } });
  const file = args.flags.get('file');
  if (!file) throw new UsageError('lab apply: flag -f FILE_OR_DIR is required');
  const summary = await labApply(labDirFromEnv(), await loadManifests(file), (line) => out(`${line}\n`));
  out(`applied: ${summary.created.length} pods created, ${summary.updated.length} relabeled, ${summary.terminated.length} terminated\n`);
  return 0;
}

async function remove(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {});
  const [kind, key, ...extra] = args.positionals;
  const kinds = ['pod', 'deployment', 'service'];
  if (!key || extra.length || !kinds.includes(kind)) throw new UsageError('usage: weft lab delete pod|deployment|service NS/NAME');
  await labDelete(labDirFromEnv(), kind as DeleteKind, key, (line) => out(`${line}\n`));
  return 0;
}

async function exec(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {});
  if (args.positionals.length !== 1 || args.rest.length === 0) throw new UsageError('usage: weft lab exec NS/POD|host/NAME -- CMD [ARGS]');
  const state = await loadState(labLayout(labDirFromEnv()));
  const { netns } = resolveEndpoint(state, args.positionals[0]);
  const child = spawn('ip', ['netns', 'exec', netns as string, ...args.rest], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? ({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 1 : 1)));
  });
}

async function node(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {});
  const [verb, name, ...extra] = args.positionals;
  if (!name || extra.length || (verb !== 'add' && verb !== 'remove')) throw new UsageError('usage: weft lab node add NAME | weft lab node remove NAME');
  const dir = labDirFromEnv();
  if (verb === 'add') {
    const n = await labNodeAdd(dir, name);
    out(`node ${n.name} added: pod CIDR ${n.podCIDR}, address ${n.address}\n`);
  } else {
    await labNodeRemove(dir, name);
    out(`node ${name} removed\n`);
  }
  return 0;
}

async function down(argv: string[]): Promise<number> {
  parseArgs(argv, {});
  await labDown(labDirFromEnv());
  return 0;
}

/** Internal: the lab kubelet that `up` starts (kubelet.ts). */
async function kubelet(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['lab-dir'] });
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} lab kubelet: ${line}\n`);
  await runKubelet(args.flags.get('lab-dir') ?? labDirFromEnv(), log);
  return 0;
}

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  up, down, status, probe: probeCommand, apply, delete: remove, exec, node, kubelet,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    out(USAGE);
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) throw new UsageError(`lab: unknown command "${name}"\n\n${USAGE}`);
  return command(rest);
}

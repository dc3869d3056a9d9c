// `weft lab ...`: a cluster on this machine in network namespaces.
import { spawn } from 'node:child_process';
import { choiceFlag, intFlag, parseArgs, type ParsedArgs, UsageError } from '../cli/args.ts';
import { parseCidr } from '../mesh-control/model/cidr.ts';
import { loadManifests } from '../mesh-control/model/parse.ts';
import { formatMatrix, formatStatus } from './format.ts';
import { labDown, labNodeAdd, labNodeRemove, labUp } from './lab.ts';
import { labDirFromEnv, labLayout } from './layout.ts';
import { nodeAgentMain } from './node-agent.ts';
import { probe, probeMatrix } from './probe.ts';
import { loadState, type LabState } from './state.ts';
import { resolveEndpoint } from './targets.ts';

const USAGE = `usage: weft lab <command> [flags]   (lab directory: $WEFT_LAB_DIR, default /run/weft/lab)

  up --nodes N [--cluster-cidr CIDR] [--node-mask BITS] [--underlay l2|routed] -f FILE_OR_DIR
  status [--output json]
  probe --from NS/POD|host/NAME --to NS/POD|IP|host/NAME --port P [--protocol TCP|UDP] [--timeout-ms MS] [--output json]
  probe --matrix --port P [--protocol TCP|UDP] [--timeout-ms MS] [--output json]
  exec NS/POD|host/NAME -- CMD [ARGS]
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
  const args = parseArgs(argv, { values: ['nodes', 'cluster-cidr', 'node-mask', 'underlay', 'file', 'output'], aliases: { f: 'file', o: 'output' } });
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
    objects,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (wantsJSON(args)) json(statusJSON(state));
  else out(formatStatus(state));
  return 0;
}

function statusJSON(state: LabState) {
  return {
    nodes: state.nodes.map((n) => ({ name: n.name, podCIDR: n.podCIDR, address: n.address })),
    pods: state.pods.map((p) => ({ namespace: p.namespace, name: p.name, node: p.node, ip: p.ip, ports: p.ports })),
    hosts: state.hosts.map((h) => ({ name: h.name, ip: h.ip })),
  };
}

async function status(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['output'], aliases: { o: 'output' } });
  const state = await loadState(labLayout(labDirFromEnv()));
  if (wantsJSON(args)) json(statusJSON(state));
  else out(formatStatus(state));
  return 0;
}

async function probeCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['from', 'to', 'port', 'protocol', 'timeout-ms', 'output'], booleans: ['matrix'], aliases: { o: 'output' } });
  if (!args.flags.has('port')) throw new UsageError('lab probe: flag --port is required');
  const port = intFlag(args, 'port', 0, 1, 65535);
  const protocol = choiceFlag(args, 'protocol', ['TCP', 'UDP'] as const, 'TCP');
  const timeoutMs = intFlag(args, 'timeout-ms', 2_000, 1, 60_000);
  const state = await loadState(labLayout(labDirFromEnv()));
  if (args.booleans.has('matrix')) {
    if (args.flags.has('from') || args.flags.has('to')) throw new UsageError('lab probe: --matrix probes every endpoint; drop --from/--to');
    const m = await probeMatrix(state, port, protocol, timeoutMs);
    if (wantsJSON(args)) json(m);
    else out(formatMatrix(m));
    // A matrix is a report (some pairs are expected to fail, e.g. a LabHost to pods): exit 0.
    return 0;
  }
  const from = args.flags.get('from');
  const to = args.flags.get('to');
  if (!from || !to) throw new UsageError('lab probe: flags --from and --to are required (or --matrix)');
  const r = await probe(state, from, to, port, protocol, timeoutMs);
  if (wantsJSON(args)) json(r);
  else out(r.ok ? `${r.from} -> ${r.to} ${protocol}/${port}: ok, answered by ${r.answeredBy}, client address ${r.clientAddress}\n` : `${r.from} -> ${r.to} ${protocol}/${port}: FAIL (${r.error})\n`);
  return r.ok ? 0 : 1;
}

async function exec(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {});
  if (args.positionals.length !== 1 || args.rest.length === 0) throw new UsageError('usage: weft lab exec NS/POD|host/NAME -- CMD [ARGS]');
  const state = await loadState(labLayout(labDirFromEnv()));
  const { netns } = resolveEndpoint(state, args.positionals[0], false);
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

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  up, down, status, probe: probeCommand, exec, node, 'node-agent': nodeAgentMain,
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

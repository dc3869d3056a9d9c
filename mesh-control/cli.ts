// `weft control|apply|get|delete|status`: the control service and its kubectl-like client.
// The client finds the server and the admin credential on its own (client-config.ts).
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { parseArgs, intFlag, choiceFlag, UsageError } from '../cli/args.ts';
import { loadManifests } from './model/parse.ts';
import { ManifestError } from './model/errors.ts';
import { isNamespaced, objectKey } from './model/objects.ts';
import type { ClusterObject } from './model/types.ts';
import { createControlClient, unary, type ControlClient } from './client.ts';
import { defaultClientConfigPath, readClientConfig, weftHome, DEFAULT_LISTEN, DEFAULT_OPS_LISTEN } from './client-config.ts';
import { kindSingular, resolveKind } from './kinds.ts';
import { createControlServer } from './server.ts';
import type { NodeSyncStatus } from './push/node-sync.ts';

const out = (s: string) => void process.stdout.write(s);

function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/weft/control' : join(weftHome(), 'control');
}

function connect(args: ReturnType<typeof parseArgs>): { client: ControlClient; server: string } {
  const config = readClientConfig(args.flags.get('config') ?? defaultClientConfigPath());
  const server = args.flags.get('server') ?? config.server;
  return { client: createControlClient(server, config), server };
}

async function withClient<T>(args: ReturnType<typeof parseArgs>, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const { client } = connect(args);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

const CLIENT_FLAGS = ['server', 'config'];

export async function control(argv: string[]): Promise<number> {
  if (argv[0] === 'token') return token(argv.slice(1));
  const args = parseArgs(argv, {
    values: ['data-dir', 'etcd-endpoints', 'etcd-prefix', 'listen', 'ops-listen', 'pki-dir', 'admin-config', 'cluster-cidr', 'node-mask', 'service-cidr', 'node-port-range', 'debounce-ms', 'front', 'front-threads', 'haproxy'],
  });
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}" (usage: weft control [--data-dir DIR | --etcd-endpoints URL,...] [--listen HOST:PORT|unix:PATH] [--ops-listen HOST:PORT|off] [--front none|haproxy [--front-threads N] [--haproxy PATH]])`);
  const etcdEndpoints = args.flags.get('etcd-endpoints')?.split(',').filter(Boolean);
  if (etcdEndpoints?.length && args.flags.has('data-dir')) throw new UsageError('give either --data-dir or --etcd-endpoints, not both');
  const dataDir = etcdEndpoints?.length ? undefined : (args.flags.get('data-dir') ?? defaultDataDir());
  const server = createControlServer({
    listen: args.flags.get('listen') ?? DEFAULT_LISTEN,
    opsListen: args.flags.get('ops-listen') === 'off' ? undefined : (args.flags.get('ops-listen') ?? DEFAULT_OPS_LISTEN),
    dataDir,
    etcdEndpoints,
    etcdPrefix: args.flags.get('etcd-prefix'),
    pkiDir: args.flags.get('pki-dir') ?? (dataDir ? undefined : join(defaultDataDir(), 'pki')),
    adminConfigPath: args.flags.get('admin-config') ?? defaultClientConfigPath(),
    clusterCIDR: args.flags.get('cluster-cidr'),
    nodeMask: args.flags.has('node-mask') ? intFlag(args, 'node-mask', 24, 8, 30) : undefined,
    serviceCIDR: args.flags.get('service-cidr'),
    nodePortRange: args.flags.get('node-port-range'),
    debounceMs: intFlag(args, 'debounce-ms', 10, 0, 10_000),
    front: choiceFlag(args, 'front', ['none', 'haproxy'] as const, 'none'),
    haproxyBinary: args.flags.get('haproxy'),
    frontThreads: args.flags.has('front-threads') ? intFlag(args, 'front-threads', 1, 1, 64) : undefined,
  });
  await server.start();
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.stop();
  return 0;
}

async function token(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['node', 'ttl', ...CLIENT_FLAGS] });
  if (args.positionals[0] !== 'create') throw new UsageError('usage: weft control token create --node NAME [--ttl SECONDS]');
  const node = args.flags.get('node');
  if (!node) throw new UsageError('flag --node is required');
  const res = await withClient(args, (c) =>
    unary<{ token: string }>(c, 'CreateJoinToken', { node, ttl_seconds: intFlag(args, 'ttl', 86_400, 60, 365 * 86_400) }, `create a join token for node ${node}`),
  );
  out(`${res.token}\n`);
  return 0;
}

interface WireResult {
  key: string;
  outcome: string;
}

/** `Service/default/web` → `service/web` as kubectl prints it. */
function shortName(key: string): string {
  const parts = key.split('/');
  return `${kindSingular(resolveKind(parts[0]))}/${parts[parts.length - 1]}`;
}

async function manifests(args: ReturnType<typeof parseArgs>, verb: string): Promise<{ objects: ClusterObject[]; sources: string[] }> {
  const files = args.lists.get('filename') ?? [];
  if (files.length === 0) throw new UsageError(`flag -f is required (weft ${verb} -f FILE_OR_DIR)`);
  const objects: ClusterObject[] = [];
  for (const f of files) objects.push(...(await loadManifests(f)));
  return { objects, sources: files };
}

function printManifestError(err: unknown): number {
  if (err instanceof ManifestError) {
    process.stderr.write(`weft: ${err.message}\n`);
    return 1;
  }
  throw err;
}

export async function apply(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { repeatable: ['filename'], booleans: ['dry-run'], aliases: { f: 'filename' }, values: CLIENT_FLAGS });
  let loaded;
  try {
    loaded = await manifests(args, 'apply');
  } catch (err) {
    return printManifestError(err);
  }
  // The client validated already; the server validates again (it trusts no client), and names
  // the object when it refuses one.
  const items = loaded.objects.map((o) => ({ json: Buffer.from(JSON.stringify(o)), source: loaded.sources.join(',') }));
  const res = await withClient(args, (c) => unary<{ results: WireResult[] }>(c, 'Apply', { items, dry_run: args.booleans.has('dry-run') }, 'apply manifests'));
  for (const r of res.results) out(`${shortName(r.key)} ${r.outcome}${args.booleans.has('dry-run') ? ' (dry run)' : ''}\n`);
  return 0;
}

/**
 * kubectl's --grace-period/--force: -1 (default) is each object's own; 0 needs --force (without,
 * it becomes 1, as kubectl guards against accidental force deletion); --force alone means 0.
 */
function gracePeriod(args: ReturnType<typeof parseArgs>): number | undefined {
  const force = args.booleans.has('force');
  let grace = intFlag(args, 'grace-period', -1, -1);
  if (grace === 0 && !force) grace = 1;
  if (force && grace < 0) grace = 0;
  return grace < 0 ? undefined : grace;
}

export async function remove(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { repeatable: ['filename'], aliases: { f: 'filename' }, values: ['grace-period', ...CLIENT_FLAGS], booleans: ['force'] });
  let loaded;
  try {
    loaded = await manifests(args, 'delete');
  } catch (err) {
    return printManifestError(err);
  }
  const keys = loaded.objects.map(objectKey);
  const grace = gracePeriod(args);
  if (grace === 0) process.stderr.write('warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n');
  const req = { keys, ...(grace === undefined ? {} : { grace_period: { seconds: grace } }) };
  const res = await withClient(args, (c) => unary<{ results: WireResult[] }>(c, 'Delete', req, 'delete objects'));
  for (const r of res.results) out(`${shortName(r.key)} ${grace === 0 && r.outcome === 'deleted' ? 'force deleted' : r.outcome}\n`);
  return 0;
}

function age(o: ClusterObject): string {
  const t = Date.parse(o.metadata.creationTimestamp ?? '');
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172_800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86_400)}d`;
}

function columns(o: ClusterObject): Record<string, string> {
  switch (o.kind) {
    case 'Service':
      return {
        TYPE: o.spec.type ?? 'ClusterIP',
        'CLUSTER-IP': o.spec.clusterIP ?? '<none>',
        'PORT(S)': (o.spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',') || '<none>',
      };
    case 'Pod':
      return { STATUS: o.status?.phase ?? 'Pending', IP: o.status?.podIP ?? '<none>', NODE: o.spec.nodeName ?? '<none>' };
    case 'Node':
      return { 'POD-CIDR': o.spec?.podCIDR ?? '<none>' };
    case 'EndpointSlice':
      return {
        ADDRESSTYPE: o.addressType,
        PORTS: (o.ports ?? []).map((p) => String(p.port ?? '')).join(',') || '<unset>',
        ENDPOINTS: o.endpoints.flatMap((e) => e.addresses).join(',') || '<unset>',
      };
    case 'Deployment':
      return { REPLICAS: String(o.spec.replicas ?? 1) };
    default:
      return {};
  }
}

function table(rows: Record<string, string>[]): string {
  if (rows.length === 0) return '';
  const heads = Object.keys(rows[0]);
  const widths = heads.map((h) => Math.max(h.length, ...rows.map((r) => (r[h] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').trimEnd();
  return [line(heads), ...rows.map((r) => line(heads.map((h) => r[h] ?? '')))].join('\n') + '\n';
}

export async function get(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['output', 'namespace', ...CLIENT_FLAGS], booleans: ['all-namespaces'], aliases: { o: 'output', n: 'namespace', A: 'all-namespaces' } });
  const [kindName, name] = args.positionals;
  if (!kindName) throw new UsageError('usage: weft get KIND [NAME] [-o yaml|json] [-n NAMESPACE | -A]');
  const kind = resolveKind(kindName);
  const output = choiceFlag(args, 'output', ['table', 'yaml', 'json', 'wide'] as const, 'table');
  const all = args.booleans.has('all-namespaces');
  const res = await withClient(args, (c) =>
    unary<{ items: Buffer[] }>(c, 'Get', { kind, namespace: args.flags.get('namespace') ?? 'default', name: name ?? '', all_namespaces: all }, `get ${kindName}`),
  );
  const items = res.items.map((b) => JSON.parse(b.toString('utf8')) as ClusterObject);
  if (output === 'json' || output === 'yaml') {
    const doc = name ? items[0] : { apiVersion: 'v1', kind: 'List', items };
    out(output === 'json' ? `${JSON.stringify(doc, null, 2)}\n` : toYaml(doc));
    return 0;
  }
  if (items.length === 0) {
    process.stderr.write(`No resources found${isNamespaced(kind) && !all ? ` in ${args.flags.get('namespace') ?? 'default'} namespace` : ''}.\n`);
    return 0;
  }
  out(
    table(
      items.map((o) => ({
        ...(all && isNamespaced(kind) ? { NAMESPACE: o.metadata.namespace ?? '' } : {}),
        NAME: o.metadata.name,
        ...columns(o),
        AGE: age(o),
      })),
    ),
  );
  return 0;
}

export async function status(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: ['output', ...CLIENT_FLAGS], aliases: { o: 'output' } });
  const output = choiceFlag(args, 'output', ['table', 'json'] as const, 'table');
  const res = await withClient(args, (c) => unary<{ revision: string; nodes: NodeSyncStatus[] }>(c, 'Status', {}, 'read sync status'));
  if (output === 'json') {
    out(`${JSON.stringify(res, null, 2)}\n`);
    return 0;
  }
  out(`version ${res.revision}, ${res.nodes.filter((n) => n.connected).length}/${res.nodes.length} nodes connected\n`);
  const now = Date.now();
  out(
    table(
      res.nodes.map((n) => ({
        NODE: n.node,
        CONNECTED: n.connected ? 'yes' : 'no',
        ACKED: n.acked_version || '-',
        BEHIND: String(n.versions_behind),
        'LAST-ACK': n.last_ack_unix_ms ? `${Math.round((now - Number(n.last_ack_unix_ms)) / 1000)}s ago` : 'never',
        'IN-FLIGHT': n.sent_version ? `${n.sent_version} (${n.lag_ms} ms)` : '-',
        NACKED: n.nacked_version ? `${n.nacked_version}: ${n.last_error}` : '-',
      })),
    ),
  );
  return 0;
}

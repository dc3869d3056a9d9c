// Simulated node agents for the control benchmark: N streams in one process, each ACKing every
// update as soon as it arrives (version and nonce are read without decoding the resources: the
// benchmark measures the control service, not the agents' JSON parsing). Two clients speak the
// same NodeSync stream, one mTLS connection per agent (`--agent-client`):
//   http2    (default) Node's HTTP/2 client with the gRPC framing by hand (h2-client.ts): in a
//            cluster every agent runs on its own node, here 1,000 share the control service's 2
//            cores, so the simulated ones cost as little CPU as the protocol allows;
//   grpc-js  grpc-js's client, as `weft agent` connects (~1.5× the CPU per update).
// Talks to the parent on stdio, one JSON line per message:
//   out {"synced":node,"ms":t}     first update received, t ms after the stream opened
//   out {"ready":true,"rssMiB":n}  every stream has its first update (and this process's RSS)
//   in  {"wait":V}                 → out {"reached":V,"at":epochMs} when every stream ACKed a version ≥ V
//                                    (at = the latest of their first ACKs at or above V)
//   in  {"cpu":true}               → out {"cpuMs":n} this process's CPU time so far (user + system)
import { Client, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { createInterface } from 'node:readline';
import { channelFor } from '../../mesh-control/client.ts';
import { readClientConfig } from '../../mesh-control/client-config.ts';
import { weftServices } from '../../mesh-control/proto/load.ts';
import type { NodeRequest } from '../../mesh-control/push/node-sync.ts';
import { readHead } from '../../mesh-control/push/wire.ts';
import { openGrpcStream } from './h2-client.ts';

interface SimAgent {
  /** [version, epoch ms of the ACK], newest last, a few kept. */
  acks: [number, number][];
}

/** A version the parent waits for: agents still below it, and the latest first ACK at or above it. */
interface Wait {
  version: number;
  remaining: number;
  at: number;
}

const now = () => performance.timeOrigin + performance.now();

type Write = (req: NodeRequest) => void;
type OpenStream = (node: string, onMessage: (raw: Buffer) => void, onError: (message: string) => void) => Write;

/** grpc-js: a client (one connection each `perConnection` agents) and a bidi stream per agent. */
function grpcJsStreams(server: string, configPath: string, perConnection: number): OpenStream {
  // One TLS context for all; each client still has its own connection (local subchannel pool).
  const channel = channelFor(server, readClientConfig(configPath), { 'grpc.max_receive_message_length': 1024 * 1024 * 1024, 'grpc.use_local_subchannel_pool': 1 });
  const method = weftServices().NodeSync.service.Stream;
  const serialize = method.requestSerialize as (r: NodeRequest) => Buffer;
  let client: Client | undefined;
  let opened = 0;
  return (_node, onMessage, onError) => {
    if (opened++ % perConnection === 0) client = new Client(server, channel.credentials, channel.options);
    const s: ClientDuplexStream<NodeRequest, Buffer> = client!.makeBidiStreamRequest(method.path, serialize, (b: Buffer) => b, new Metadata());
    s.on('data', onMessage);
    s.on('error', (err) => onError(err.message));
    return (req) => s.write(req);
  };
}

/** Node's HTTP/2 client (h2-client.ts), one connection per agent. */
function http2Streams(server: string, configPath: string): OpenStream {
  const config = readClientConfig(configPath);
  const method = weftServices().NodeSync.service.Stream;
  const serialize = method.requestSerialize as (r: NodeRequest) => Buffer;
  return (_node, onMessage, onError) => {
    const write = openGrpcStream(server, config, method.path, onMessage, onError);
    return (req) => write(serialize(req));
  };
}

export function runAgents(argv: string[]): void {
  const [server, configPath, first, count, perConnection, seconds, clientKind = 'http2'] = argv;
  if (clientKind !== 'http2' && clientKind !== 'grpc-js') throw new Error(`--agent-client must be http2 or grpc-js, not ${clientKind}`);
  if (clientKind === 'http2' && Number(perConnection) !== 1) throw new Error('--per-connection needs --agent-client grpc-js');
  const open = clientKind === 'http2' ? http2Streams(server, configPath) : grpcJsStreams(server, configPath, Number(perConnection));
  const agents: SimAgent[] = [];
  const waits: Wait[] = [];
  let synced = 0;
  const emit = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);
  const settle = (w: Wait) => {
    if (w.remaining > 0) return;
    waits.splice(waits.indexOf(w), 1);
    emit({ reached: w.version, at: w.at });
  };

  for (let i = 0; i < Number(count); i++) {
    const node = `bench-${Number(first) + i}`;
    const agent: SimAgent = { acks: [] };
    agents.push(agent);
    const t0 = performance.now();
    const write = open(
      node,
      (raw) => {
        const { version, nonce } = readHead(raw);
        write({ node, resume_version: '', version, response_nonce: nonce, error_detail: '' });
        const v = Number(version);
        const previous = agent.acks.length > 0 ? agent.acks[agent.acks.length - 1][0] : -1;
        const t = now();
        agent.acks.push([v, t]);
        if (agent.acks.length > 16) agent.acks.shift();
        for (const w of [...waits]) {
          if (previous < w.version && v >= w.version) {
            w.remaining--;
            w.at = Math.max(w.at, t);
            settle(w);
          }
        }
        if (agent.acks.length === 1) {
          emit({ synced: node, ms: performance.now() - t0 });
          if (++synced === Number(count)) emit({ ready: true, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) });
        }
      },
      (message) => process.stderr.write(`bench agent ${node}: ${message}\n`),
    );
    write({ node, resume_version: '', version: '', response_nonce: '', error_detail: '' });
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    const m = JSON.parse(line) as { wait?: number; cpu?: boolean };
    if (m.cpu) {
      const c = process.cpuUsage();
      emit({ cpuMs: (c.user + c.system) / 1000 });
    }
    if (m.wait === undefined) return;
    const w: Wait = { version: m.wait, remaining: 0, at: 0 };
    for (const a of agents) {
      const hit = a.acks.find(([v]) => v >= w.version);
      if (hit) w.at = Math.max(w.at, hit[1]);
      else w.remaining++;
    }
    waits.push(w);
    settle(w);
  });
  setTimeout(() => process.exit(0), Number(seconds) * 1000).unref();
  process.stdin.on('end', () => process.exit(0));
  // A clean exit on the parent's SIGTERM (so --cpu-prof, inherited from the parent, is written).
  process.once('SIGTERM', () => process.exit(0));
}

// Simulated node agents for the control benchmark: N streams in one process, each ACKing every
// update as soon as it arrives (version and nonce are read without decoding the resources: the
// benchmark measures the control service, not the agents' JSON parsing). Talks to the parent on
// stdio, one JSON line per message:
//   out {"synced":node,"ms":t}     first update received, t ms after the stream opened
//   out {"ready":true}             every stream has its first update
//   in  {"wait":V}                 → out {"reached":V,"at":epochMs} when every stream ACKed a version ≥ V
//                                    (at = the latest of their first ACKs at or above V)
import { Client, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { createInterface } from 'node:readline';
import { channelCredentials } from '../../mesh-control/client.ts';
import { readClientConfig } from '../../mesh-control/client-config.ts';
import { weftServices } from '../../mesh-control/proto/load.ts';
import type { NodeRequest } from '../../mesh-control/push/node-sync.ts';
import { readHead } from '../../mesh-control/push/wire.ts';

interface SimAgent {
  /** [version, epoch ms of the ACK], newest last, a few kept. */
  acks: [number, number][];
}

const now = () => performance.timeOrigin + performance.now();

export function runAgents(argv: string[]): void {
  const [server, configPath, first, count, perConnection, seconds] = argv;
  const creds = channelCredentials(readClientConfig(configPath));
  const method = weftServices().NodeSync.service.Stream;
  const serialize = method.requestSerialize as (r: NodeRequest) => Buffer;
  const agents: SimAgent[] = [];
  const waits: { version: number }[] = [];
  let client: Client | undefined;
  let synced = 0;
  const emit = (m: unknown) => process.stdout.write(`${JSON.stringify(m)}\n`);

  function check(): void {
    for (let i = waits.length - 1; i >= 0; i--) {
      const v = waits[i].version;
      let at = 0;
      let all = true;
      for (const a of agents) {
        const hit = a.acks.find(([ver]) => ver >= v);
        if (!hit) {
          all = false;
          break;
        }
        at = Math.max(at, hit[1]);
      }
      if (all) {
        waits.splice(i, 1);
        emit({ reached: v, at });
      }
    }
  }

  for (let i = 0; i < Number(count); i++) {
    // One TCP+TLS connection per `perConnection` agents (1 = each its own, as real nodes).
    if (i % Number(perConnection) === 0) client = new Client(server, creds, { 'grpc.max_receive_message_length': 1024 * 1024 * 1024, 'grpc.use_local_subchannel_pool': 1 });
    const node = `bench-${Number(first) + i}`;
    const agent: SimAgent = { acks: [] };
    agents.push(agent);
    const t0 = performance.now();
    const s: ClientDuplexStream<NodeRequest, Buffer> = client!.makeBidiStreamRequest(method.path, serialize, (b: Buffer) => b, new Metadata());
    s.write({ node, resume_version: '', version: '', response_nonce: '', error_detail: '' });
    s.on('data', (raw: Buffer) => {
      const { version, nonce } = readHead(raw);
      s.write({ node, resume_version: '', version, response_nonce: nonce, error_detail: '' });
      agent.acks.push([Number(version), now()]);
      if (agent.acks.length > 16) agent.acks.shift();
      if (agent.acks.length === 1) {
        emit({ synced: node, ms: performance.now() - t0 });
        if (++synced === Number(count)) emit({ ready: true });
      }
      if (waits.length > 0) check();
    });
    s.on('error', (err) => process.stderr.write(`bench agent ${node}: ${err.message}\n`));
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    const m = JSON.parse(line) as { wait?: number };
    if (m.wait !== undefined) {
      waits.push({ version: m.wait });
      check();
    }
  });
  setTimeout(() => process.exit(0), Number(seconds) * 1000).unref();
  process.stdin.on('end', () => process.exit(0));
}

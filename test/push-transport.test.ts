// The NodeSync transport's hand-written parts: the ACK decoder (mesh-control/push/wire.ts
// requestDecoder) gives what the generated decoder gives and hands any message with a field it does
// not read to the generated one; node streams served from grpc-js's call layer
// (push/node-stream.ts) keep the stream contract node-sync relies on (data, end, close, error → status).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client, credentials, Metadata, Server, ServerCredentials, status, type ClientDuplexStream, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { weftServices } from '../mesh-control/proto/load.ts';
import { nodeStreamInterceptor, type NodeStream } from '../mesh-control/push/node-stream.ts';
import { requestDecoder } from '../mesh-control/push/wire.ts';

const method = weftServices().NodeSync.service.Stream;
const encode = method.requestSerialize as (r: object) => Buffer;
const generated = method.requestDeserialize as (b: Buffer) => object;

describe('NodeRequest decoder', () => {
  const decode = requestDecoder(generated);

  it('decodes ACKs, NACKs and first messages as the generated decoder does', () => {
    const requests = [
      {},
      { node: 'node-a', resume_version: '42' },
      { node: 'node-a', version: '1234', response_nonce: 'k3' },
      { node: 'node-a', version: '1200', response_nonce: 'k4', error_detail: 'failed to apply: ünïcode ✓ '.repeat(20) },
      { version: '9'.repeat(300), response_nonce: '' },
    ];
    for (const r of requests) expect(decode(encode(r))).toEqual(generated(encode(r)));
  });

  it('hands a message with any other field to the generated decoder', () => {
    // A field the hand decoder does not read (an unknown number with a varint value).
    const extra = Buffer.concat([encode({ node: 'node-a', version: '7' }), Buffer.from([(15 << 3) | 0, 1])]);
    expect(decode(extra)).toEqual(generated(extra));
    // A truncated field: whatever the generated decoder makes of it.
    const truncated = Buffer.from([(3 << 3) | 2, 10, 0x41]);
    const outcome = (f: (b: Buffer) => object) => {
      try {
        return f(truncated);
      } catch (err) {
        return String(err);
      }
    };
    expect(outcome(decode)).toEqual(outcome(generated));
  });
});

describe('node streams served from the call layer (push/node-stream.ts)', () => {
  const identity = (b: Buffer) => b;
  const concat = (parts: Buffer[]) => Buffer.concat(parts);
  const bidi = (path: string) => ({ path, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: concat, responseDeserialize: identity });
  const service = { Stream: bidi('/t.Node/Stream'), Other: bidi('/t.Node/Other') } as unknown as ServiceDefinition;
  let server: Server;
  let client: Client;
  const events: string[] = [];

  beforeAll(async () => {
    const serve = (s: NodeStream) => {
      s.on('data', (req: Buffer) => {
        const text = req.toString();
        if (text === 'fail') s.emit('error', { code: status.PERMISSION_DENIED, details: 'not this node' });
        else s.write([Buffer.from('got '), req]);
      });
      s.on('end', () => {
        events.push('end');
        s.end();
      });
      s.on('close', () => events.push('close'));
    };
    server = new Server({ interceptors: [nodeStreamInterceptor('/t.Node/Stream', serve)] });
    // The interceptor serves Stream: its handler must never run. Other passes through to its handler.
    server.addService(service, {
      Stream: () => events.push('stream handler ran'),
      Other: (call: ServerDuplexStream<Buffer, Buffer[]>) => call.on('data', (b: Buffer) => call.write([Buffer.from('other '), b])),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  });
  afterAll(() => {
    client?.close();
    server?.forceShutdown();
  });

  const open = (path: string) => client.makeBidiStreamRequest(path, identity, identity, new Metadata());
  const next = (s: ClientDuplexStream<Buffer, Buffer>) => new Promise<string>((resolve) => s.once('data', (b: Buffer) => resolve(b.toString())));
  const statusOf = (s: ClientDuplexStream<Buffer, Buffer>) =>
    new Promise<{ code: number; details: string }>((resolve) => {
      s.on('error', (e: { code: number; details: string }) => resolve({ code: e.code, details: e.details }));
      s.on('status', (st: { code: number; details: string }) => st.code === status.OK && resolve({ code: st.code, details: st.details }));
      s.resume();
    });

  it('delivers every request and writes the parts of each update as one message', async () => {
    const s = open('/t.Node/Stream');
    for (const text of ['hello', 'ack 1', 'ack 2']) {
      const reply = next(s);
      s.write(Buffer.from(text));
      expect(await reply).toBe(`got ${text}`);
    }
    const done = statusOf(s);
    s.end();
    expect((await done).code).toBe(status.OK);
    await vi.waitFor(() => expect(events).toEqual(expect.arrayContaining(['end', 'close'])));
    expect(events).not.toContain('stream handler ran');
  });

  it('ends the stream with the status of an emitted error', async () => {
    const s = open('/t.Node/Stream');
    const done = statusOf(s);
    s.write(Buffer.from('fail'));
    expect(await done).toEqual({ code: status.PERMISSION_DENIED, details: 'not this node' });
  });

  it('reports a stream the agent cancels as closed', async () => {
    const closed = events.filter((e) => e === 'close').length;
    const s = open('/t.Node/Stream');
    const reply = next(s);
    s.write(Buffer.from('hello'));
    await reply;
    s.on('error', () => {});
    s.cancel();
    await vi.waitFor(() => expect(events.filter((e) => e === 'close').length).toBe(closed + 1), { timeout: 10_000 });
  });

  it('leaves other methods to their handlers', async () => {
    const s = open('/t.Node/Other');
    const reply = next(s);
    s.write(Buffer.from('x'));
    expect(await reply).toBe('other x');
    s.cancel();
    s.on('error', () => {});
  });
});

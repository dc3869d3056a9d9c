import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeRequest } from '../cni/daemon/protocol.ts';
import { createCniDaemon, type CniDaemon, type CniHandler, type CniRequest } from '../cni/daemon/server.ts';
import { exchange, exchangeRaw, tempDir } from './helpers/cni-fastpath.ts';

const ownNetns = readlinkSync('/proc/self/ns/net');
const addRequest = (id: string, netns = ownNetns) => encodeRequest({ netns, env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id }, stdin: `{"id":"${id}"}` });
const echo: CniHandler = async (req) => ({ exitCode: 0, stdout: `ran ${req.env.CNI_CONTAINERID} ${req.stdin}`, stderr: '' });

let dir: ReturnType<typeof tempDir>;
let socketPath: string;
const daemons: CniDaemon[] = [];
function daemon(handler: CniHandler, extra: { readTimeoutMs?: number } = {}): CniDaemon {
  const d = createCniDaemon({ socketPath, handler, ...extra });
  daemons.push(d);
  return d;
}

beforeEach(() => {
  dir = tempDir('wt-cni-daemon');
  socketPath = join(dir.path, 'run', 'cni.sock');
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
  dir.remove();
});

describe('CNI daemon', () => {
  it('runs the handler with the forwarded env and stdin and relays its answer on a 0600 socket', async () => {
    const seen: CniRequest[] = [];
    await daemon(async (req) => {
      seen.push(req);
      return { exitCode: 1, stdout: '{"code":7}', stderr: 'why' };
    }).start();
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(await exchange(socketPath, addRequest('c1'))).toEqual({ kind: 'accepted', exitCode: 1, stdout: '{"code":7}', stderr: 'why' });
    expect(seen).toEqual([{ env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1' }, stdin: '{"id":"c1"}' }]);
  });

  it('runs concurrent requests concurrently', async () => {
    const n = 12;
    let running = 0;
    let peak = 0;
    let release!: () => void;
    const allIn = new Promise<void>((resolve) => { release = resolve; });
    await daemon(async (req) => {
      running++;
      peak = Math.max(peak, running);
      if (running === n) release();
      await Promise.race([allIn, new Promise((r) => setTimeout(r, 5000))]);
      running--;
      return { exitCode: 0, stdout: String(req.env.CNI_CONTAINERID), stderr: '' };
    }).start();
    const replies = await Promise.all(Array.from({ length: n }, (_, i) => exchange(socketPath, addRequest(`c${i}`))));
    expect(peak).toBe(n);
    expect(replies.map((r) => (r.kind === 'accepted' ? r.stdout : r.reason))).toEqual(Array.from({ length: n }, (_, i) => `c${i}`));
  });

  it('refuses a shim from another network namespace without running the verb', async () => {
    let calls = 0;
    await daemon(async () => {
      calls++;
      return { exitCode: 0, stdout: '', stderr: '' };
    }).start();
    const reply = await exchange(socketPath, addRequest('c1', 'net:[1]'));
    expect(reply).toMatchObject({ kind: 'refused', reason: expect.stringMatching(/^wrong network namespace: shim runs in net:\[1\], daemon in net:\[/) });
    expect(calls).toBe(0);
  });

  it('answers garbage peers with a refusal, drops silent ones, and keeps serving', async () => {
    const log: string[] = [];
    const d = createCniDaemon({ socketPath, handler: echo, readTimeoutMs: 200, log: (l) => log.push(l) });
    daemons.push(d);
    await d.start();
    expect(await exchange(socketPath, Buffer.from('GET / HTTP/1.1\r\n\r\n'))).toMatchObject({ kind: 'refused', reason: expect.stringMatching(/^bad request: .*magic/) });
    expect(await exchange(socketPath, addRequest('c1').subarray(0, 20))).toMatchObject({ kind: 'refused', reason: expect.stringMatching(/bad request/) });
    expect(await exchange(socketPath, Buffer.alloc(0))).toMatchObject({ kind: 'refused' });
    // A peer that never finishes its request is dropped after readTimeoutMs, with no answer.
    expect(await exchangeRaw(socketPath, Buffer.from('WCNI'), { halfClose: false })).toHaveLength(0);
    // A peer that vanishes mid-request.
    await new Promise<void>((resolve) => {
      const s = createConnection(socketPath, () => s.end(Buffer.from('WCNI\x01\x01'), () => s.destroy()));
      s.on('close', () => resolve());
      s.on('error', () => {});
    });
    // An oversized request is refused without buffering it all.
    const huge = Buffer.concat([Buffer.from('WCNI\x01\x01'), Buffer.alloc(9 << 20)]);
    const bigReply = await exchangeRaw(socketPath, huge).catch(() => Buffer.alloc(0));
    if (bigReply.length > 0) expect(bigReply.toString()).toMatch(/larger than 8388608 bytes/);
    expect(await exchange(socketPath, addRequest('c2'))).toEqual({ kind: 'accepted', exitCode: 0, stdout: 'ran c2 {"id":"c2"}', stderr: '' });
    expect(log.some((l) => l.includes('dropped a peer'))).toBe(true);
  });

  it('turns a throwing handler into a CNI error instead of a silent connection', async () => {
    await daemon(async () => { throw new Error('boom'); }).start();
    const reply = await exchange(socketPath, addRequest('c1'));
    expect(reply).toMatchObject({ kind: 'accepted', exitCode: 1 });
    expect(reply.kind === 'accepted' && JSON.parse(reply.stdout)).toEqual({ code: 999, msg: 'weft-cni daemon: plugin failed: boom' });
  });

  it('replaces a stale socket, but refuses to start beside a live daemon or over a non-socket', async () => {
    // A daemon killed with SIGKILL leaves its socket file behind.
    mkdirSync(join(dir.path, 'run'), { recursive: true });
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => child.stdout.once('data', resolve));
    await expect(daemon(echo).start()).rejects.toThrow(`failed to start CNI daemon on ${socketPath}: another daemon is listening there`);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(existsSync(socketPath)).toBe(true);
    await daemon(echo).start();
    expect(await exchange(socketPath, addRequest('c1'))).toMatchObject({ kind: 'accepted', stdout: 'ran c1 {"id":"c1"}' });

    const filePath = join(dir.path, 'not-a-socket');
    writeFileSync(filePath, 'x');
    await expect(createCniDaemon({ socketPath: filePath, handler: echo }).start()).rejects.toThrow('the path exists and is not a socket');
  });

  it('stop() refuses new connections, finishes in-flight requests, then removes the socket', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let started!: () => void;
    const inHandler = new Promise<void>((resolve) => { started = resolve; });
    const d = daemon(async (req) => {
      started();
      await gate;
      return { exitCode: 0, stdout: `done ${req.env.CNI_CONTAINERID}`, stderr: '' };
    });
    await d.start();
    const inflight = exchange(socketPath, addRequest('c1'));
    await inHandler;
    let stopped = false;
    const stopping = d.stop().then(() => { stopped = true; });
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).toBe(false);
    await expect(exchangeRaw(socketPath, addRequest('c2'))).rejects.toThrow(/ENOENT|ECONNREFUSED/);
    release();
    expect(await inflight).toEqual({ kind: 'accepted', exitCode: 0, stdout: 'done c1', stderr: '' });
    await stopping;
    expect(existsSync(socketPath)).toBe(false);
  });
});

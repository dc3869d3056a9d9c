// The C shim against a daemon with a stub handler, and against fake daemons that misbehave in each
// way the shim must survive. No root needed: everything runs in the test's own namespace.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeAcceptedHeader, encodeRefused, encodeResult } from '../cni/daemon/protocol.ts';
import { createCniDaemon, type CniRequest } from '../cni/daemon/server.ts';
import { buildShim, SHIM_CFLAGS } from '../cni/shim/build.ts';
import { cniPaths } from '../cni/shim/paths.ts';
import { tempDir } from './helpers/cni-fastpath.ts';

interface Run { code: number | null; stdout: string; stderr: string }

function runShim(binary: string, stdin: string | Buffer, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], { env: { PATH: process.env.PATH ?? '', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr1', HOME: '/nowhere', ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
  });
}

// Stands in for weft-cni.mjs: reports what it was given, exits 3 so the test sees whose code it is.
const FAKE_FALLBACK = `#!${process.execPath}
import { readFileSync } from 'node:fs';
const stdin = readFileSync(0, 'utf8');
process.stdout.write(JSON.stringify({ fallback: true, command: process.env.CNI_COMMAND, home: process.env.HOME, length: stdin.length, head: stdin.slice(0, 60) }));
process.exit(3);
`;

const dir = tempDir('wt-cni-shim');
let shim: string;
let shortTimeoutShim: string;
const servers: Server[] = [];
const peers = new Set<Socket>();

const config = (socket: string, extra = '') => `{"cniVersion":"1.0.0","name":"weft","type":"weft-cni","daemonSocket" :\n "${socket}"${extra}}`;

/** A fake daemon that answers every connection with `reply` once the request is in. */
async function fakeDaemon(name: string, reply: (socket: Socket) => void): Promise<string> {
  const path = join(dir.path, name);
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    peers.add(socket);
    socket.on('error', () => {});
    socket.resume();
    socket.on('end', () => reply(socket));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

beforeAll(async () => {
  const bin = join(dir.path, 'bin');
  execFileSync('mkdir', ['-p', bin, join(dir.path, 'short')]);
  shim = join(bin, 'weft-cni');
  copyFileSync(await buildShim(), shim);
  writeFileSync(join(bin, 'weft-cni.mjs'), FAKE_FALLBACK, { mode: 0o755 });
  shortTimeoutShim = join(dir.path, 'short', 'weft-cni');
  execFileSync('cc', [...SHIM_CFLAGS, '-DREPLY_TIMEOUT_MS=1000', '-o', shortTimeoutShim, cniPaths().shimSource]);
});

afterAll(async () => {
  for (const p of peers) p.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  dir.remove();
});

describe('weft-cni shim', () => {
  it('forwards CNI_* and WEFT_* env and stdin to the daemon and relays stdout, stderr and exit code', async () => {
    const socketPath = join(dir.path, 'daemon.sock');
    const seen: CniRequest[] = [];
    const daemon = createCniDaemon({
      socketPath,
      handler: async (req) => {
        seen.push(req);
        return { exitCode: 7, stdout: `{"result":"${req.env.CNI_CONTAINERID}"}`, stderr: 'plugin log\n' };
      },
    });
    await daemon.start();
    try {
      const stdin = config(socketPath);
      const run = await runShim(shim, stdin, { CNI_IFNAME: 'eth0', WEFT_DEBUG: 'cni' });
      expect(run).toEqual({ code: 7, stdout: '{"result":"ctr1"}', stderr: 'plugin log\n' });
      expect(seen).toEqual([{ env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr1', CNI_IFNAME: 'eth0', WEFT_DEBUG: 'cni' }, stdin }]);

      // A 3 MiB config (far past a pipe buffer) travels whole.
      const big = config(socketPath, `,"pad":"${'x'.repeat(3 << 20)}"`);
      const runs = await Promise.all(Array.from({ length: 8 }, () => runShim(shim, big)));
      expect(runs.every((r) => r.code === 7)).toBe(true);
      expect(seen.slice(1).every((r) => r.stdin === big)).toBe(true);
    } finally {
      await daemon.stop();
    }
  });

  it('execs the fallback plugin with the same env and stdin when no daemon listens', async () => {
    const stdin = config(join(dir.path, 'missing.sock'), `,"pad":"${'y'.repeat(200_000)}"`);
    const run = await runShim(shim, stdin, { CNI_COMMAND: 'DEL' });
    expect(run.code).toBe(3);
    expect(JSON.parse(run.stdout)).toEqual({ fallback: true, command: 'DEL', home: '/nowhere', length: stdin.length, head: stdin.slice(0, 60) });
    expect(run.stderr).toBe('');
  });

  it('falls back on a stale socket (connection refused) and on a daemon that closes without accepting', async () => {
    const stale = join(dir.path, 'stale.sock');
    // A daemon killed with SIGKILL leaves its socket file behind, with nobody listening.
    try {
      execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    } catch {
      // killed, as intended
    }
    expect(JSON.parse((await runShim(shim, config(stale))).stdout)).toMatchObject({ fallback: true });
    const closer = await fakeDaemon('closer.sock', (s) => s.end());
    expect(JSON.parse((await runShim(shim, config(closer))).stdout)).toMatchObject({ fallback: true });
  }, 20_000);

  it('falls back, saying why, when the daemon refuses (e.g. another network namespace)', async () => {
    const refuser = await fakeDaemon('refuser.sock', (s) => s.end(encodeRefused('wrong network namespace: shim runs in net:[1], daemon in net:[2]')));
    const run = await runShim(shim, config(refuser));
    expect(run.code).toBe(3);
    expect(JSON.parse(run.stdout)).toMatchObject({ fallback: true });
    expect(run.stderr).toBe(`weft-cni: the CNI daemon at ${refuser} refused the request (wrong network namespace: shim runs in net:[1], daemon in net:[2]); running weft-cni.mjs instead\n`);
  });

  it('reports code 11, never reruns the verb, when the daemon accepted and then broke off or stayed silent', async () => {
    const cut = await fakeDaemon('cut.sock', (s) => s.end(encodeAcceptedHeader()));
    const half = await fakeDaemon('half.sock', (s) => s.end(Buffer.concat([encodeAcceptedHeader(), encodeResult({ exitCode: 0, stdout: '{}', stderr: '' }).subarray(0, 8)])));
    const garbage = await fakeDaemon('garbage.sock', (s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    for (const path of [cut, half, garbage]) {
      const run = await runShim(shim, config(path));
      expect(run.code).toBe(1);
      expect(JSON.parse(run.stdout)).toEqual({ cniVersion: '1.0.0', code: 11, msg: `weft-cni: the connection to the CNI daemon at ${path} broke before its answer was complete` });
    }
    const silent = await fakeDaemon('silent.sock', () => {});
    const run = await runShim(shortTimeoutShim, config(silent));
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ code: 11, msg: `weft-cni: the CNI daemon at ${silent} accepted the request but did not answer within 1 s` });
  });

  it('reports code 11 naming the fallback path when neither the daemon nor the fallback can run', async () => {
    const lonely = join(dir.path, 'lonely');
    execFileSync('mkdir', ['-p', lonely]);
    copyFileSync(shim, join(lonely, 'weft-cni'));
    const run = await runShim(join(lonely, 'weft-cni'), '{"cniVersion":"1.1.0","name":"weft","daemonSocket":"/nonexistent/x.sock"}');
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout)).toEqual({ cniVersion: '1.1.0', code: 11, msg: `weft-cni: daemon unavailable and failed to run fallback plugin ${lonely}/weft-cni.mjs: No such file or directory` });
  });
});

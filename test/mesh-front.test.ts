// `weft control --front haproxy`: HAProxy terminates mTLS and passes the verified client certificate
// on. What a client sends in that header never counts; a crashed HAProxy comes back on the same
// port and agents converge; a front that cannot start says why. (The whole node-stream protocol
// runs through the front in mesh-sync.test.ts.)
import { afterAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import { createControlServer, type ControlServer } from '../mesh-control/server.ts';
import { createControlStateSource } from '../mesh-control/agent-client.ts';
import { channelFor, createControlClient, unary, type ControlClient } from '../mesh-control/client.ts';
import { readClientConfig } from '../mesh-control/client-config.ts';
import { CLIENT_CERT_HEADER, renderHaproxyConfig } from '../mesh-control/front/haproxy.ts';
import { weftServices } from '../mesh-control/proto/load.ts';
import type { ClusterView } from '../proxy/agent/source.ts';
import { haproxySkipReason, removeControlBundle, service, startControlProcess, tempDir, waitFor } from './helpers/control.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

async function control(base: string, extra: Partial<Parameters<typeof createControlServer>[0]> = {}): Promise<ControlServer> {
  const s = createControlServer({ listen: '127.0.0.1:0', dataDir: join(base, 'data'), adminConfigPath: join(base, 'admin.json'), front: 'haproxy', log: () => {}, ...extra });
  await s.start();
  cleanups.push(() => s.stop());
  return s;
}

/** Calls Status with `metadata`, as `creds` (a certificate, or only the CA). */
function status(server: ControlServer, creds: { caPem: string; certPem?: string; keyPem?: string }, metadata: Metadata): Promise<unknown> {
  const channel = channelFor(server.address(), creds);
  const client = new (weftServices().Control)(server.address(), channel.credentials, channel.options) as unknown as ControlClient;
  return new Promise((resolve, reject) =>
    (client as unknown as { Status: (r: unknown, m: Metadata, cb: (e: Error | null, r: unknown) => void) => void }).Status({}, metadata, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    }),
  ).finally(() => client.close());
}

describe('renderHaproxyConfig', () => {
  it('binds IPv6 hosts with ipv6@, quotes paths, replaces the certificate header a client sends', () => {
    const text = renderHaproxyConfig({ host: '::1', port: 7443, certFile: '/var/lib/weft "x"/front.pem', caFile: '/d/ca.pem', backendSocket: '/d/control.sock' });
    expect(text).toContain('bind ipv6@::1:7443 ssl crt "/var/lib/weft \\"x\\"/front.pem" ca-file "/d/ca.pem" verify optional alpn h2');
    expect(text).toContain('server control unix@"/d/control.sock" proto h2');
    const del = text.indexOf(`http-request del-header ${CLIENT_CERT_HEADER}`);
    const set = text.indexOf(`http-request set-header ${CLIENT_CERT_HEADER} %[ssl_c_der,base64] if { ssl_c_used }`);
    expect(del).toBeGreaterThan(0);
    expect(set).toBeGreaterThan(del);
    expect(renderHaproxyConfig({ host: '0.0.0.0', port: 1, threads: 2, certFile: 'c', caFile: 'a', backendSocket: 's' })).toMatch(/nbthread 2\n[\s\S]*bind 0\.0\.0\.0:1 /);
  });
});

describe.skipIf(haproxySkipReason !== undefined)(`behind HAProxy${haproxySkipReason ? ` (skipped: ${haproxySkipReason})` : ''}`, () => {
  it('judges a call by the certificate HAProxy verified, never by the header a client sends', async () => {
    const dir = await tempDir();
    cleanups.push(dir.remove);
    const server = await control(dir.dir);
    const adminCreds = readClientConfig(join(dir.dir, 'admin.json'));
    const adminDer = new X509Certificate(adminCreds.certPem).raw.toString('base64');
    const admin = createControlClient(server.address(), adminCreds);
    cleanups.push(async () => admin.close());
    const token = (await unary<{ token: string }>(admin, 'CreateJoinToken', { node: 'spoofer' }, 'token')).token;
    const { joinControl } = await import('../mesh-control/agent-client.ts');
    const nodeCreds = await joinControl(server.address(), 'spoofer', token);

    const claimAdmin = new Metadata();
    claimAdmin.set(CLIENT_CERT_HEADER, adminDer);
    // A node certificate claiming to be the admin: HAProxy replaced the header with the node's.
    await expect(status(server, nodeCreds, claimAdmin)).rejects.toMatchObject({ details: expect.stringMatching(/only the admin credential/) });
    // No certificate at all, the admin's in the header: HAProxy removed it.
    await expect(status(server, { caPem: adminCreds.caPem }, claimAdmin)).rejects.toMatchObject({ details: expect.stringMatching(/^WEFT_CONTROL_UNAUTHENTICATED: no client certificate/) });
    // The admin itself, through the same front.
    await expect(status(server, adminCreds, new Metadata())).resolves.toMatchObject({ revision: expect.any(String) });
  }, 30_000);

  it('keeps the front private: a 0700 directory, the key readable by its owner only, removed at stop', async () => {
    const dir = await tempDir();
    cleanups.push(dir.remove);
    const server = await control(dir.dir);
    const pid = server.frontPid()!;
    // HAProxy runs as `haproxy -db -f <front dir>/haproxy.cfg`.
    const configFile = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).pop()!;
    const front = dirname(configFile);
    expect(statSync(front).mode & 0o777).toBe(0o700);
    expect(statSync(join(front, 'front.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(front, 'control.sock')).isSocket()).toBe(true);
    expect(readFileSync(configFile, 'utf8')).toContain(`unix@"${join(front, 'control.sock')}"`);
    await server.stop();
    expect(existsSync(front)).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
  }, 30_000);

  it('restarts a HAProxy that died on the same port; the agent keeps its view meanwhile and converges', async () => {
    const dir = await tempDir();
    cleanups.push(dir.remove);
    const server = await control(dir.dir, { opsListen: '127.0.0.1:0' });
    const creds = readClientConfig(join(dir.dir, 'admin.json'));
    const admin = createControlClient(server.address(), creds);
    cleanups.push(async () => admin.close());
    const apply = (name: string) => unary(admin, 'Apply', { items: [{ json: Buffer.from(JSON.stringify(service(name, { selector: { app: 'none' } }))), source: 'test' }] }, 'apply');
    await apply('before-crash');
    const views: ClusterView[] = [];
    const src = createControlStateSource({ server: server.address(), node: 'n-front', credentials: creds, backoff: { initialMs: 50, maxMs: 300 }, log: () => {} });
    cleanups.push(() => src.stop());
    await src.start((v) => views.push(v));
    const names = () => (views[views.length - 1]?.services ?? []).map((s) => s.metadata.name);
    await waitFor('the first view', () => names().includes('before-crash'));
    const readyz = async () => (await fetch(`http://${server.opsAddress()}/readyz`)).status;
    expect(await readyz()).toBe(200);
    const first = server.frontPid()!;
    process.kill(first, 'SIGKILL');
    await waitFor('not ready while HAProxy is down', async () => (await readyz()) === 503, 5_000);
    await waitFor('a new HAProxy', () => server.frontPid() !== undefined && server.frontPid() !== first, 10_000);
    await waitFor('ready again', async () => (await readyz()) === 200, 10_000);
    expect(names()).toContain('before-crash');
    await waitFor('the admin call through the new HAProxy', () => apply('after-crash').then(() => true), 10_000);
    await waitFor('the agent converged', () => names().includes('after-crash'), 15_000);
  }, 45_000);

  it('takes HAProxy down with a killed control service, so a new one gets the port', async () => {
    const dir = await tempDir();
    cleanups.push(dir.remove);
    cleanups.push(removeControlBundle);
    const args = ['--data-dir', join(dir.dir, 'data'), '--listen', '127.0.0.1:0', '--ops-listen', 'off', '--admin-config', join(dir.dir, 'admin.json'), '--front', 'haproxy'];
    const first = await startControlProcess(args);
    cleanups.push(() => first.kill());
    const children = () => readFileSync(`/proc/${first.child.pid}/task/${first.child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    const [haproxy] = children();
    const cmdline = readFileSync(`/proc/${haproxy}/cmdline`, 'utf8').split('\0');
    expect(cmdline[0]).toBe('haproxy');
    // A killed service cannot remove its front directory.
    const frontDir = dirname(cmdline.filter(Boolean).pop()!);
    cleanups.push(() => rm(frontDir, { recursive: true, force: true }));
    await first.kill('SIGKILL');
    await waitFor('HAProxy gone with its parent', () => !existsSync(`/proc/${haproxy}`) || /^Z/m.test(readFileSync(`/proc/${haproxy}/stat`, 'utf8').split(') ')[1]));
    const again = await startControlProcess(['--data-dir', join(dir.dir, 'data'), '--listen', first.address, '--ops-listen', 'off', '--admin-config', join(dir.dir, 'admin.json'), '--front', 'haproxy']);
    cleanups.push(() => again.kill('SIGTERM'));
    expect(again.address).toBe(first.address);
    const admin = createControlClient(again.address, readClientConfig(join(dir.dir, 'admin.json')));
    cleanups.push(async () => admin.close());
    await expect(unary(admin, 'Status', {}, 'status')).resolves.toMatchObject({ revision: expect.any(String) });
  }, 60_000);

  it('says why the front cannot start (no haproxy binary, a port in use) and leaves nothing behind', async () => {
    const dir = await tempDir();
    cleanups.push(dir.remove);
    // Front directories go to a temporary directory of this test's own (other files start fronts meanwhile).
    const ownTmp = join(dir.dir, 'tmp');
    mkdirSync(ownTmp);
    const tmpBefore = process.env.TMPDIR;
    process.env.TMPDIR = ownTmp;
    const restoreTmp = () => (tmpBefore === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = tmpBefore));
    cleanups.push(async () => restoreTmp());
    expect(tmpdir()).toBe(ownTmp);
    const missing = createControlServer({ listen: '127.0.0.1:0', dataDir: join(dir.dir, 'one'), front: 'haproxy', haproxyBinary: join(dir.dir, 'no-such-haproxy'), log: () => {} });
    cleanups.push(() => missing.stop());
    await expect(missing.start()).rejects.toThrow(/failed to start the agent front \(HAProxy, --front haproxy\): .*no-such-haproxy/);
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => taken.close(r)));
    const port = (taken.address() as { port: number }).port;
    const busy = createControlServer({ listen: `127.0.0.1:${port}`, dataDir: join(dir.dir, 'two'), front: 'haproxy', log: () => {} });
    cleanups.push(() => busy.stop());
    await expect(busy.start()).rejects.toThrow(`failed to start the agent front (HAProxy, --front haproxy): 127.0.0.1:${port} is in use`);
    expect(() => createControlServer({ listen: 'unix:/tmp/x.sock', dataDir: dir.dir, front: 'haproxy' })).toThrow(/--front haproxy needs a HOST:PORT --listen address/);
    expect(readdirSync(ownTmp)).toEqual([]);
    restoreTmp();
  }, 30_000);
});

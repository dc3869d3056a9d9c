// The agents' front (`weft control --front haproxy`): HAProxy terminates every agent's mTLS
// connection and carries the gRPC streams to the control service multiplexed on a few HTTP/2
// connections over a private unix socket. Node pays ~100 KiB and ~40 µs of main-thread CPU per
// update for each agent's own TLS + HTTP/2 session (bench/control/README.md, floor); behind the
// front it holds one HTTP/2 stream per agent (~6 KiB), and HAProxy, in C on every core, holds the
// connections (~45 KiB each, measured at 1,000 agents).
//
// Trust: HAProxy verifies a client certificate against the control service's CA when one is
// presented (Join has none) and passes it on, base64 DER, in CLIENT_CERT_HEADER; a header of that
// name sent by a client is removed first. The socket lives in a directory only the service's user
// can enter: whoever can connect to it could claim any certificate. The service checks the
// certificate against its CA again (ca.identify), as for a direct connection.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, createServer, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlError } from '../errors.ts';

/** The header carrying the agent's verified client certificate (base64 DER) from the front. */
export const CLIENT_CERT_HEADER = 'x-weft-client-cert';

export interface HaproxyFrontConfig {
  /** Where agents connect; port 0 picks a free port once (kept across restarts of HAProxy). */
  host: string;
  port: number;
  /** A directory of the service's own (makeFrontDir): socket, configuration, key; removed at stop. */
  dir: string;
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  /** The control service's unix socket that HAProxy forwards to. */
  backendSocket: string;
  /** The haproxy binary (default `haproxy` on PATH). */
  binary?: string;
  /** HAProxy threads (default: one per CPU, HAProxy's own default). */
  threads?: number;
  log: (message: string) => void;
}

export interface HaproxyFront {
  /** HOST:PORT agents connect to. */
  address(): string;
  /** The running HAProxy's pid (benchmarks read its memory and CPU). */
  pid(): number | undefined;
  /** HAProxy accepts connections (false while it is being restarted). */
  serving(): boolean;
  stop(): Promise<void>;
}

/** A configuration argument in double quotes (HAProxy 2.x), for paths. */
const quoted = (s: string) => `"${s.replace(/[\\"$]/g, (c) => `\\${c}`)}"`;

/** The HAProxy configuration of the front. */
export function renderHaproxyConfig(c: { host: string; port: number; threads?: number; certFile: string; caFile: string; backendSocket: string }): string {
  const bind = isIPv6(c.host) ? `ipv6@${c.host}:${c.port}` : `${c.host}:${c.port}`;
  return [
    '# Written by `weft control --front haproxy` at every start; edits are lost.',
    'global',
    ...(c.threads ? [`  nbthread ${c.threads}`] : []),
    '  ssl-default-bind-options ssl-min-ver TLSv1.2',
    'defaults',
    '  mode http',
    // Updates and ACKs are small messages on long-lived streams: sent as they come, never held
    // back for more data to follow (MSG_MORE).
    '  option http-no-delay',
    '  timeout connect 5s',
    // An agent's stream is idle between updates for as long as nothing changes; an agent whose
    // stream is cut reconnects and resumes with a delta.
    '  timeout client 24h',
    '  timeout server 24h',
    '  timeout client-fin 10s',
    '  timeout server-fin 10s',
    'frontend agents',
    `  bind ${bind} ssl crt ${quoted(c.certFile)} ca-file ${quoted(c.caFile)} verify optional alpn h2`,
    `  http-request del-header ${CLIENT_CERT_HEADER}`,
    `  http-request set-header ${CLIENT_CERT_HEADER} %[ssl_c_der,base64] if { ssl_c_used }`,
    '  default_backend control',
    'backend control',
    '  http-reuse always',
    `  server control unix@${quoted(c.backendSocket)} proto h2`,
    '',
  ].join('\n');
}

/**
 * A new directory for the front's socket, configuration and key copy, entered by this user only
 * (mkdtemp: 0700, a name of its own per service process, so replicas on one machine never share one).
 */
export function makeFrontDir(): string {
  return mkdtempSync(join(tmpdir(), 'weft-control-front-'));
}

/** util-linux's setpriv, when installed (Debian: always, util-linux is essential). */
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** Binds `port` (0: any) on `host` and lets it go: the port HAProxy is given, free a moment ago. */
async function freePort(host: string, port: number): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code === 'EADDRINUSE' ? `${host}:${port} is in use` : `cannot listen on ${host}:${port}: ${err.message}`)));
    s.listen(port, host, resolve);
  });
  const bound = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return bound;
}

/** Resolves once `host:port` accepts a connection; rejects when `failed()` says why it never will. */
async function accepting(host: string, port: number, failed: () => string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = failed();
    if (why) throw new Error(why);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepts connections on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Starts HAProxy in front of the control service and restarts it (with backoff) if it exits. */
export async function startHaproxyFront(config: HaproxyFrontConfig): Promise<HaproxyFront> {
  const { dir, log } = config;
  const binary = config.binary ?? 'haproxy';
  const certFile = join(dir, 'front.pem');
  const caFile = join(dir, 'ca.pem');
  const configFile = join(dir, 'haproxy.cfg');
  // HAProxy reads the certificate, its key and the chain up to the CA from one file: agents that
  // join find the CA in the chain (agent-client.ts discoverCa).
  writeFileSync(certFile, `${config.serverCertPem.trim()}\n${config.serverKeyPem.trim()}\n${config.caPem.trim()}\n`, { mode: 0o600 });
  writeFileSync(caFile, config.caPem, { mode: 0o600 });
  let port: number;
  try {
    port = await freePort(config.host, config.port);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `failed to start the agent front (HAProxy, --front haproxy): ${(err as Error).message}`);
  }
  writeFileSync(configFile, renderHaproxyConfig({ host: config.host, port, threads: config.threads, certFile, caFile, backendSocket: config.backendSocket }), { mode: 0o600 });

  let child: ChildProcess | undefined;
  // Restarts are for a HAProxy that ran: one that fails to start fails the start.
  let started = false;
  let stopping = false;
  let serving = false;
  let restarts = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  /** Starts one HAProxy; the promise settles when it accepts connections or has exited. */
  const launch = async (): Promise<void> => {
    let stderr = '';
    let exit: string | undefined;
    // HAProxy dies with this process, even a killed one (util-linux setpriv sets the parent-death
    // signal, then execs it): an orphan would hold the port the next start needs.
    const c = setpriv ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', binary, '-db', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(binary, ['-db', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    c.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    c.once('error', (err) => (exit = `failed to run ${binary}: ${err.message}`));
    c.once('exit', (code, signal) => {
      if (child === c) serving = false;
      exit ??= `${binary} exited with ${signal ?? `code ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`;
      if (child !== c || stopping || !started) return;
      child = undefined;
      // A crash leaves the agents to reconnect: HAProxy comes back on the same port.
      const delay = Math.min(5000, 200 * 2 ** Math.min(restarts++, 5));
      log(`agent front: ${exit}; restarting in ${delay} ms`);
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        launch().then(
          () => (restarts = 0),
          (err: Error) => log(`agent front: ${err.message}`),
        );
      }, delay);
    });
    await accepting(config.host === '0.0.0.0' ? '127.0.0.1' : config.host === '::' ? '::1' : config.host, port, () => exit, 10_000);
    // Still running a moment later: the connection was HAProxy's, not a process that took the port meanwhile.
    await sleep(100);
    if (exit) throw new Error(exit);
    serving = true;
  };

  const killOnExit = () => child?.kill('SIGKILL');
  process.on('exit', killOnExit);
  try {
    await launch();
    started = true;
  } catch (err) {
    stopping = true;
    child?.kill('SIGKILL');
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `failed to start the agent front (HAProxy, --front haproxy): ${(err as Error).message}`);
  }
  const shown = isIPv6(config.host) ? `[${config.host}]` : config.host;
  log(`agent front: HAProxy (pid ${child!.pid}) on ${shown}:${port}, forwarding to ${config.backendSocket}`);
  return {
    address: () => `${config.host}:${port}`,
    pid: () => child?.pid,
    serving: () => serving,
    async stop() {
      stopping = true;
      serving = false;
      if (restartTimer) clearTimeout(restartTimer);
      const c = child;
      child = undefined;
      if (c && c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        // SIGTERM: HAProxy closes every connection at once (the service is stopping anyway).
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

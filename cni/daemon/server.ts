// The long-lived CNI daemon: answers the exec'd C shim over a unix socket by running the plugin
// in-process, so a pod ADD/DEL pays for a ~1 ms C exec instead of a ~70 ms Node start. It must run
// in the node's network namespace: the plugin's `ip` work happens in the namespace of whoever runs
// it, so requests from a shim in any other namespace are refused (the shim then runs the plugin
// itself). See cni/shim/README.md.
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { readlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { CNI_ERRORS } from '../errors.ts';
import { runPlugin, type PluginRequest, type PluginResponse } from '../plugin.ts';
import { createIpSessionPool, type IpSessionPool } from './ip-session.ts';
import {
  decodeRequest, encodeAcceptedHeader, encodeRefused, encodeResult, Limits, ProtocolError,
} from './protocol.ts';

export type CniRequest = PluginRequest;
export type CniResponse = PluginResponse;
export type CniHandler = (req: PluginRequest) => Promise<PluginResponse>;

export interface CniDaemonOptions {
  socketPath: string;
  /** Runs one CNI verb; defaults to runPlugin from cni/plugin.ts with warm `ip` sessions. */
  handler?: CniHandler;
  /** A peer that has not finished sending its request within this bound is dropped. */
  readTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface CniDaemon {
  start(): Promise<void>;
  /** Stops accepting, lets every accepted request finish, removes the socket file. */
  stop(): Promise<void>;
}

export function createCniDaemon(opts: CniDaemonOptions): CniDaemon {
  const { socketPath } = opts;
  // The daemon lives in the node namespace for good: its node-side `ip` batches go to warm
  // `ip -b -` sessions instead of an exec each (cni/shim/README.md has the figures).
  let ipPool: IpSessionPool | undefined;
  const handler: CniHandler = opts.handler ?? ((req) => runPlugin(req, { ip: ipPool }));
  const readTimeoutMs = opts.readTimeoutMs ?? 10_000;
  const log = opts.log ?? (() => {});
  const inflight = new Set<Promise<void>>();
  let server: Server | undefined;
  let ownNetns = '';
  let socketIno: number | undefined;

  async function answer(chunks: Buffer[], socket: Socket): Promise<void> {
    let req;
    try {
      req = decodeRequest(Buffer.concat(chunks));
    } catch (err) {
      const reason = err instanceof ProtocolError ? `bad request: ${err.message}` : String(err);
      log(`cni daemon: refused a request: ${reason}`);
      socket.end(encodeRefused(reason));
      return;
    }
    if (req.netns !== ownNetns) {
      const reason = `wrong network namespace: shim runs in ${req.netns || '(unknown)'}, daemon in ${ownNetns}`;
      log(`cni daemon: refused ${req.env.CNI_COMMAND ?? 'a request'}: ${reason}`);
      socket.end(encodeRefused(reason));
      return;
    }
    // Sent before the verb runs: from here on the shim must not rerun the verb itself.
    socket.write(encodeAcceptedHeader());
    let res: CniResponse;
    try {
      res = await handler({ env: req.env, stdin: req.stdin });
    } catch (err) {
      // runPlugin never throws; this keeps a faulty handler from leaving the shim without an answer.
      const msg = `weft-cni daemon: plugin failed: ${err instanceof Error ? err.message : String(err)}`;
      res = { exitCode: 1, stdout: JSON.stringify({ code: CNI_ERRORS.WEFT_CNI_INTERNAL.code, msg }) + '\n', stderr: '' };
    }
    socket.end(encodeResult(res));
  }

  function serve(socket: Socket): Promise<void> {
    return new Promise<void>((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let answering: Promise<void> | undefined;
      socket.setTimeout(readTimeoutMs, () => {
        if (!answering) {
          log(`cni daemon: dropped a peer that sent no complete request within ${readTimeoutMs} ms`);
          socket.destroy();
        }
      });
      socket.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > Limits.maxRequestBytes) {
          socket.removeAllListeners('data');
          socket.pause();
          log(`cni daemon: refused a request larger than ${Limits.maxRequestBytes} bytes`);
          socket.end(encodeRefused(`bad request: larger than ${Limits.maxRequestBytes} bytes`));
          setTimeout(() => socket.destroy(), 1000).unref();
          return;
        }
        chunks.push(chunk);
      });
      socket.on('end', () => {
        if (size > Limits.maxRequestBytes) return;
        socket.setTimeout(0);
        answering = answer(chunks, socket).catch(() => {
          socket.destroy();
        });
      });
      // A peer that vanishes mid-request is its own problem; the daemon only has to survive it.
      socket.on('error', () => {});
      socket.on('close', () => {
        if (answering) answering.then(resolve, resolve);
        else resolve();
      });
    });
  }

  async function removeStaleSocket(): Promise<void> {
    const st = await lstat(socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!st) return;
    if (!st.isSocket()) throw new Error(`failed to start CNI daemon on ${socketPath}: the path exists and is not a socket`);
    if (await answers(socketPath)) throw new Error(`failed to start CNI daemon on ${socketPath}: another daemon is listening there`);
    await unlink(socketPath);
  }

  return {
    async start() {
      if (server) throw new Error(`failed to start CNI daemon on ${socketPath}: already started`);
      ownNetns = readlinkSync('/proc/self/ns/net');
      if (!opts.handler) ipPool = createIpSessionPool();
      await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
      await removeStaleSocket();
      const srv = createServer({ allowHalfOpen: true }, (socket) => {
        const done = serve(socket);
        inflight.add(done);
        void done.then(() => inflight.delete(done));
      });
      await new Promise<void>((resolve, reject) => {
        srv.once('error', (err) => reject(new Error(`failed to listen for CNI requests on ${socketPath}: ${err.message}`)));
        srv.listen(socketPath, () => resolve());
      });
      srv.on('error', (err) => log(`cni daemon: ${err.message}`));
      await chmod(socketPath, 0o600);
      socketIno = (await lstat(socketPath)).ino;
      server = srv;
    },

    async stop() {
      const srv = server;
      if (!srv) return;
      server = undefined;
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
      await Promise.all([closed, ...inflight]);
      await ipPool?.close();
      ipPool = undefined;
      // libuv unlinks the socket it bound on close; this covers the case where it did not, without
      // ever removing a socket some later daemon bound at the same path.
      const st = await lstat(socketPath).catch(() => undefined);
      if (st && st.ino === socketIno) await unlink(socketPath).catch(() => {});
    },
  };
}

/** True if something accepts connections on the unix socket at `path` (a live daemon). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    const finish = (live: boolean) => {
      probe.destroy();
      resolve(live);
    };
    probe.once('connect', () => finish(true));
    probe.once('error', () => finish(false));
    // A listener whose backlog is full does not answer at once but is alive.
    probe.setTimeout(1000, () => finish(true));
  });
}

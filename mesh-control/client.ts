// gRPC clients of the control service for the CLI (admin) and the agent (node credential).
import { isIP } from 'node:net';
import { checkServerIdentity } from 'node:tls';
import { credentials, Metadata, type ChannelCredentials, type ChannelOptions, type Client } from '@grpc/grpc-js';
import { splitHostPort } from './client-config.ts';
import { fromGrpcError } from './errors.ts';
import { weftServices } from './proto/load.ts';

export interface Credentials {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** The TLS server name sent when the server is dialed by IP (any name: the IP is what is verified). */
export const IP_TARGET_SERVER_NAME = 'weft-control';

/** The socket path of a `unix:/path` address (grpc-js binds and dials those), else undefined. */
export function unixSocketPath(address: string): string | undefined {
  return address.startsWith('unix:') ? address.slice('unix:'.length) : undefined;
}

/**
 * Credentials and channel options to reach `server`. A server dialed by IP is verified against the
 * IP addresses in its certificate, without sending the IP as the TLS server name (RFC 6066 forbids
 * IPs there and Node warns about it on every connection).
 */
export function channelFor(server: string, c: { caPem: string; certPem?: string; keyPem?: string }, options: ChannelOptions = {}): { credentials: ChannelCredentials; options: ChannelOptions } {
  // Over a unix socket grpc-js sends `localhost` as the TLS server name: the server certificate names it.
  const host = unixSocketPath(server) !== undefined ? 'localhost' : splitHostPort(server, 'server address')[0];
  const key = c.keyPem === undefined ? null : Buffer.from(c.keyPem);
  const cert = c.certPem === undefined ? null : Buffer.from(c.certPem);
  if (!isIP(host)) return { credentials: credentials.createSsl(Buffer.from(c.caPem), key, cert), options };
  return {
    credentials: credentials.createSsl(Buffer.from(c.caPem), key, cert, { checkServerIdentity: (_name, peer) => checkServerIdentity(host, peer) }),
    options: { ...options, 'grpc.ssl_target_name_override': IP_TARGET_SERVER_NAME },
  };
}

export type ControlClient = Client & Record<string, (req: unknown, cb: (err: Error | null, res: unknown) => void) => void>;

export function createControlClient(server: string, creds: Credentials): ControlClient {
  // Apply and Get answer with the objects: as large as what was applied (the server sends up to 256 MiB).
  const channel = channelFor(server, creds, { 'grpc.max_receive_message_length': 256 * 1024 * 1024 });
  return new (weftServices().Control)(server, channel.credentials, channel.options) as unknown as ControlClient;
}

/** Calls a unary method, mapping gRPC errors to ControlErrors that keep the server's message. */
export function unary<T>(client: ControlClient, method: string, req: unknown, verb: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    (client[method] as unknown as (r: unknown, md: unknown, o: unknown, cb: (e: Error | null, r: unknown) => void) => void).call(
      client,
      req,
      new Metadata(),
      { deadline },
      (err, res) => (err ? reject(fromGrpcError(err, verb)) : resolve(res as T)),
    );
  });
}


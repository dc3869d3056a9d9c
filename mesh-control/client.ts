// gRPC clients of the control service for the CLI (admin) and the agent (node credential).
import { credentials, Metadata, type ChannelCredentials, type Client } from '@grpc/grpc-js';
import { fromGrpcError } from './errors.ts';
import { weftServices } from './proto/load.ts';

export interface Credentials {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function channelCredentials(c: Credentials): ChannelCredentials {
  return credentials.createSsl(Buffer.from(c.caPem), Buffer.from(c.keyPem), Buffer.from(c.certPem));
}

export type ControlClient = Client & Record<string, (req: unknown, cb: (err: Error | null, res: unknown) => void) => void>;

export function createControlClient(server: string, creds: Credentials): ControlClient {
  return new (weftServices().Control)(server, channelCredentials(creds)) as unknown as ControlClient;
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


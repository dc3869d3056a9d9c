// A gRPC bidi stream over Node's HTTP/2 client with the message framing by hand (1 byte compressed
// flag, 4 bytes length, the message): the simulated agents of the control benchmark and the
// clients of its floor. One mTLS connection (HTTP/2 session) per stream. It costs the client ~2/3
// of grpc-js's CPU per message: in a cluster every agent has its own node, here 1,000 of them share
// the control service's 2 cores.
import { connect as http2Connect, constants as h2 } from 'node:http2';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { IP_TARGET_SERVER_NAME } from '../../mesh-control/client.ts';
import { splitHostPort } from '../../mesh-control/client-config.ts';

export interface StreamTls {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** The name the server certificate is checked against when the server is dialed by name. */
  servername?: string;
}

/** Opens one stream of `path` on its own connection; returns its message writer. */
export function openGrpcStream(server: string, tls: StreamTls, path: string, onMessage: (message: Buffer) => void, onError: (message: string) => void): (message: Buffer) => void {
  const [host] = splitHostPort(server, 'server address');
  // As mesh-control/client.ts: a server dialed by IP is checked against the IPs in its certificate.
  const identity = isIP(host) && !tls.servername ? { servername: IP_TARGET_SERVER_NAME, checkServerIdentity: (_name: string, peer: PeerCertificate) => checkServerIdentity(host, peer) } : { servername: tls.servername ?? host };
  const session = http2Connect(`https://${server}`, { ca: tls.caPem, key: tls.keyPem, cert: tls.certPem, ...identity });
  session.on('error', (err) => onError(err.message));
  const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: path, [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc', [h2.HTTP2_HEADER_TE]: 'trailers' });
  stream.on('error', (err) => onError(err.message));
  stream.on('trailers', (t) => t['grpc-status'] !== '0' && onError(`grpc-status ${String(t['grpc-status'])}: ${String(t['grpc-message'] ?? '')}`));
  // Chunks are joined only when a message spans them.
  let chunks: Buffer[] = [];
  let buffered = 0;
  let length = -1;
  const take = (n: number): Buffer => {
    const joined = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, buffered);
    chunks = joined.length > n ? [joined.subarray(n)] : [];
    buffered -= n;
    return joined.subarray(0, n);
  };
  stream.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    buffered += chunk.length;
    for (;;) {
      if (length < 0) {
        if (buffered < 5) return;
        const head = take(5);
        if (head[0] !== 0) {
          stream.close(h2.NGHTTP2_PROTOCOL_ERROR);
          return onError('a compressed message arrived; none was asked for');
        }
        length = head.readUInt32BE(1);
      }
      if (buffered < length) return;
      const message = take(length);
      length = -1;
      onMessage(message);
    }
  });
  return (message) => {
    const framed = Buffer.allocUnsafe(5 + message.length);
    framed[0] = 0;
    framed.writeUInt32BE(message.length, 1);
    message.copy(framed, 5);
    stream.write(framed);
  };
}

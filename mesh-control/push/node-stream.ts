// The NodeSync stream served from grpc-js's call layer (a server interceptor) instead of through a
// ServerDuplexStream: the Duplex adds a Readable and a Writable in object mode per agent, with their
// buffering state, write callbacks and nextTicks on every update and ACK. Without it a fan-out of
// one message to 1,000 mTLS streams and their ACKs finished 25–29 % sooner (CPU the same within noise;
// `node bench/run.mjs control --floor`, bench/control/README.md). An update goes straight to
// `sendMessage` (HTTP/2 stream → TLS) and an ACK is handed to node-sync in the callback that decoded
// it; grpc-js still does the HTTP/2 framing, deadlines, status and mTLS.
import { EventEmitter } from 'node:events';
import { Metadata, ServerInterceptingCall, status as Status, type ServerInterceptingCallInterface, type ServerInterceptor } from '@grpc/grpc-js';
import type { NodeRequest } from './node-sync.ts';
import type { EncodedUpdate } from './wire.ts';

/** A failure to end the stream with, as `emit('error', …)` carries it (the ServerDuplexStream contract). */
interface StreamError {
  code?: number;
  details?: string;
  message?: string;
  metadata?: Metadata;
}

/**
 * One agent's stream: events 'data' (a NodeRequest), 'end' (the agent half-closed), 'close' (gone);
 * `emit('error', {code, details})` ends it with that status, `end()` with OK.
 */
export class NodeStream extends EventEmitter {
  readonly #call: ServerInterceptingCallInterface;
  #done = false;
  /** The request's metadata (grpc-js hands it over in start(), before any message). */
  metadata: Metadata = new Metadata();

  constructor(call: ServerInterceptingCallInterface) {
    super();
    this.#call = call;
    this.on('error', (err: StreamError) => this.#finish(err.code ?? Status.UNKNOWN, err.details ?? err.message ?? 'unknown error', err.metadata));
    call.start({
      onReceiveMetadata: (metadata: Metadata) => (this.metadata = metadata),
      onReceiveMessage: (req: NodeRequest) => {
        this.emit('data', req);
        // grpc-js pauses the HTTP/2 stream after every message until the next read is asked for.
        if (!this.#done) call.startRead();
      },
      onReceiveHalfClose: () => this.emit('end'),
      onCancel: () => {
        this.#done = true;
        this.emit('close');
      },
    });
    call.startRead();
  }

  write(update: EncodedUpdate): boolean {
    if (!this.#done) this.#call.sendMessage(update, () => {});
    return true;
  }

  end(): void {
    this.#finish(Status.OK, 'OK');
  }

  getAuthContext(): ReturnType<ServerInterceptingCallInterface['getAuthContext']> {
    return this.#call.getAuthContext();
  }

  #finish(code: number, details: string, metadata?: Metadata): void {
    if (this.#done) return;
    this.#done = true;
    this.#call.sendStatus({ code, details, metadata: metadata ?? new Metadata() });
  }
}

/**
 * Serves `path` with `handle(stream)` from the call layer. grpc-js starts what an interceptor
 * returns with the registered handler's listener: the returned call ignores it, so the handler and
 * its Duplex never run for that path; every other path passes through untouched.
 */
export function nodeStreamInterceptor(path: string, handle: (stream: NodeStream) => void): ServerInterceptor {
  return (method, call) => (method.path === path ? new ServerInterceptingCall(call, { start: () => handle(new NodeStream(call)) }) : new ServerInterceptingCall(call));
}

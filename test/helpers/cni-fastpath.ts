// Helpers for the CNI fast-path tests: a protocol client that plays the shim's part, and temp dirs.
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeReply, type DaemonReply } from '../../cni/daemon/protocol.ts';

/** Sends raw bytes to the daemon socket, half-closes, and returns every byte of the answer. */
export function exchangeRaw(socketPath: string, bytes: Buffer, opts: { halfClose?: boolean } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = createConnection(socketPath, () => {
      sock.write(bytes);
      if (opts.halfClose !== false) sock.end();
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

export async function exchange(socketPath: string, bytes: Buffer): Promise<DaemonReply> {
  return decodeReply(await exchangeRaw(socketPath, bytes));
}

export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

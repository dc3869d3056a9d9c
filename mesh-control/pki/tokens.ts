// One-time join tokens, as kubeadm's bootstrap tokens: `wt1.<id>.<secret>.<ca-sha256>`. The id
// finds the record, the secret proves possession (only its hash is stored), the CA hash lets a
// joining agent trust the server before it has the CA. Each token names one node and is deleted
// when used.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { ControlError } from '../errors.ts';

export const DEFAULT_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

interface TokenRecord {
  node: string;
  secretHash: string;
  expiresAt: number;
}

export interface ParsedToken {
  id: string;
  secret: string;
  caHash: string;
}

export function parseJoinToken(token: string): ParsedToken {
  const m = /^wt1\.([0-9a-f]{8})\.([0-9a-f]{32})\.([0-9a-f]{64})$/.exec(token.trim());
  if (!m) throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', 'invalid join token: expected wt1.<id>.<secret>.<ca-sha256> as printed by `weft control token create`');
  return { id: m[1], secret: m[2], caHash: m[3] };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

export interface JoinTokens {
  create(node: string, caHash: string, ttlMs?: number): { token: string; expiresAt: number };
  /** Checks and consumes a token for `node`; throws WEFT_CONTROL_UNAUTHENTICATED otherwise. */
  consume(token: string, node: string): void;
}

export function createJoinTokens(path: string, now: () => number = Date.now): JoinTokens {
  function load(): Record<string, TokenRecord> {
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as Record<string, TokenRecord>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new ControlError('WEFT_CONTROL_STORE_CORRUPT', `failed to read join tokens ${path}: ${(err as Error).message}`);
    }
  }
  function save(records: Record<string, TokenRecord>): void {
    for (const [id, r] of Object.entries(records)) if (r.expiresAt <= now()) delete records[id];
    writeFileSync(`${path}.tmp`, JSON.stringify(records), { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  }
  const denied = (why: string) => new ControlError('WEFT_CONTROL_UNAUTHENTICATED', `failed to join: ${why}`);
  return {
    create(node, caHash, ttlMs = DEFAULT_TOKEN_TTL_MS) {
      const id = randomBytes(4).toString('hex');
      const secret = randomBytes(16).toString('hex');
      const records = load();
      const expiresAt = now() + ttlMs;
      records[id] = { node, secretHash: sha256(secret).toString('hex'), expiresAt };
      save(records);
      return { token: `wt1.${id}.${secret}.${caHash}`, expiresAt };
    },
    consume(token, node) {
      const t = parseJoinToken(token);
      const records = load();
      const r = records[t.id];
      if (!r || !timingSafeEqual(Buffer.from(r.secretHash, 'hex'), sha256(t.secret))) throw denied('unknown or already used join token');
      if (r.expiresAt <= now()) throw denied(`join token ${t.id} expired`);
      if (r.node !== node) throw denied(`join token ${t.id} is for node ${r.node}, not ${node}`);
      delete records[t.id];
      save(records);
    },
  };
}

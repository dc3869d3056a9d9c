// The hashed names both kube-proxy backends use: the first characters of the RFC 4648 base32
// encoding (upper case) of sha256(text). Chain names must be short (iptables: 28 characters) and
// stable across restarts, so they are hashed rather than counted.
import { createHash } from 'node:crypto';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** base32(sha256(text)).slice(0, length), for length ≤ 51. */
export function base32Sha256(text: string, length: number): string {
  const d = createHash('sha256').update(text).digest();
  let out = '';
  let acc = 0;
  let bits = 0;
  for (let i = 0; out.length < length; i++) {
    acc = ((acc << 8) | d[i]) & 0xfff;
    bits += 8;
    while (bits >= 5 && out.length < length) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
  }
  return out;
}

// mesh-control's own certificate authority: it signs the server certificate, the admin client
// certificate and one certificate per node (issued at join). Identities are the certificate's
// common name: `weft:node:<node>` for node agents, `weft:admin` for the CLI.
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { ControlError } from '../errors.ts';
import { createCa, createKeyAndCsr, signCsr } from './openssl.ts';

export const ADMIN_IDENTITY = 'weft:admin';
export const NODE_IDENTITY_PREFIX = 'weft:node:';
const CA_DAYS = 3650;
const LEAF_DAYS = 365;
/** Verified client certificates remembered (one per node and admin). */
const VERIFIED_CACHE = 16_384;

export type Identity = { kind: 'admin' } | { kind: 'node'; node: string };

export interface KeyPair {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthority {
  caPem: string;
  /** sha256 of the CA certificate (DER), hex: what a join token pins. */
  caHash: string;
  /** The server's certificate chain (leaf + CA) and key. */
  server: KeyPair;
  issueAdmin(): Promise<KeyPair>;
  /** Signs a node's CSR; the certificate names the node, whatever the CSR says. */
  signNode(node: string, csrPem: string): Promise<string>;
  /** The identity of a verified peer certificate (DER), or a WEFT_CONTROL_UNAUTHENTICATED error. */
  identify(peerDer: Buffer | undefined): Identity;
}

export function certHash(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

function writePrivate(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Loads the CA from `dir` or creates it, and (re)issues the server certificate when the wanted
 * names are not all in it. `serverNames` are host names or IPs clients dial.
 */
export async function openCertificateAuthority(dir: string, serverNames: string[]): Promise<CertificateAuthority> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let caPem = read(join(dir, 'ca.crt'));
  let caKey = read(join(dir, 'ca.key'));
  if (caPem === undefined || caKey === undefined) {
    const ca = await createCa('weft-control-ca', CA_DAYS);
    writePrivate(join(dir, 'ca.key'), ca.keyPem);
    writePrivate(join(dir, 'ca.crt'), ca.certPem);
    caPem = ca.certPem;
    caKey = ca.keyPem;
  }
  const ca = { certPem: caPem, keyPem: caKey };
  const caCert = new X509Certificate(caPem);
  const names = [...new Set(['localhost', '127.0.0.1', ...serverNames])];
  const altNames = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`));
  let serverCert = read(join(dir, 'server.crt'));
  let serverKey = read(join(dir, 'server.key'));
  const covers = (pem: string) => {
    const san = new X509Certificate(pem).subjectAltName ?? '';
    return names.every((n) => san.includes(isIP(n) ? `IP Address:${n}` : `DNS:${n}`)) && new X509Certificate(pem).checkIssued(caCert);
  };
  if (serverCert === undefined || serverKey === undefined || !covers(serverCert)) {
    const { keyPem, csrPem } = await createKeyAndCsr();
    serverCert = await signCsr(csrPem, ca, { commonName: 'weft-control', days: LEAF_DAYS, altNames, usage: 'server' });
    serverKey = keyPem;
    writePrivate(join(dir, 'server.key'), serverKey);
    writePrivate(join(dir, 'server.crt'), serverCert);
  }

  // Certificates already verified (DER, base64) → identity, until they expire.
  const verified = new Map<string, { identity: Identity; notAfter: number }>();
  return {
    caPem,
    caHash: certHash(caPem),
    server: { certPem: serverCert + caPem, keyPem: serverKey },
    async issueAdmin() {
      const { keyPem, csrPem } = await createKeyAndCsr();
      return { keyPem, certPem: await signCsr(csrPem, ca, { commonName: ADMIN_IDENTITY, days: LEAF_DAYS, usage: 'client' }) };
    },
    signNode(node, csrPem) {
      return signCsr(csrPem, ca, { commonName: `${NODE_IDENTITY_PREFIX}${node}`, days: LEAF_DAYS, usage: 'client' });
    },
    identify(peerDer) {
      if (!peerDer || peerDer.length === 0) {
        throw new ControlError('WEFT_CONTROL_UNAUTHENTICATED', 'no client certificate: join with a token first (weft control token create --node NAME)');
      }
      // Parsing and verifying costs ~1 ms per call: every Apply and every agent (re)connect.
      const id = peerDer.toString('base64');
      const known = verified.get(id);
      if (known && Date.now() <= known.notAfter) return known.identity;
      const checked = verify(peerDer);
      if (verified.size >= VERIFIED_CACHE) verified.delete(verified.keys().next().value!);
      verified.set(id, checked);
      return checked.identity;
    },
  };

  function verify(peerDer: Buffer): { identity: Identity; notAfter: number } {
    const cert = new X509Certificate(peerDer);
    const now = Date.now();
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) {
      throw new ControlError('WEFT_CONTROL_UNAUTHENTICATED', `client certificate ${cert.subject.trim()} is not issued by this control service's CA`);
    }
    const notAfter = Date.parse(cert.validTo);
    if (now < Date.parse(cert.validFrom) || now > notAfter) {
      throw new ControlError('WEFT_CONTROL_UNAUTHENTICATED', `client certificate ${cert.subject.trim()} is outside its validity (${cert.validFrom} to ${cert.validTo})`);
    }
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? '';
    if (cn === ADMIN_IDENTITY) return { identity: { kind: 'admin' }, notAfter };
    if (cn.startsWith(NODE_IDENTITY_PREFIX)) return { identity: { kind: 'node', node: cn.slice(NODE_IDENTITY_PREFIX.length) }, notAfter };
    throw new ControlError('WEFT_CONTROL_UNAUTHENTICATED', `client certificate names no weft identity (CN=${cn})`);
  }
}

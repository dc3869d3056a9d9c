// The few certificate operations Node's crypto cannot do (create and sign X.509), done by the
// `openssl` CLI in a private temp directory. Keys and CSRs are EC P-256.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ControlError } from '../errors.ts';

const run = promisify(execFile);

async function openssl(verb: string, args: string[], dir: string): Promise<void> {
  try {
    await run('openssl', args, { cwd: dir, timeout: 15_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const cause = e.code === 'ENOENT' ? 'the openssl command is not installed' : (e.stderr ?? e.message).trim().split('\n').slice(-2).join(' ');
    throw new ControlError('WEFT_CONTROL_PKI', `failed to ${verb}: ${cause}`, { cause: err });
  }
}

async function inTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-pki-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA certificate and its key (PEM). */
export function createCa(commonName: string, days: number): Promise<{ certPem: string; keyPem: string }> {
  return inTemp(async (dir) => {
    await openssl('create the CA certificate', [
      'req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', String(days), '-subj', `/CN=${commonName}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ], dir);
    return { certPem: await readFile(join(dir, 'ca.crt'), 'utf8'), keyPem: await readFile(join(dir, 'ca.key'), 'utf8') };
  });
}

/** A new key and a CSR for it (the subject is set by the signer, not trusted from the CSR). */
export function createKeyAndCsr(): Promise<{ keyPem: string; csrPem: string }> {
  return inTemp(async (dir) => {
    await openssl('create a key and certificate request', ['req', '-new', ...EC, '-keyout', 'k.pem', '-out', 'r.csr', '-subj', '/CN=weft'], dir);
    return { keyPem: await readFile(join(dir, 'k.pem'), 'utf8'), csrPem: await readFile(join(dir, 'r.csr'), 'utf8') };
  });
}

export interface SignOptions {
  commonName: string;
  days: number;
  /** subjectAltName entries, e.g. ["DNS:localhost", "IP:127.0.0.1"]. */
  altNames?: string[];
  usage: 'server' | 'client' | 'both';
}

/** Signs a CSR with the CA; the certificate's subject is `commonName`, whatever the CSR asked. */
export function signCsr(csrPem: string, ca: { certPem: string; keyPem: string }, opts: SignOptions): Promise<string> {
  return inTemp(async (dir) => {
    const eku = opts.usage === 'server' ? 'serverAuth' : opts.usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth';
    const ext = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', `extendedKeyUsage=${eku}`];
    if (opts.altNames?.length) ext.push(`subjectAltName=${opts.altNames.join(',')}`);
    await Promise.all([
      writeFile(join(dir, 'r.csr'), csrPem),
      writeFile(join(dir, 'ca.crt'), ca.certPem),
      writeFile(join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 }),
      writeFile(join(dir, 'ext'), `${ext.join('\n')}\n`),
    ]);
    const serial = `0x${[...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
    await openssl(`sign a certificate for ${opts.commonName}`, [
      'x509', '-req', '-in', 'r.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial, '-days', String(opts.days),
      '-subj', `/CN=${opts.commonName}`, '-extfile', 'ext', '-out', 'c.crt',
    ], dir);
    return readFile(join(dir, 'c.crt'), 'utf8');
  });
}

// Where clients find the control service and their credential without flags, as kubectl finds
// ~/.kube/config: `$WEFT_CONFIG`, else `$WEFT_HOME/config.json`, else `~/.weft/config.json`.
// `weft control` writes the admin credential there when it starts; node agents keep theirs (from
// a join) in their credentials directory in the same format.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ControlError } from './errors.ts';

export const DEFAULT_LISTEN = '127.0.0.1:7443';
export const DEFAULT_OPS_LISTEN = '127.0.0.1:7444';

export interface ClientConfig {
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function weftHome(): string {
  return process.env.WEFT_HOME ?? join(homedir(), '.weft');
}

export function defaultClientConfigPath(): string {
  return process.env.WEFT_CONFIG ?? join(weftHome(), 'config.json');
}

export function writeClientConfig(path: string, config: ClientConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(`${path}.tmp`, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function readClientConfig(path: string): ClientConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ControlError(
      'WEFT_CONTROL_UNAUTHENTICATED',
      code === 'ENOENT'
        ? `failed to read client config ${path}: no such file (is \`weft control\` running on this machine? set WEFT_HOME or WEFT_CONFIG otherwise)`
        : `failed to read client config ${path}: ${(err as Error).message}`,
    );
  }
  try {
    const c = JSON.parse(text) as ClientConfig;
    if (!c.server || !c.caPem || !c.certPem || !c.keyPem) throw new Error('server, caPem, certPem and keyPem are required');
    return c;
  } catch (err) {
    throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `failed to parse client config ${path}: ${(err as Error).message}`);
  }
}

/** host:port → [host, port]; the port may be 0 (any). */
export function splitHostPort(value: string, what: string): [string, number] {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new ControlError('WEFT_CONTROL_INVALID_CONFIG', `invalid ${what} "${value}": expected HOST:PORT`);
  return [m[1], port];
}

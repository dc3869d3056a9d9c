// Where a lab keeps its state and what it names things. Every name carries a short prefix derived
// from the lab directory, so labs at different directories (parallel tests) never collide and a
// crashed lab's leftovers are found by prefix.
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';

export const DEFAULT_LAB_DIR = '/run/weft/lab';

export function labDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.WEFT_LAB_DIR || DEFAULT_LAB_DIR);
}

export interface LabLayout {
  dir: string;
  /** `wl<4 hex>-`: starts every namespace name of this lab. */
  prefix: string;
  stateFile: string;
  /** `weft control`'s data, PKI, pid file and the admin credential (`WEFT_CONFIG` for `weft apply`). */
  controlDir: string;
  controlPidFile: string;
  adminConfig: string;
  /** The control service's gRPC socket (`--server unix:<path>`). */
  controlSocket: string;
  kubeletPidFile: string;
  leaseDir: string;
  logDir: string;
  /** Unix sockets of the pod servers (short paths: sun_path holds 108 bytes). */
  sockDir: string;
  underlayNetns: string;
  nodeNetns(node: string): string;
  nodeDir(node: string): string;
  podNetns(namespace: string, name: string): string;
  hostNetns(host: string): string;
}

export function labLayout(dir: string): LabLayout {
  const abs = resolve(dir);
  const prefix = `wl${createHash('sha256').update(abs).digest('hex').slice(0, 4)}-`;
  return {
    dir: abs,
    prefix,
    stateFile: join(abs, 'state.json'),
    controlDir: join(abs, 'control'),
    controlPidFile: join(abs, 'control', 'pid'),
    adminConfig: join(abs, 'control', 'admin.json'),
    controlSocket: join(abs, 'control.sock'),
    kubeletPidFile: join(abs, 'kubelet.pid'),
    leaseDir: join(abs, 'leases'),
    logDir: join(abs, 'logs'),
    sockDir: join(abs, 's'),
    underlayNetns: `${prefix}underlay`,
    nodeNetns: (node) => `${prefix}node.${node}`,
    nodeDir: (node) => join(abs, 'nodes', node),
    podNetns: (namespace, name) => `${prefix}pod.${namespace}.${name}`,
    hostNetns: (host) => `${prefix}host.${host}`,
  };
}

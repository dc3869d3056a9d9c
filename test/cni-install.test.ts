import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../cli/args.ts';
import { main } from '../cni/cli.ts';
import { installCni, pinShebang, renderConflist } from '../cni/install.ts';
import { cniPaths } from '../cni/shim/paths.ts';
import { tempDir } from './helpers/cni-fastpath.ts';

const dir = tempDir('wt-cni-install');
const bin = join(dir.path, 'bin');
const conf = join(dir.path, 'net.d');

beforeAll(() => {
  // The fallback plugin is copied from the bundle; build it if this checkout has not yet.
  if (!existsSync(cniPaths().pluginBundle)) execFileSync(process.execPath, ['scripts/build.mjs']);
});
afterAll(() => dir.remove());

describe('weft cni install', () => {
  it('writes the shim, the pinned fallback plugin and the conflist, atomically and with the right modes', async () => {
    const socket = join(dir.path, 'no-daemon.sock');
    const result = await installCni({ binDir: bin, confDir: conf, subnet: '10.244.3.0/24', daemonSocket: socket, mtu: 1450 });
    expect(result).toEqual({ binary: join(bin, 'weft-cni'), conflist: join(conf, '10-weft.conflist') });
    expect(readdirSync(bin).sort()).toEqual(['weft-cni', 'weft-cni.mjs']);
    expect(readdirSync(conf)).toEqual(['10-weft.conflist']);
    expect(statSync(join(bin, 'weft-cni')).mode & 0o777).toBe(0o755);
    expect(statSync(join(bin, 'weft-cni.mjs')).mode & 0o777).toBe(0o755);
    expect(statSync(join(conf, '10-weft.conflist')).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(bin, 'weft-cni')).subarray(0, 4)).toEqual(Buffer.from('\x7fELF', 'latin1'));

    const plugin = readFileSync(join(bin, 'weft-cni.mjs'), 'utf8');
    const bundle = readFileSync(cniPaths().pluginBundle, 'utf8');
    expect(plugin).toBe(`#!${process.execPath}\n${bundle.slice(bundle.indexOf('\n') + 1)}`);

    expect(JSON.parse(readFileSync(result.conflist, 'utf8'))).toEqual({
      cniVersion: '1.0.0',
      cniVersions: ['1.0.0', '1.1.0'],
      name: 'weft',
      plugins: [{
        type: 'weft-cni', bridge: 'weft0', mtu: 1450, subnet: '10.244.3.0/24', clusterCIDR: '10.244.0.0/16',
        dataDir: '/var/lib/cni/weft', daemonSocket: socket, capabilities: { portMappings: true, ips: true },
      }],
    });

    // The installed pair works end to end: no daemon, so the shim runs the real bundled plugin.
    const version = spawnSync(result.binary, [], { input: '{"cniVersion":"1.0.0"}', env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
    expect(version.status).toBe(0);
    expect(JSON.parse(version.stdout)).toMatchObject({ cniVersion: '1.0.0', supportedVersions: expect.arrayContaining(['1.0.0', '1.1.0']) });
  });

  it('reinstalls over a previous install without leaving temp files', async () => {
    await main(['install', '--bin-dir', bin, '--conf-dir', conf, '--node', 'node-a', '--etcd-endpoints', 'http://127.0.0.1:2379,http://127.0.0.1:22379']);
    expect(readdirSync(bin).sort()).toEqual(['weft-cni', 'weft-cni.mjs']);
    expect(readdirSync(conf)).toEqual(['10-weft.conflist']);
    expect(JSON.parse(readFileSync(join(conf, '10-weft.conflist'), 'utf8')).plugins[0]).toMatchObject({
      node: 'node-a', etcdEndpoints: ['http://127.0.0.1:2379', 'http://127.0.0.1:22379'],
    });
  });

  it('defaults to this host as the node and the file lease store when no subnet is given', () => {
    const plugin = JSON.parse(renderConflist({})).plugins[0];
    expect(plugin).toMatchObject({ node: hostname().toLowerCase(), leaseDir: '/var/lib/weft/leases', daemonSocket: '/run/weft/cni.sock' });
    expect(plugin.subnet).toBeUndefined();
    expect(Object.keys(plugin)).toEqual(['type', 'bridge', 'mtu', 'node', 'leaseDir', 'clusterCIDR', 'dataDir', 'daemonSocket', 'capabilities']);
  });

  it('pins the shebang even on a bundle without one', () => {
    expect(pinShebang('#!/usr/bin/env node\nbody\n', '/opt/node/bin/node')).toBe('#!/opt/node/bin/node\nbody\n');
    expect(pinShebang('body\n', '/n')).toBe('#!/n\nbody\n');
  });

  const base = ['install', '--bin-dir', bin, '--conf-dir', conf];
  const bad: Array<[string[], string]> = [
    [[...base, '--subnet', '10.244.3.1/24'], 'flag --subnet: "10.244.3.1/24" has host bits set (network is 10.244.3.0/24)'],
    [[...base, '--subnet', 'ten/8'], 'flag --subnet: "ten" is not an IPv4 address'],
    [[...base, '--subnet', '10.9.0.0/24'], 'flag --subnet: 10.9.0.0/24 is not inside the cluster CIDR 10.244.0.0/16 (set --cluster-cidr)'],
    [[...base, '--cluster-cidr', '10.244.0.0/33'], 'flag --cluster-cidr: "10.244.0.0/33" has an invalid prefix length'],
    [[...base, '--subnet', '10.244.3.0/24', '--lease-dir', '/x'], 'flag --lease-dir cannot be combined with --subnet: a static subnet needs no lease'],
    [[...base, '--lease-dir', '/x', '--etcd-endpoints', 'http://127.0.0.1:2379'], 'flag --lease-dir cannot be combined with --etcd-endpoints: choose one lease store'],
    [[...base, '--etcd-endpoints', '127.0.0.1:2379'], 'flag --etcd-endpoints: "127.0.0.1:2379" is not an http(s) URL'],
    [[...base, '--node', 'Node_A'], 'flag --node: "Node_A" is not a valid node name (lowercase letters, digits, \'-\' and \'.\')'],
    [[...base, '--mtu', '40'], 'flag --mtu: 40 is out of range 68..65535'],
    [[...base, '--mtu', 'big'], 'flag --mtu: "big" is not an integer'],
    [[...base, '--bridge', 'a-bridge-name-too-long'], 'flag --bridge: bridge name "a-bridge-name-too-long" is longer than 15 characters'],
    [[...base, '--socket', 'cni.sock'], 'flag --socket: "cni.sock" is not an absolute path'],
    [[...base, '--socket', `/${'s'.repeat(120)}`], 'is longer than 107 bytes, the limit for a unix socket path'],
    [[...base, '--data-dir', 'rel/dir'], 'flag --data-dir: "rel/dir" is not an absolute path'],
    [['install', '--conf-dir', conf], 'flag --bin-dir is required'],
    [[...base, '--subnets', '10.244.3.0/24'], 'unknown flag --subnets'],
    [['uninstall'], 'unknown cni command "uninstall"'],
    [['serve', '--socket', 'cni.sock'], 'flag --socket: "cni.sock" is not an absolute path'],
    [['serve', '--subnet', '10.244.3.0/24', '--node', 'a'], 'flag --node cannot be combined with --subnet'],
    [['serve', '--bin-dir', '/x'], 'unknown flag --bin-dir'],
  ];
  it.each(bad)('rejects %j', async (argv, message) => {
    const err = await main(argv).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain(message);
  });
});

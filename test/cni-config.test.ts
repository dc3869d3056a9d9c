// Unit tests of request parsing, version negotiation, result shapes and error output. No kernel:
// every runPlugin call here fails or finishes before any ip/nft command would run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCidr, parseIPv4 } from '../mesh-control/model/cidr.ts';
import { decodeConfig, parseCniArgs, parseEnv, parseNetConf } from '../cni/config.ts';
import { CNI_ERRORS, CniError } from '../cni/errors.ts';
import { hostVethMac, hostVethName, macFromIPv4 } from '../cni/link/names.ts';
import { renderNodeSide, renderPodSide } from '../cni/link/render.ts';
import { runPlugin } from '../cni/plugin.ts';
import { createSubnetAllocator, openLeaseStore } from '../mesh-control/leases/index.ts';
import { renderResult, type AttachmentInfo } from '../cni/result.ts';
import { negotiateVersion, SUPPORTED_VERSIONS } from '../cni/version.ts';
import { cniEnv } from './helpers/cni.ts';

const base = { cniVersion: '1.0.0', name: 'weftnet', type: 'weft-cni', subnet: '10.244.1.0/24' };
const tmp = mkdtempSync(join(tmpdir(), 'weft-cni-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return (err as CniError).code;
  }
  return undefined;
}

describe('version negotiation', () => {
  it('accepts the supported versions and answers in the one asked', () => {
    for (const v of SUPPORTED_VERSIONS) expect(negotiateVersion(v, 'ADD')).toBe(v);
  });
  it('rejects other versions with code 1 listing what is supported', () => {
    try {
      negotiateVersion('0.3.1', 'ADD');
      expect.unreachable();
    } catch (err) {
      expect((err as CniError).code).toBe(1);
      expect((err as CniError).details).toContain('1.1.0');
    }
  });
  it('allows STATUS and GC only from 1.1.0', () => {
    expect(codeOf(() => negotiateVersion('1.0.0', 'STATUS'))).toBe(1);
    expect(codeOf(() => negotiateVersion('0.4.0', 'GC'))).toBe(1);
    expect(negotiateVersion('1.1.0', 'GC')).toBe('1.1.0');
  });
  it('VERSION lists the versions and echoes the request', async () => {
    const res = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"1.0.0"}' });
    expect(res.exitCode).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  });
});

describe('CNI_ARGS and env', () => {
  it('parses K=V pairs tolerating unknown keys, empty parts and "=" in values', () => {
    expect(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=web-0;;IP=10.244.1.7;X=a=b')).toEqual({ IgnoreUnknown: '1', K8S_POD_NAME: 'web-0', IP: '10.244.1.7', X: 'a=b' });
    expect(parseCniArgs(undefined)).toEqual({});
    expect(codeOf(() => parseCniArgs('novalue'))).toBe(4);
  });
  it('requires container, netns and ifname for ADD, not netns for DEL', () => {
    expect(() => parseEnv('ADD', { CNI_COMMAND: 'ADD' })).toThrow(/CNI_CONTAINERID,CNI_IFNAME,CNI_NETNS/);
    expect(parseEnv('DEL', { CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0' }).netns).toBe('');
    expect(parseEnv('GC', {}).containerID).toBe('');
  });
  it('validates ifname and container id with code 4', () => {
    const env = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0' };
    expect(codeOf(() => parseEnv('ADD', { ...env, CNI_IFNAME: 'a-very-long-ifname0' }))).toBe(4);
    expect(codeOf(() => parseEnv('ADD', { ...env, CNI_IFNAME: 'eth/0' }))).toBe(4);
    expect(codeOf(() => parseEnv('ADD', { ...env, CNI_CONTAINERID: '-bad' }))).toBe(4);
    expect(codeOf(() => parseEnv('ADD', { ...env, CNI_NETNS: 'relative' }))).toBe(4);
  });
});

describe('config parsing', () => {
  it('applies defaults', () => {
    const c = parseNetConf({ ...base }, 'ADD');
    expect(c).toMatchObject({ bridge: 'weft0', mtu: 1500, dataDir: '/var/lib/cni/weft', daemonSocket: '/run/weft/cni.sock', portMappings: [], requestedIPs: [] });
    expect(c.clusterCIDR).toEqual(parseCidr('10.244.0.0/16'));
  });
  it('tolerates runtime-injected keys of a conflist-derived config', () => {
    const c = parseNetConf({ ...base, capabilities: { portMappings: true }, prevResult: { cniVersion: '1.0.0' }, runtimeConfig: {}, args: { cni: {} }, 'cni.dev/whatever': 1 }, 'DEL');
    expect(c.prevResult).toEqual({ cniVersion: '1.0.0' });
  });
  it('reads runtimeConfig keys case-insensitively (containerd sends Go field names)', () => {
    const c = parseNetConf({ ...base, runtimeConfig: { portMappings: [{ HostPort: 8080, ContainerPort: 80, Protocol: 'TCP', HostIP: '' }], IPs: ['10.244.1.9/24'] } }, 'ADD');
    expect(c.portMappings).toEqual([{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
    expect(c.requestedIPs).toEqual([parseIPv4('10.244.1.9')]);
  });
  it('takes a requested address from CNI_ARGS IP= too', () => {
    expect(parseNetConf({ ...base }, 'ADD', { IP: '10.244.1.20' }).requestedIPs).toEqual([parseIPv4('10.244.1.20')]);
  });
  it('names the field and the cause (code 7)', () => {
    const cases: Array<[object, RegExp]> = [
      [{ ...base, name: undefined }, /name: missing network name/],
      [{ ...base, mtu: 70000 }, /mtu: must be an integer 576-65535, got 70000/],
      [{ ...base, subnet: '10.244.1.5/24' }, /subnet: .*host bits set/],
      [{ ...base, subnet: '10.244.1.0/31' }, /subnet: .*too small/],
      [{ ...base, subnet: undefined }, /neither "subnet" nor "node"/],
      [{ ...base, bridge: 'this-bridge-name-is-long' }, /bridge: .*longer than 15/],
      [{ ...base, runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }, /portMappings\[0\]\.hostPort: must be an integer 1-65535, got 0/],
      [{ ...base, runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: 'icmp' }] } }, /protocol: must be tcp, udp or sctp/],
      [{ ...base, runtimeConfig: { ips: ['10.244.1.2', '10.244.1.3'] } }, /only one IPv4 address/],
      [{ ...base, dataDir: 'relative' }, /dataDir: must be an absolute path/],
    ];
    for (const [raw, message] of cases) {
      let err: CniError | undefined;
      try {
        parseNetConf(raw as Record<string, unknown>, 'ADD');
      } catch (e) {
        err = e as CniError;
      }
      expect(err?.code, String(message)).toBe(7);
      expect(err?.message).toMatch(message);
    }
  });
  it('reads GC valid attachments, falling back to the pre-rename key', () => {
    const gc = { ...base, cniVersion: '1.1.0' };
    expect(parseNetConf({ ...gc, 'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }] }, 'GC').validAttachments).toEqual([{ containerID: 'a', ifname: 'eth0' }]);
    expect(parseNetConf({ ...gc, 'cni.dev/attachments': [{ containerID: 'b', ifname: 'eth0' }] }, 'GC').validAttachments).toEqual([{ containerID: 'b', ifname: 'eth0' }]);
  });
  it('decode errors are code 6', () => {
    expect(codeOf(() => decodeConfig('{nope'))).toBe(6);
    expect(codeOf(() => decodeConfig('[]'))).toBe(6);
  });
});

describe('results per version', () => {
  const info: AttachmentInfo = {
    bridge: { name: 'weft0', mac: '0a:58:0a:f4:01:01' },
    hostVeth: { name: 'veth01234567', mac: '02:00:00:00:00:01' },
    pod: { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/var/run/netns/p' },
    address: '10.244.1.5/24',
    gateway: '10.244.1.1',
    mtu: 1450,
  };
  it('1.0.0: bridge, host veth, pod interface; ip indexes the pod interface', () => {
    expect(renderResult('1.0.0', info)).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'weft0', mac: '0a:58:0a:f4:01:01' }, { name: 'veth01234567', mac: '02:00:00:00:00:01' }, { name: 'eth0', mac: '0a:58:0a:f4:01:05', sandbox: '/var/run/netns/p' }],
      ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
      dns: {},
    });
  });
  it('0.4.0 adds version "4" on ips; 1.1.0 adds mtu on interfaces', () => {
    expect(renderResult('0.4.0', info).ips[0]).toEqual({ version: '4', address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 });
    expect(renderResult('0.4.0', info).interfaces[2].mtu).toBeUndefined();
    expect(renderResult('1.1.0', info).interfaces.map((i) => i.mtu)).toEqual([1450, 1450, 1450]);
    expect(renderResult('1.1.0', info).ips[0].version).toBeUndefined();
  });
});

describe('names and batch scripts', () => {
  it('derives the host veth name and MAC from the attachment', () => {
    expect(hostVethName('ctr1', 'eth0')).toMatch(/^veth[0-9a-f]{8}$/);
    expect(hostVethName('ctr1', 'eth0')).toBe(hostVethName('ctr1', 'eth0'));
    expect(hostVethName('ctr1', 'eth1')).not.toBe(hostVethName('ctr1', 'eth0'));
    expect(parseInt(hostVethMac('ctr1', 'eth0').slice(0, 2), 16) & 3).toBe(2);
    expect(macFromIPv4(parseIPv4('10.244.1.5'))).toBe('0a:58:0a:f4:01:05');
  });
  it('renders the node and pod batches', () => {
    expect(renderNodeSide({ bridge: 'weft0', gatewayCidr: '10.244.1.1/24', hostVeth: 'vethab', hostMac: '02:00:00:00:00:01', ifname: 'eth0', mtu: 1400, netnsPath: '/var/run/netns/p' })).toEqual([
      'addr replace 10.244.1.1/24 dev weft0',
      'link set weft0 up',
      'link add vethab mtu 1400 address 02:00:00:00:00:01 type veth peer name eth0 mtu 1400 netns /var/run/netns/p',
      'link set vethab master weft0 up',
      'link set vethab type bridge_slave hairpin on',
    ]);
    expect(renderPodSide({ ifname: 'eth0', address: '10.244.1.5/24', mac: '0a:58:0a:f4:01:05', gateway: '10.244.1.1' })).toEqual([
      'addr add 10.244.1.5/24 dev eth0',
      'link set eth0 address 0a:58:0a:f4:01:05 up',
      'route add default via 10.244.1.1 dev eth0',
    ]);
  });
});

describe('runPlugin errors', () => {
  const call = (env: Record<string, string>, conf: unknown) => runPlugin({ env, stdin: typeof conf === 'string' ? conf : JSON.stringify(conf) });
  const add = cniEnv({ command: 'ADD', containerID: 'c1', netns: '/var/run/netns/none', ifname: 'eth0' });

  it('writes {cniVersion, code, msg, details} on stdout with exit 1, and a log line on stderr', async () => {
    const res = await call(add, { ...base, mtu: 'big' });
    expect(res.exitCode).toBe(1);
    expect(JSON.parse(res.stdout)).toEqual({ cniVersion: '1.0.0', code: 7, msg: 'invalid config: mtu: must be an integer 576-65535, got "big"', details: '' });
    expect(res.stderr).toContain('WEFT_CNI_INVALID_CONFIG');
  });
  it('maps each failure class to its spec code', async () => {
    expect(JSON.parse((await call(add, '{"cniVersion":')).stdout).code).toBe(6);
    expect(JSON.parse((await call(add, { ...base, cniVersion: '0.3.1' })).stdout).code).toBe(1);
    expect(JSON.parse((await call({ ...add, CNI_IFNAME: '' }, base)).stdout).code).toBe(4);
    expect(JSON.parse((await call({ ...add, CNI_COMMAND: 'FROB' }, base)).stdout).code).toBe(4);
    expect(JSON.parse((await call(cniEnv({ command: 'STATUS' }), base)).stdout).code).toBe(1);
    expect(JSON.parse((await call(cniEnv({ command: 'GC' }), { ...base, cniVersion: '0.4.0' })).stdout).code).toBe(1);
  });
  it('CHECK needs a prevResult', async () => {
    const res = await call(cniEnv({ command: 'CHECK', containerID: 'c1', netns: '/var/run/netns/none', ifname: 'eth0' }), base);
    expect(JSON.parse(res.stdout)).toMatchObject({ code: 7, msg: 'invalid config: prevResult: required for CHECK but missing' });
  });
  it('prints the about text on stderr without CNI_COMMAND', async () => {
    const res = await runPlugin({ env: {}, stdin: '' });
    expect(res).toMatchObject({ exitCode: 0, stdout: '' });
    expect(res.stderr).toContain('weft-cni');
  });
  it('every registered code is unique', () => {
    const codes = Object.values(CNI_ERRORS).map((e) => e.code);
    expect(new Set(codes).size).toBe(codes.length);
  });
});

describe('STATUS (filesystem only)', () => {
  const status = cniEnv({ command: 'STATUS' });
  const v11 = { ...base, cniVersion: '1.1.0' };

  it('succeeds with a static subnet and a usable store', async () => {
    const res = await runPlugin({ env: status, stdin: JSON.stringify({ ...v11, dataDir: join(tmp, 'ok') }) });
    expect(res).toMatchObject({ exitCode: 0, stdout: '' });
  });
  it('is 50 without any subnet source', async () => {
    const res = await runPlugin({ env: status, stdin: JSON.stringify({ ...v11, subnet: undefined, dataDir: join(tmp, 'none') }) });
    expect(JSON.parse(res.stdout)).toMatchObject({ code: 50, msg: expect.stringContaining('no subnet known') });
  });
  it('is 50 when the node holds no lease', async () => {
    const res = await runPlugin({ env: status, stdin: JSON.stringify({ ...v11, subnet: undefined, node: 'node-a', leaseDir: join(tmp, 'leases'), dataDir: join(tmp, 'lease') }) });
    expect(JSON.parse(res.stdout)).toMatchObject({ code: 50, msg: expect.stringContaining('node-a') });
  });
  it('succeeds once the node holds a lease (subnet from lookupNodeSubnet)', async () => {
    const leaseDir = join(tmp, 'held-leases');
    const lease = await createSubnetAllocator(openLeaseStore({ dir: leaseDir }), { clusterCIDR: '10.244.0.0/16', nodeMask: 24 }).acquire('node-b', { owner: 'test' });
    expect(lease.subnet).toMatch(/^10\.244\.\d+\.0\/24$/);
    const res = await runPlugin({ env: status, stdin: JSON.stringify({ ...v11, subnet: undefined, node: 'node-b', leaseDir, dataDir: join(tmp, 'held') }) });
    expect(res).toMatchObject({ exitCode: 0, stdout: '' });
  });
  it('is 50 when the store dir is unusable', async () => {
    writeFileSync(join(tmp, 'file'), '');
    const res = await runPlugin({ env: status, stdin: JSON.stringify({ ...v11, dataDir: join(tmp, 'file') }) });
    expect(JSON.parse(res.stdout)).toMatchObject({ code: 50, msg: expect.stringContaining('address store') });
  });
  it('is 50 when the subnet is full', async () => {
    const dir = join(tmp, 'full', 'weftnet');
    mkdirSync(dir, { recursive: true });
    for (const host of [2, 3, 4, 5, 6]) writeFileSync(join(dir, `10.244.9.${host}`), `c${host}\r\neth0`);
    const res = await runPlugin({ env: status, stdin: JSON.stringify({ ...v11, subnet: '10.244.9.0/29', dataDir: join(tmp, 'full') }) });
    expect(JSON.parse(res.stdout)).toMatchObject({ code: 50, msg: 'no free address in 10.244.9.0/29: all 5 in use' });
  });
});

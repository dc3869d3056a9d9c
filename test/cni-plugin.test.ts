// The plugin exec'd as a runtime does it, inside a throwaway node namespace, wiring throwaway pod
// namespaces: every verb, the failure paths, GC, port mappings and concurrency.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostVethName } from '../cni/link/names.ts';
import { bundle, cniEnv, execCni, withPrevResult, type Bundles } from './helpers/cni.ts';
import { createNetns, netnsSkipReason, type Netns } from './helpers/netns.ts';

const skip = netnsSkipReason();
if (skip) console.warn(`skipping cni-plugin tests: ${skip}`);

describe.skipIf(skip)('weft-cni in a node namespace', () => {
  let bundles: Bundles;
  let node: Netns;
  const pods: Netns[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'weft-cni-it-'));
  const conf = (extra: object = {}) => ({ cniVersion: '1.0.0', name: 'weftnet', type: 'weft-cni', subnet: '10.88.0.0/24', mtu: 1400, dataDir: tmp, ...extra });
  const storeDir = join(tmp, 'weftnet');
  const reservations = () => readdirSync(storeDir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort();
  const pod = async () => {
    const p = await createNetns('pod');
    pods.push(p);
    return p;
  };
  const nodeLinks = async () => JSON.parse(await node.ip('-j', 'link', 'show')) as Array<{ ifname: string; master?: string }>;
  const add = (id: string, p: Netns, c: object = conf(), ifname = 'eth0', args?: string) => execCni(node, bundles.plugin, { command: 'ADD', containerID: id, netns: p.path, ifname, args }, c);
  const del = (id: string, netns: string, c: object = conf()) => execCni(node, bundles.plugin, { command: 'DEL', containerID: id, netns, ifname: 'eth0' }, c);

  beforeAll(async () => {
    bundles = await bundle({ core: 'cni/plugin.ts' });
    node = await createNetns('node');
  });
  afterAll(async () => {
    await Promise.all([...pods.map((p) => p.remove()), node?.remove()]);
    bundles?.remove();
    rmSync(tmp, { recursive: true, force: true });
  });

  for (const version of ['0.4.0', '1.0.0', '1.1.0']) {
    it(`ADD, CHECK, DEL, DEL again at cniVersion ${version}`, async () => {
      const p = await pod();
      const id = `ctr-v${version.replace(/\./g, '')}`;
      const c = conf({ cniVersion: version });
      const res = await add(id, p, c);
      expect(res.code, res.stdout + res.stderr).toBe(0);
      const result = res.json;
      expect(result.cniVersion).toBe(version);
      expect(result.interfaces.map((i: { name: string }) => i.name)).toEqual(['weft0', hostVethName(id, 'eth0'), 'eth0']);
      expect(result.interfaces[2].sandbox).toBe(p.path);
      expect(result.ips[0]).toMatchObject({ address: expect.stringMatching(/^10\.88\.0\.\d+\/24$/), gateway: '10.88.0.1', interface: 2 });
      expect(result.ips[0].version).toBe(version === '0.4.0' ? '4' : undefined);
      expect(result.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.88.0.1' }]);

      const podAddr = JSON.parse(await p.ip('-j', 'addr', 'show', 'dev', 'eth0'))[0];
      expect(podAddr.mtu).toBe(1400);
      expect(podAddr.address).toBe(result.interfaces[2].mac);
      expect(podAddr.addr_info.some((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}` === result.ips[0].address)).toBe(true);
      expect(await p.ip('route', 'show', 'default')).toContain('via 10.88.0.1 dev eth0');
      expect((await nodeLinks()).find((l) => l.ifname === hostVethName(id, 'eth0'))?.master).toBe('weft0');
      expect(await node.exec('cat', ['/proc/sys/net/ipv4/ip_forward']).then((r) => r.stdout.trim())).toBe('1');

      const check = await execCni(node, bundles.plugin, { command: 'CHECK', containerID: id, netns: p.path, ifname: 'eth0' }, withPrevResult(c, result));
      expect(check.code, check.stdout).toBe(0);

      expect((await del(id, p.path, withPrevResult(c, result))).code).toBe(0);
      expect(reservations()).not.toContain(result.ips[0].address.split('/')[0]);
      expect(await p.ip('link', 'show')).not.toContain('eth0');
      expect((await nodeLinks()).some((l) => l.ifname === hostVethName(id, 'eth0'))).toBe(false);
      const again = await del(id, p.path, withPrevResult(c, result));
      expect(again.code, again.stdout).toBe(0);
    });
  }

  it('CHECK names what differs', async () => {
    const p = await pod();
    const res = await add('ctr-check', p);
    const address = res.json.ips[0].address as string;
    await p.ip('addr', 'del', address, 'dev', 'eth0');
    await p.ip('addr', 'add', '10.88.0.250/24', 'dev', 'eth0');
    const check = await execCni(node, bundles.plugin, { command: 'CHECK', containerID: 'ctr-check', netns: p.path, ifname: 'eth0' }, withPrevResult(conf(), res.json));
    expect(check.code).toBe(1);
    expect(check.json).toMatchObject({ code: 104 });
    expect(check.json.msg).toContain(`CHECK: eth0 in ${p.path}: address ${address} missing (has 10.88.0.250/24)`);
    expect(check.json.msg).toContain('route 0.0.0.0/0 via 10.88.0.1 missing');
    expect((await del('ctr-check', p.path)).code).toBe(0);
  });

  it('DEL releases the address when the pod namespace is already gone, or CNI_NETNS is empty, without prevResult', async () => {
    const gone = await pod();
    const a = await add('ctr-gone', gone);
    const b = await add('ctr-empty', await pod());
    await gone.remove();
    const r1 = await del('ctr-gone', gone.path);
    expect(r1.code, r1.stdout).toBe(0);
    const r2 = await del('ctr-empty', '');
    expect(r2.code, r2.stdout).toBe(0);
    expect(reservations()).not.toContain(a.json.ips[0].address.split('/')[0]);
    expect(reservations()).not.toContain(b.json.ips[0].address.split('/')[0]);
    expect((await nodeLinks()).some((l) => l.ifname === hostVethName('ctr-empty', 'eth0'))).toBe(false);
  });

  it('refuses an interface that already exists in the pod, before allocating', async () => {
    const p = await pod();
    await p.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    const before = reservations();
    const res = await add('ctr-dup', p);
    expect(res.json).toMatchObject({ code: 102, msg: `interface eth0 already exists in ${p.path}` });
    expect(reservations()).toEqual(before);
    expect((await nodeLinks()).some((l) => l.ifname === hostVethName('ctr-dup', 'eth0'))).toBe(false);
  });

  it('rolls back a failed ADD: no address allocated, no link left', async () => {
    const before = reservations();
    const links = (await nodeLinks()).length;
    // A requested address outside the subnet fails before any kernel work.
    const outside = await add('ctr-rb1', await pod(), conf({ runtimeConfig: { ips: ['10.99.0.5/24'] } }));
    expect(outside.json).toMatchObject({ code: 7, msg: expect.stringContaining('requested address 10.99.0.5 is not assignable in the node subnet 10.88.0.0/24') });
    // A pod namespace path that does not exist.
    const missing = await execCni(node, bundles.plugin, { command: 'ADD', containerID: 'ctr-rb2', netns: '/var/run/netns/wt-does-not-exist', ifname: 'eth0' }, conf());
    expect(missing.json).toMatchObject({ code: 4, msg: 'CNI_NETNS /var/run/netns/wt-does-not-exist: no such network namespace' });
    // Failure after the veth exists and the address is reserved: the pod already has a default route.
    const p = await pod();
    await p.ip('link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0p');
    await p.ip('link', 'set', 'up0', 'up');
    await p.ip('link', 'set', 'up0p', 'up');
    await p.ip('addr', 'add', '192.168.200.2/24', 'dev', 'up0');
    await p.ip('route', 'add', 'default', 'via', '192.168.200.1');
    const late = await add('ctr-rb3', p);
    expect(late.json).toMatchObject({ code: 103, msg: expect.stringContaining(`failed to configure eth0 in ${p.path}: route add default via 10.88.0.1 dev eth0: `) });
    expect(reservations()).toEqual(before);
    expect((await nodeLinks()).length).toBe(links);
    expect(await p.ip('link', 'show')).not.toContain('eth0');
  });

  it('takes a requested address from CNI_ARGS IP=', async () => {
    const p = await pod();
    const res = await add('ctr-ip', p, conf(), 'eth0', 'IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.88.0.200');
    expect(res.json.ips[0].address).toBe('10.88.0.200/24');
    expect((await del('ctr-ip', p.path)).code).toBe(0);
  });

  it('GC releases every attachment not in the valid list, with its veth, and keeps the valid ones', async () => {
    const c = conf({ cniVersion: '1.1.0', name: 'gcnet' });
    const ids = ['gc-a', 'gc-b', 'gc-c'];
    const results = [];
    for (const id of ids) results.push((await add(id, await pod(), c)).json);
    const gc = await execCni(node, bundles.plugin, { command: 'GC' }, { ...c, 'cni.dev/valid-attachments': [{ containerID: 'gc-a', ifname: 'eth0' }], 'cni.dev/attachments': [{ containerID: 'gc-a', ifname: 'eth0' }] });
    expect(gc.code, gc.stdout).toBe(0);
    const left = readdirSync(join(tmp, 'gcnet')).filter((f) => /^\d/.test(f));
    expect(left).toEqual([results[0].ips[0].address.split('/')[0]]);
    const names = (await nodeLinks()).map((l) => l.ifname);
    expect(names).toContain(hostVethName('gc-a', 'eth0'));
    expect(names).not.toContain(hostVethName('gc-b', 'eth0'));
    expect(names).not.toContain(hostVethName('gc-c', 'eth0'));
    // The pre-rename key alone, and an empty list: everything goes.
    const all = await execCni(node, bundles.plugin, { command: 'GC' }, { ...c, 'cni.dev/attachments': [] });
    expect(all.code, all.stdout).toBe(0);
    expect(readdirSync(join(tmp, 'gcnet')).filter((f) => /^\d/.test(f))).toEqual([]);
  });

  it('STATUS answers 0 with a usable subnet', async () => {
    const res = await execCni(node, bundles.plugin, { command: 'STATUS' }, conf({ cniVersion: '1.1.0' }));
    expect(res.code, res.stdout).toBe(0);
  });

  it('gives 12 concurrent ADDs distinct addresses', async () => {
    const ps = await Promise.all(Array.from({ length: 12 }, () => pod()));
    const results = await Promise.all(ps.map((p, i) => add(`par-${i}`, p)));
    expect(results.every((r) => r.code === 0), results.map((r) => r.stdout).join('\n')).toBe(true);
    expect(new Set(results.map((r) => r.json.ips[0].address)).size).toBe(12);
    const dels = await Promise.all(ps.map((p, i) => del(`par-${i}`, p.path)));
    expect(dels.every((r) => r.code === 0)).toBe(true);
  });

  describe('portMappings', () => {
    const pmConf = (hostPort: number) => conf({ cniVersion: '1.1.0', capabilities: { portMappings: true }, runtimeConfig: { portMappings: [{ HostPort: hostPort, ContainerPort: 8080, Protocol: 'TCP', HostIP: '' }] } });
    let client: Netns;
    // A tiny TCP server in the pod: answers with the client address it saw, exits by itself.
    const serve = (p: Netns) => {
      const child = spawn('ip', ['netns', 'exec', p.name, process.execPath, '-e',
        "const s=require('net').createServer(c=>c.end('pod saw '+c.remoteAddress)).listen(8080,'0.0.0.0',()=>console.log('up'));setTimeout(()=>process.exit(0),30000)"],
      { stdio: ['ignore', 'pipe', 'inherit'] });
      return new Promise<() => void>((resolve) => child.stdout.once('data', () => resolve(() => child.kill())));
    };
    const fetchFrom = async (ns: Netns, host: string, port: number) => {
      const r = await ns.exec(process.execPath, ['-e',
        `const c=require('net').connect(${port},'${host}');let d='';c.on('data',x=>d+=x);c.on('end',()=>{console.log(d);process.exit(0)});c.on('error',e=>{console.log('ERR '+e.code);process.exit(1)});setTimeout(()=>{console.log('ERR timeout');process.exit(1)},3000)`]);
      return r.stdout.trim();
    };

    beforeAll(async () => {
      // A client outside the node, reaching it over a veth: 192.168.77.2 -> node 192.168.77.1.
      client = await createNetns('client');
      await node.ip('link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client.name);
      await node.ip('addr', 'add', '192.168.77.1/24', 'dev', 'uplink');
      await node.ip('link', 'set', 'uplink', 'up');
      await client.ip('addr', 'add', '192.168.77.2/24', 'dev', 'eth0');
      await client.ip('link', 'set', 'eth0', 'up');
    });
    afterAll(async () => {
      await client?.remove();
    });

    it('forwards a hostPort from another namespace, from the node itself and hairpin, and DEL/GC remove the rules', async () => {
      const p = await pod();
      const res = await add('ctr-pm', p, pmConf(30080));
      expect(res.code, res.stdout).toBe(0);
      const podIP = res.json.ips[0].address.split('/')[0];
      const stop = await serve(p);
      try {
        expect(await fetchFrom(client, '192.168.77.1', 30080)).toBe('pod saw 192.168.77.2');
        expect(await fetchFrom(node, '192.168.77.1', 30080)).toBe('pod saw 192.168.77.1');
        expect(await fetchFrom(node, '127.0.0.1', 30080)).toBe('pod saw 10.88.0.1');
        expect(await fetchFrom(p, '192.168.77.1', 30080)).toBe('pod saw 10.88.0.1');
        // Pod to pod on the bridge, without NAT.
        const other = await add('ctr-pm-peer', await pod(), conf());
        expect(await fetchFrom(pods[pods.length - 1], podIP, 8080)).toBe(`pod saw ${other.json.ips[0].address.split('/')[0]}`);
        // ADD is idempotent for the rules: re-applying the same chains does not duplicate them.
        const table = await node.exec('nft', ['list', 'table', 'ip', 'weft-portmap']);
        expect(table.stdout).toContain('ctr-pm/eth0');
        expect(table.stdout.match(/dnat to/g)).toHaveLength(2);
      } finally {
        stop();
      }
      expect((await del('ctr-pm', p.path, withPrevResult(pmConf(30080), res.json))).code).toBe(0);
      expect((await node.exec('nft', ['list', 'table', 'ip', 'weft-portmap'])).stdout).not.toContain('ctr-pm');
      expect(await fetchFrom(client, '192.168.77.1', 30080)).toMatch(/^ERR/);

      // DEL without runtimeConfig leaves the chains to GC.
      const q = await pod();
      await add('ctr-pm2', q, pmConf(30081));
      expect((await del('ctr-pm2', q.path)).code).toBe(0);
      expect((await node.exec('nft', ['list', 'table', 'ip', 'weft-portmap'])).stdout).toContain('ctr-pm2');
      const gc = await execCni(node, bundles.plugin, { command: 'GC' }, { ...conf({ cniVersion: '1.1.0' }), 'cni.dev/valid-attachments': [] });
      expect(gc.code, gc.stdout).toBe(0);
      expect((await node.exec('nft', ['list', 'table', 'ip', 'weft-portmap'])).stdout).not.toContain('pm-');
    });
  });

  it('ADD latency beside the reference bridge+host-local, measured in one run', async () => {
    const ps = await Promise.all(Array.from({ length: 15 }, () => pod()));
    const paths = ps.map((p) => p.path);
    const p50 = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const script = `
      const { runPlugin } = await import(${JSON.stringify(bundles.paths.core)});
      const conf = JSON.stringify(${JSON.stringify(conf({ name: 'latnet' }))});
      const env = (cmd, i, ns) => ({ ...${JSON.stringify(cniEnv({ command: 'ADD' }))}, CNI_COMMAND: cmd, CNI_CONTAINERID: 'lat-' + i, CNI_NETNS: ns, CNI_IFNAME: 'eth0' });
      const paths = JSON.parse(process.argv[1]);
      const adds = [], dels = [];
      for (let i = 0; i < paths.length; i++) {
        const t = performance.now();
        const r = await runPlugin({ env: env('ADD', i, paths[i]), stdin: conf });
        if (r.exitCode !== 0) { console.error(r.stdout); process.exit(1); }
        adds.push(performance.now() - t);
      }
      for (let i = 0; i < paths.length; i++) {
        const t = performance.now();
        await runPlugin({ env: env('DEL', i, paths[i]), stdin: conf });
        dels.push(performance.now() - t);
      }
      console.log(JSON.stringify({ adds, dels }));
    `;
    const r = await node.exec(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(paths)]);
    expect(r.code, r.stderr).toBe(0);
    const inProcess = JSON.parse(r.stdout) as { adds: number[]; dels: number[] };

    // The reference plugins, exec'd as a runtime would, on their own bridge and subnet.
    const refConf = { cniVersion: '1.0.0', name: 'refnet', type: 'bridge', bridge: 'cniref0', isGateway: true, mtu: 1400,
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.89.0.0/24' }]], dataDir: join(tmp, 'ref') } };
    const refAdds: number[] = [];
    for (const [i, path] of paths.entries()) {
      const t = performance.now();
      const out = await node.exec('/usr/lib/cni/bridge', [], { input: JSON.stringify(refConf), env: { ...cniEnv({ command: 'ADD', containerID: `ref-${i}`, netns: path, ifname: 'eth1' }), CNI_PATH: '/usr/lib/cni' } });
      refAdds.push(performance.now() - t);
      expect(out.code, out.stdout).toBe(0);
    }
    const execAdds: number[] = [];
    for (const [i, p] of ps.entries()) {
      const t = performance.now();
      expect((await add(`lat-exec-${i}`, p, conf({ name: 'latnet' }), 'eth2')).code).toBe(0);
      execAdds.push(performance.now() - t);
    }
    console.log(`ADD p50 over 15 pods: weft in-process ${p50(inProcess.adds).toFixed(1)} ms, ` +
      `reference bridge+host-local exec'd ${p50(refAdds).toFixed(1)} ms, weft exec'd ${p50(execAdds).toFixed(1)} ms ` +
      `(ratio in-process/reference ${(p50(inProcess.adds) / p50(refAdds)).toFixed(2)}); weft DEL p50 in-process ${p50(inProcess.dels).toFixed(1)} ms`);
    expect(p50(inProcess.adds)).toBeLessThan(p50(refAdds) * 2);
  });
});

// A node namespace for the proxy's kernel tests: a veth pair carrying the node IP and a route for
// the service range, and an "endpoint" address on lo (10.180.0.1) serving TCP 80 with "ok".
import { spawn, type ChildProcess } from 'node:child_process';
import { createNetns, type Netns } from './netns.ts';
import { TEST_NODE_IP } from './proxy-fixtures.ts';

export async function nodeNamespace(label: string): Promise<{ ns: Netns; server: ChildProcess }> {
  const ns = await createNetns(label);
  try {
    await ns.ip('link', 'add', 'wtv0', 'type', 'veth', 'peer', 'name', 'wtv1');
    await ns.ip('addr', 'add', `${TEST_NODE_IP}/24`, 'dev', 'wtv0');
    await ns.ip('link', 'set', 'wtv0', 'up');
    await ns.ip('link', 'set', 'wtv1', 'up');
    await ns.ip('route', 'add', '172.30.0.0/16', 'dev', 'wtv0');
    await ns.ip('addr', 'add', '10.180.0.1/32', 'dev', 'lo');
    const server = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e',
      "require('net').createServer((s)=>s.end('ok')).listen(80,'10.180.0.1',()=>console.log('listening'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server did not start in 10 s')), 10_000);
      server.stdout?.once('data', () => { clearTimeout(t); resolve(); });
    });
    return { ns, server };
  } catch (err) {
    await ns.remove();
    throw err;
  }
}

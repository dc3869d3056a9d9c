// Warm `ip -b` sessions, checked against what a plain `ip -b -` reports. Root: the batches create
// dummy links, always inside a namespace this test creates (via `ip -n`).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIpSessionPool, type IpSessionPool } from '../cni/daemon/ip-session.ts';
import { runCommand } from '../cni/exec.ts';

const isRoot = process.getuid?.() === 0;
const ns = `wt-ipses-${randomBytes(3).toString('hex')}`;
const links = () => execFileSync('ip', ['-n', ns, '-br', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' });

describe.skipIf(!isRoot)('ip session pool (root)', () => {
  let pool: IpSessionPool;
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
    pool = createIpSessionPool({ size: 2, globalArgs: ['-n', ns] });
  });
  afterAll(async () => {
    await pool?.close();
    spawnSync('ip', ['netns', 'del', ns]);
  });

  it('runs a batch and reports success with no output', async () => {
    expect(await pool.run(['link add wtd0 type bridge', 'link set wtd0 up'])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(links()).toMatch(/^wtd0 /m);
  });

  it('names the failed line, numbered within the batch, as `ip -b -` does', async () => {
    const batch = ['link add wtd1 type bridge', 'link add wtd0 type bridge', 'link set wtd1 up'];
    const warm = await pool.run(batch);
    const cold = await runCommand('ip', ['-n', ns, '-b', '-'], ['link add wtd2 type bridge', 'link add wtd0 type bridge'].join('\n') + '\n');
    expect(warm.code).toBe(1);
    expect(warm.stderr).toBe(cold.stderr);
    expect(warm.stderr).toMatch(/File exists\nCommand failed -:2\n$/);
    // Like `ip -b -`, the batch stops at the failed line: wtd1 was never set up.
    expect(links()).toMatch(/^wtd1 +DOWN/m);
    // Later batches on the same sessions are numbered from 1 again.
    const next = await pool.run(['link set wtd0 down', 'link del wtd-none']);
    expect(next.stderr).toMatch(/Command failed -:2\n$/);
    expect(next.stderr).not.toMatch(/wtmark/);
  });

  it('serves concurrent batches beyond its size', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => pool.run([`link add wtc${i} type bridge`])));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(links().match(/^wtc\d /gm)).toHaveLength(6);
  });

  it('reports a session that dies mid-batch as a failure, and replaces it for the next batch', async () => {
    const broken = createIpSessionPool({ size: 1, command: 'false' });
    expect(await broken.run(['link show lo'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/ip session exited during the batch/) });
    expect(await broken.run(['link show lo'])).toMatchObject({ code: 1 });
    await broken.close();
  });
});

// The exec'd plugin: env + stdin in, result or error JSON on stdout, logs on stderr.
import { cniError, renderError } from './errors.ts';
import { runPlugin } from './plugin.ts';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

let stdin: string;
try {
  stdin = await readStdin();
} catch (err) {
  process.stdout.write(renderError(cniError('WEFT_CNI_IO', `failed to read stdin: ${(err as Error).message}`), '1.1.0'));
  process.exit(1);
}
const res = await runPlugin({ env: process.env, stdin });
if (res.stderr) process.stderr.write(res.stderr);
process.stdout.write(res.stdout, () => process.exit(res.exitCode));

// The `weft` command: one binary, subcommands loaded on demand so each starts only what it uses.
import { UsageError } from './args.ts';

type Main = (argv: string[]) => Promise<number>;

const commands: Record<string, { summary: string; load: () => Promise<Main> }> = {
  cni: { summary: 'install or serve the CNI plugin (weft cni install|serve)', load: async () => (await import('../cni/cli.ts')).main },
  lab: { summary: 'a cluster on this machine in network namespaces (weft lab up|down|status|probe|exec|node)', load: async () => (await import('../lab/cli.ts')).main },
  agent: { summary: 'the node agent: service proxy, node network and CNI backend (weft agent --node NAME --mode iptables|nftables)', load: async () => (await import('../proxy/agent/cli.ts')).main },
  control: { summary: 'run the control service (weft control [--data-dir DIR | --etcd-endpoints URLS] [--listen HOST:PORT])', load: async () => (await import('../mesh-control/cli.ts')).control },
  apply: { summary: 'create or update objects from YAML (weft apply -f FILE_OR_DIR)', load: async () => (await import('../mesh-control/cli.ts')).apply },
  get: { summary: 'list objects (weft get KIND [NAME] [-o yaml|json])', load: async () => (await import('../mesh-control/cli.ts')).get },
  delete: { summary: 'delete objects named in YAML (weft delete -f FILE_OR_DIR [--grace-period N] [--force])', load: async () => (await import('../mesh-control/cli.ts')).remove },
  status: { summary: "every node's sync state (version, last ACK, lag)", load: async () => (await import('../mesh-control/cli.ts')).status },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: weft <command> [flags]\n\ncommands:\n${lines.join('\n')}\n`;
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`weft: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  return (await command.load())(rest);
}

run(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`weft: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`weft: ${err instanceof Error ? (process.env.WEFT_DEBUG ? err.stack : err.message) : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);

// Applies portmap scripts with one `nft -f -` each, in the current (node) namespace.
import type { AttachmentKey, PortMapping } from '../config.ts';
import { failureText, runCommand } from '../exec.ts';
import { parsePortmapBases, portmapChainBase, PORTMAP_TABLE, renderPortmapAdd, renderPortmapDelete } from './render.ts';

async function nft(script: string, what: string): Promise<void> {
  const r = await runCommand('nft', ['-f', '-'], script);
  if (r.code !== 0) throw new Error(`failed to ${what}: nft: ${failureText(r)}`);
}

export function addPortMappings(key: AttachmentKey, podIP: string, mappings: PortMapping[]): Promise<void> {
  const ports = mappings.map((m) => `${m.protocol}/${m.hostPort}`).join(',');
  return nft(renderPortmapAdd(key, podIP, mappings), `map host ports ${ports} to ${podIP} in table ${PORTMAP_TABLE}`);
}

export function removePortMappings(keys: AttachmentKey[]): Promise<void> {
  return removeChains(keys.map(portmapChainBase));
}

export async function removeChains(bases: string[]): Promise<void> {
  if (bases.length === 0) return;
  await nft(renderPortmapDelete(bases), `remove port mapping chains ${bases.join(', ')} from table ${PORTMAP_TABLE}`);
}

/** Chain bases currently programmed; none when the table does not exist. */
export async function listPortmapBases(): Promise<string[]> {
  const r = await runCommand('nft', ['list', 'table', 'ip', PORTMAP_TABLE]);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return [];
    throw new Error(`failed to list table ${PORTMAP_TABLE}: nft: ${failureText(r)}`);
  }
  return parsePortmapBases(r.stdout);
}

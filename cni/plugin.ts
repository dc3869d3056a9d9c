// One CNI verb, exactly as the exec'd plugin performs it (contract 1). Used by the exec'd entry
// (plugin-main.ts) and in-process by the node daemon, which calls it concurrently: no module
// state here or below; every request opens what it needs.
import { decodeConfig, parseCommand, parseEnv, parseNetConf } from './config.ts';
import { renderError, toCniError } from './errors.ts';
import type { IpRunner } from './link/apply.ts';
import { cmdAdd } from './verbs/add.ts';
import { cmdCheck } from './verbs/check.ts';
import { cmdDel } from './verbs/del.ts';
import { cmdGc } from './verbs/gc.ts';
import { cmdStatus } from './verbs/status.ts';
import { SUPPORTED_VERSIONS, versionResult } from './version.ts';

export interface PluginRequest { env: Record<string, string | undefined>; stdin: string }
export interface PluginResponse { exitCode: number; stdout: string; stderr: string }
/** What the long-lived daemon lends a verb; the exec'd plugin uses the defaults. */
export interface PluginDeps { ip?: IpRunner }

const ABOUT = `weft-cni: weft CNI plugin (bridge + node-subnet IPAM), CNI spec versions ${SUPPORTED_VERSIONS.join(', ')}\n`;

function requestedVersion(stdin: string): string | undefined {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

export async function runPlugin(req: PluginRequest, deps: PluginDeps = {}): Promise<PluginResponse> {
  let version: string = requestedVersion(req.stdin) ?? SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1];
  let verb = req.env.CNI_COMMAND ?? '';
  try {
    const command = parseCommand(req.env);
    if (!command) return { exitCode: 0, stdout: '', stderr: ABOUT };
    verb = command;
    if (command === 'VERSION') return { exitCode: 0, stdout: versionResult(requestedVersion(req.stdin)), stderr: '' };
    const env = parseEnv(command, req.env);
    const raw = decodeConfig(req.stdin);
    const conf = parseNetConf(raw, command, env.args);
    version = conf.cniVersion;
    switch (command) {
      case 'ADD':
        return { exitCode: 0, stdout: JSON.stringify(await cmdAdd(env, conf, deps.ip)), stderr: '' };
      case 'DEL':
        await cmdDel(env, conf, deps.ip);
        break;
      case 'CHECK':
        await cmdCheck(env, conf);
        break;
      case 'STATUS':
        await cmdStatus(conf);
        break;
      case 'GC':
        await cmdGc(conf, deps.ip);
        break;
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  } catch (err) {
    const e = toCniError(err);
    const where = req.env.CNI_CONTAINERID ? ` ${req.env.CNI_CONTAINERID}/${req.env.CNI_IFNAME ?? ''}` : '';
    return { exitCode: 1, stdout: renderError(e, version), stderr: `weft-cni ${verb}${where}: ${e.errorName} (code ${e.code}): ${e.message}${e.details ? ` [${e.details}]` : ''}\n` };
  }
}

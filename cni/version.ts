// Which spec versions weft speaks and which verbs each allows. 0.4.0 and 1.0.0 are what
// libcni <= 1.1 (containerd 1.6/1.7) can parse; 1.1.0 adds STATUS and GC.
import { cniError } from './errors.ts';

export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

export const VERBS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type Verb = (typeof VERBS)[number];

/** Compares dotted versions numerically ("1.10.0" > "1.9.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The config's version if weft supports it and the verb exists in it; a code-1 error otherwise. */
export function negotiateVersion(requested: string, verb: Verb): CniVersion {
  const version = SUPPORTED_VERSIONS.find((v) => v === requested);
  if (!version) {
    throw cniError('WEFT_CNI_INCOMPATIBLE_VERSION', `incompatible CNI versions: config cniVersion "${requested}" is not supported`,
      `plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`);
  }
  if ((verb === 'STATUS' || verb === 'GC') && compareVersions(version, '1.1.0') < 0) {
    throw cniError('WEFT_CNI_INCOMPATIBLE_VERSION', `config version ${version} does not allow ${verb}`, `${verb} needs cniVersion 1.1.0 or later`);
  }
  return version;
}

export function versionResult(requested: string | undefined): string {
  return JSON.stringify({ cniVersion: requested || SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.length - 1], supportedVersions: SUPPORTED_VERSIONS });
}

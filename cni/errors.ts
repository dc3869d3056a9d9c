// Every error the plugin reports, with its stable name and the CNI numeric code it maps to.
// Codes 1-99 are the spec's; 100+ are weft's own (see cni/README.md, "Errors").

export const CNI_ERRORS = {
  WEFT_CNI_INCOMPATIBLE_VERSION: { code: 1, summary: 'the requested cniVersion (or verb for that version) is not supported' },
  WEFT_CNI_INVALID_ENV: { code: 4, summary: 'a CNI_* environment variable is missing or invalid' },
  WEFT_CNI_IO: { code: 5, summary: 'reading the request failed' },
  WEFT_CNI_DECODE: { code: 6, summary: 'the configuration or prevResult is not valid JSON of the expected shape' },
  WEFT_CNI_INVALID_CONFIG: { code: 7, summary: 'a configuration key or runtime argument has an invalid value' },
  WEFT_CNI_TRY_AGAIN: { code: 11, summary: 'a transient condition: the node subnet is not known yet' },
  WEFT_CNI_NOT_AVAILABLE: { code: 50, summary: 'STATUS: the plugin cannot serve ADD now' },
  WEFT_CNI_ADDRESSES_EXHAUSTED: { code: 100, summary: 'every address of the node subnet is allocated' },
  WEFT_CNI_ADDRESS_IN_USE: { code: 101, summary: 'the requested address, or an address for this attachment, is already allocated' },
  WEFT_CNI_INTERFACE_EXISTS: { code: 102, summary: 'the pod interface (or its host veth) already exists' },
  WEFT_CNI_KERNEL: { code: 103, summary: 'an ip/nft command failed' },
  WEFT_CNI_CHECK_FAILED: { code: 104, summary: 'CHECK found the attachment differs from prevResult' },
  WEFT_CNI_STORE: { code: 105, summary: 'the address store could not be read or written' },
  WEFT_CNI_GC: { code: 106, summary: 'GC could not remove some stale resources' },
  WEFT_CNI_INTERNAL: { code: 999, summary: 'an unexpected failure' },
} as const;

export type CniErrorName = keyof typeof CNI_ERRORS;

export class CniError extends Error {
  readonly code: number;
  constructor(readonly errorName: CniErrorName, message: string, readonly details = '') {
    super(message);
    this.name = 'CniError';
    this.code = CNI_ERRORS[errorName].code;
  }
}

export function cniError(name: CniErrorName, message: string, details?: string): CniError {
  return new CniError(name, message, details);
}

/** Any thrown value as a CniError (unexpected ones become WEFT_CNI_INTERNAL). */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CniError('WEFT_CNI_INTERNAL', message, err instanceof Error && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : '');
}

/** The error object the spec asks for on stdout. */
export function renderError(err: CniError, cniVersion: string): string {
  return JSON.stringify({ cniVersion, code: err.code, msg: err.message, details: err.details });
}

// Coded errors of the control service. Codes are stable API: the CLI and the agent branch on
// `code` (and the gRPC status carries it in the message prefix), people read `message`.
import { status as GrpcStatus } from '@grpc/grpc-js';

export type ControlErrorCode =
  | 'WEFT_CONTROL_INVALID_CONFIG'
  | 'WEFT_CONTROL_INVALID_OBJECT'
  | 'WEFT_CONTROL_NOT_FOUND'
  | 'WEFT_CONTROL_CONFLICT'
  | 'WEFT_CONTROL_WATCH_EXPIRED'
  | 'WEFT_CONTROL_STORE_IO'
  | 'WEFT_CONTROL_STORE_CORRUPT'
  | 'WEFT_CONTROL_STORE_UNAVAILABLE'
  | 'WEFT_CONTROL_ALLOCATION'
  | 'WEFT_CONTROL_UNAUTHENTICATED'
  | 'WEFT_CONTROL_PERMISSION_DENIED'
  | 'WEFT_CONTROL_PKI'
  | 'WEFT_CONTROL_UNAVAILABLE';

export class ControlError extends Error {
  override name = 'ControlError';
  readonly code: ControlErrorCode;

  constructor(code: ControlErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isControlError(err: unknown, code?: ControlErrorCode): err is ControlError {
  return err instanceof ControlError && (code === undefined || err.code === code);
}

export function causeText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The gRPC status each error code travels as (the API server's HTTP codes, in gRPC terms). */
const GRPC_CODES: Record<ControlErrorCode, GrpcStatus> = {
  WEFT_CONTROL_INVALID_CONFIG: GrpcStatus.INVALID_ARGUMENT,
  WEFT_CONTROL_INVALID_OBJECT: GrpcStatus.INVALID_ARGUMENT,
  WEFT_CONTROL_NOT_FOUND: GrpcStatus.NOT_FOUND,
  WEFT_CONTROL_CONFLICT: GrpcStatus.ABORTED,
  WEFT_CONTROL_WATCH_EXPIRED: GrpcStatus.OUT_OF_RANGE,
  WEFT_CONTROL_STORE_IO: GrpcStatus.INTERNAL,
  WEFT_CONTROL_STORE_CORRUPT: GrpcStatus.INTERNAL,
  WEFT_CONTROL_STORE_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  WEFT_CONTROL_ALLOCATION: GrpcStatus.INVALID_ARGUMENT,
  WEFT_CONTROL_UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  WEFT_CONTROL_PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  WEFT_CONTROL_PKI: GrpcStatus.INTERNAL,
  WEFT_CONTROL_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
};

/** A gRPC service error carrying the code: `WEFT_CONTROL_CONFLICT: failed to ...`. */
export function toGrpcError(err: unknown): { code: GrpcStatus; details: string } {
  if (err instanceof ControlError) return { code: GRPC_CODES[err.code], details: `${err.code}: ${err.message}` };
  return { code: GrpcStatus.INTERNAL, details: causeText(err) };
}

/** The ControlError a gRPC error stands for (the code is recovered from the details prefix). */
export function fromGrpcError(err: unknown, verb: string): ControlError {
  const details = (err as { details?: string }).details ?? causeText(err);
  const m = /^(WEFT_CONTROL_[A-Z_]+): ([\s\S]*)$/.exec(details);
  if (m) return new ControlError(m[1] as ControlErrorCode, m[2]);
  const code = (err as { code?: number }).code;
  if (code === GrpcStatus.UNAVAILABLE || code === GrpcStatus.DEADLINE_EXCEEDED) {
    return new ControlError('WEFT_CONTROL_UNAVAILABLE', `failed to ${verb}: control service unavailable: ${details}`);
  }
  if (code === GrpcStatus.UNAUTHENTICATED) return new ControlError('WEFT_CONTROL_UNAUTHENTICATED', `failed to ${verb}: ${details}`);
  if (code === GrpcStatus.PERMISSION_DENIED) return new ControlError('WEFT_CONTROL_PERMISSION_DENIED', `failed to ${verb}: ${details}`);
  return new ControlError('WEFT_CONTROL_UNAVAILABLE', `failed to ${verb}: ${details}`);
}

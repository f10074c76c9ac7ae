/**
 * The one mapping between {@link SamsaError} and gRPC. The server turns every thrown error into
 * a status with {@link toServiceError} (in `handlers.ts`, the wrapper `server.ts` puts around
 * every handler; nowhere else); clients turn every failed call back into a SamsaError with
 * {@link fromServiceError} (in `client.ts`, and in the gateway's `routing.ts` for the calls it
 * routes). The status and the retriable flag come from the one table in
 * `services/shared/errors.ts`.
 */
import * as grpc from "@grpc/grpc-js";
import { ERROR_TABLE, ErrorCode, SamsaError } from "../errors.js";
import type { ErrorCode__Output as ProtoErrorCode } from "../generated/samsa/v1/ErrorCode.js";

/** Trailing metadata key carrying the {@link ErrorCode} name of a call-level error. */
export const ERROR_CODE_METADATA_KEY = "samsa-error-code";
/** Trailing metadata key naming the active controller (`host:port`) with NOT_CONTROLLER. */
export const CONTROLLER_METADATA_KEY = "samsa-controller";
/** Trailing metadata key naming a group's coordinator gateway (`host:port`) with NOT_COORDINATOR. */
export const COORDINATOR_METADATA_KEY = "samsa-coordinator";
/** Prefix of all Samsa metadata keys; clients copy these into {@link SamsaError.metadata}. */
export const SAMSA_METADATA_PREFIX = "samsa-";
/** Prefix of the proto enum's value names (`ERROR_CODE_NOT_LEADER`). */
export const PROTO_ERROR_CODE_PREFIX = "ERROR_CODE_";
/** The proto name of {@link ErrorCode.NONE} (buf's STANDARD lint wants a zero `_UNSPECIFIED`). */
export const PROTO_ERROR_CODE_NONE = "ERROR_CODE_UNSPECIFIED";

/**
 * What a status that did not come from a Samsa handler (no `samsa-error-code`: connection
 * failures, deadlines, proxies, message size limits) means to a Samsa client. Statuses not
 * listed become {@link ErrorCode.UNKNOWN} (not retriable).
 */
const STATUS_FALLBACK: ReadonlyMap<grpc.status, ErrorCode> = new Map([
  // The server is unreachable or went away: retry after a metadata refresh.
  [grpc.status.UNAVAILABLE, ErrorCode.LEADER_NOT_AVAILABLE],
  [grpc.status.DEADLINE_EXCEEDED, ErrorCode.REQUEST_TIMED_OUT],
  // grpc-js's own answer to a message over the size limit.
  [grpc.status.RESOURCE_EXHAUSTED, ErrorCode.MESSAGE_TOO_LARGE],
  [grpc.status.INVALID_ARGUMENT, ErrorCode.INVALID_REQUEST],
  // The server does not know the method: an incompatible request, retrying will not help.
  [grpc.status.UNIMPLEMENTED, ErrorCode.INVALID_REQUEST],
]);

/** True for a gRPC status error as grpc-js reports it: an Error with a numeric `code`. */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === "number";
}

/**
 * Server side: the gRPC status error to send for anything a handler threw. A
 * {@link SamsaError} gets its table status, its message and trailing metadata
 * `samsa-error-code: <CODE NAME>` plus its own {@link SamsaError.metadata} hints. Anything else
 * is a bug: INTERNAL with code UNKNOWN and the table's generic message, so that no internal
 * message or stack trace leaks to clients (the caller logs the original).
 */
export function toServiceError(err: unknown): grpc.ServiceError {
  const samsa = isSendable(err) ? err : new SamsaError(ErrorCode.UNKNOWN);
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(samsa.metadata ?? {})) {
    // An invalid key must not turn one error into another one thrown from the error path.
    try {
      metadata.set(key, value);
    } catch {
      // Dropped: the hint is optional, the status and code below are what matters.
    }
  }
  metadata.set(ERROR_CODE_METADATA_KEY, ErrorCode[samsa.code]);
  const code = statusOf(samsa.code);
  const details = samsa.message;
  const serviceError = new Error(details) as grpc.ServiceError;
  serviceError.name = "SamsaServiceError";
  serviceError.code = code;
  serviceError.details = details;
  serviceError.metadata = metadata;
  // The stack is the server's business; it never goes on the wire, and dropping it here keeps it
  // out of any serialiser that might copy it.
  serviceError.stack = undefined;
  return serviceError;
}

/**
 * A SamsaError with a code of the table other than NONE. Throwing NONE (or a code cast from an
 * unchecked number) is a bug, so such an error is sent as UNKNOWN like any other bug.
 */
function isSendable(err: unknown): err is SamsaError {
  return (
    err instanceof SamsaError && err.code !== ErrorCode.NONE && ERROR_TABLE[err.code] !== undefined
  );
}

/** The gRPC status of a code, from the table. */
function statusOf(code: ErrorCode): grpc.status {
  return ERROR_TABLE[code].grpcStatus as number as grpc.status;
}

/** The ErrorCode name a status error from {@link toServiceError} carries (for metrics, logs). */
export function errorCodeNameOf(err: grpc.ServiceError): string {
  const [name] = err.metadata.get(ERROR_CODE_METADATA_KEY);
  return typeof name === "string" ? name : ErrorCode[ErrorCode.UNKNOWN];
}

/**
 * Client side: the {@link SamsaError} a failed call means. With `samsa-error-code` metadata the
 * code is taken from it (and other `samsa-*` keys become {@link SamsaError.metadata}); without,
 * the status is mapped (UNAVAILABLE → LEADER_NOT_AVAILABLE, DEADLINE_EXCEEDED →
 * REQUEST_TIMED_OUT, both retriable; RESOURCE_EXHAUSTED → MESSAGE_TOO_LARGE; INVALID_ARGUMENT,
 * UNIMPLEMENTED → INVALID_REQUEST; anything else → UNKNOWN). A SamsaError passes through. The
 * original error is kept as `cause`.
 */
export function fromServiceError(err: unknown): SamsaError {
  if (err instanceof SamsaError) return err;
  if (!isServiceError(err)) {
    return new SamsaError(ErrorCode.UNKNOWN, errorMessage(err), { cause: err });
  }
  const hints: Record<string, string> = {};
  let named: ErrorCode | undefined;
  for (const [key, value] of Object.entries(err.metadata?.getMap() ?? {})) {
    if (!key.startsWith(SAMSA_METADATA_PREFIX) || typeof value !== "string") continue;
    if (key === ERROR_CODE_METADATA_KEY) named = errorCodeFromName(value);
    else hints[key] = value;
  }
  const code = named ?? STATUS_FALLBACK.get(err.code) ?? ErrorCode.UNKNOWN;
  const message = err.details || ERROR_TABLE[code].message;
  const metadata = Object.keys(hints).length > 0 ? hints : undefined;
  return new SamsaError(code, message, { cause: err, metadata });
}

function errorMessage(err: unknown): string | undefined {
  return err instanceof Error ? err.message : undefined;
}

/** The {@link ErrorCode} named `name` (`NOT_LEADER`), or UNKNOWN for a name this build lacks. */
export function errorCodeFromName(name: string): ErrorCode {
  const value = (ErrorCode as unknown as Record<string, unknown>)[name];
  return typeof value === "number" ? (value as ErrorCode) : ErrorCode.UNKNOWN;
}

/** The proto enum value of a code (the numbers are identical by construction and by test). */
export function toProtoErrorCode(code: ErrorCode): ProtoErrorCode {
  return code as number as ProtoErrorCode;
}

/**
 * The {@link ErrorCode} of a proto enum value, as a number or as its proto name
 * (`ERROR_CODE_NOT_LEADER`). A value this build does not know (a newer peer) becomes UNKNOWN.
 */
export function fromProtoErrorCode(value: number | string | null | undefined): ErrorCode {
  if (value === null || value === undefined) return ErrorCode.NONE;
  if (typeof value === "number") {
    return ErrorCode[value] === undefined ? ErrorCode.UNKNOWN : (value as ErrorCode);
  }
  if (value === PROTO_ERROR_CODE_NONE) return ErrorCode.NONE;
  if (!value.startsWith(PROTO_ERROR_CODE_PREFIX)) return ErrorCode.UNKNOWN;
  return errorCodeFromName(value.slice(PROTO_ERROR_CODE_PREFIX.length));
}

/** The proto enum name of a code: `ERROR_CODE_NOT_LEADER`, `ERROR_CODE_UNSPECIFIED` for NONE. */
export function protoErrorCodeName(code: ErrorCode): string {
  return code === ErrorCode.NONE
    ? PROTO_ERROR_CODE_NONE
    : PROTO_ERROR_CODE_PREFIX + ErrorCode[code];
}

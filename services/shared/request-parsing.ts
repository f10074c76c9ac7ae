/**
 * Turning request fields into checked values. proto3 gives defaults for missing fields and
 * int64 values arrive as strings; anything malformed becomes INVALID_REQUEST here, so handlers
 * and storage only ever see sane numbers.
 */
import { ErrorCode, SamsaError } from "./errors.js";
import type { ErrorCode as ProtoErrorCode } from "./generated/samsa/v1/ErrorCode.js";
import { toProtoErrorCode } from "./grpc/errors.js";
import { REQUEST_PARTITIONS_MAX } from "./protocol-limits.js";

/** Largest offset or timestamp accepted: JS numbers are exact below 2^53. */
export const INT64_SAFE_MAX = Number.MAX_SAFE_INTEGER;

/** Parses an int64 carried as a string (or number) into a safe integer. */
export function parseInt64(value: string | number | undefined | null, field: string): number {
  const text = value === undefined || value === null ? "0" : String(value);
  if (!/^-?\d{1,16}$/.test(text)) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `${field} "${text}" is not a 64-bit integer in range`,
    );
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n))
    throw new SamsaError(ErrorCode.INVALID_REQUEST, `${field} ${text} is out of range`);
  return n;
}

/** Checks a topic name and partition index from a request. */
export function checkTopicPartition(topic: string, partition: number): void {
  if (typeof topic !== "string" || topic.length === 0) {
    throw new SamsaError(ErrorCode.INVALID_REQUEST, "topic is required");
  }
  if (!Number.isInteger(partition) || partition < 0) {
    throw new SamsaError(
      ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
      `partition ${partition} of ${topic} does not exist`,
    );
  }
}

/** Clamps a non-negative limit into [min, max], treating 0 / missing as `fallback`. */
export function limit(
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const v = !value || value <= 0 ? fallback : value;
  return Math.min(Math.max(v, min), max);
}

/** An error as a per-partition result: code and message (unexpected errors are UNKNOWN). */
export function errorResult(err: unknown): { errorCode: ProtoErrorCode; errorMessage: string } {
  if (err instanceof SamsaError)
    return { errorCode: toProtoErrorCode(err.code), errorMessage: err.message };
  return {
    errorCode: toProtoErrorCode(ErrorCode.UNKNOWN),
    errorMessage: "unexpected server error",
  };
}

/** The proto's "no error" value. */
export const NO_ERROR: ProtoErrorCode = 0;

/**
 * Call-level INVALID_REQUEST for a request with no partitions or more than
 * {@link REQUEST_PARTITIONS_MAX}: the broker and the gateway answer it alike.
 */
export function checkPartitionCount(n: number): void {
  if (n === 0) throw new SamsaError(ErrorCode.INVALID_REQUEST, "no partitions in the request");
  if (n > REQUEST_PARTITIONS_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `${n} partitions exceed the limit of ${REQUEST_PARTITIONS_MAX}`,
    );
  }
}

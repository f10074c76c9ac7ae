/**
 * Log offsets for groups: the log end offsets (high watermarks) that lag is measured against,
 * the log start offsets a reset or an uncommitted partition starts from, and offsets by time;
 * all through the router's ListOffsets (each partition asked of its leader, retried within the
 * deadline). Lag = log end offset − committed offset (− log start offset without a commit).
 */
import { ErrorCode } from "../../shared/errors.js";
import { IsolationLevel } from "../../shared/generated/samsa/v1/IsolationLevel.js";
import { fromProtoErrorCode } from "../../shared/grpc/errors.js";
import {
  LIST_OFFSETS_EARLIEST_TIMESTAMP,
  LIST_OFFSETS_LATEST_TIMESTAMP,
} from "../../shared/protocol-limits.js";
import { Deadline } from "../../shared/retry.js";
import { tpKey } from "./assignment.js";
import type { Router } from "../router.js";

/** Deadline of the ListOffsets behind a describe, a reset or a lag scrape, ms. */
export const LOG_OFFSETS_TIMEOUT_MS = 5_000;

/** A partition's offset from its leader, or why there is none. */
export interface LogOffset {
  /** -1 when unknown. */
  readonly offset: number;
  readonly errorCode: ErrorCode;
}

/** Which offset: the log start, the log end, or the first at or after a time (ms). */
export type OffsetSpec = "earliest" | "latest" | { readonly timestampMs: number };

/** The offsets of `partitions` by {@link tpKey}; a partition that failed has its code. */
export async function logOffsets(
  router: Router,
  partitions: readonly { topic: string; partition: number }[],
  spec: OffsetSpec,
  signal: AbortSignal,
): Promise<Map<string, LogOffset>> {
  const out = new Map<string, LogOffset>();
  if (partitions.length === 0) return out;
  const timestamp =
    spec === "earliest"
      ? LIST_OFFSETS_EARLIEST_TIMESTAMP
      : spec === "latest"
        ? LIST_OFFSETS_LATEST_TIMESTAMP
        : Math.max(0, spec.timestampMs);
  const request = {
    partitions: partitions.map((p) => ({ ...p, timestamp: String(timestamp) })),
    isolationLevel: IsolationLevel.ISOLATION_LEVEL_UNSPECIFIED,
  };
  const deadline = new Deadline(LOG_OFFSETS_TIMEOUT_MS);
  const results = await router.listOffsetParts(request, deadline, signal, "GroupOffsets");
  for (const r of results) {
    const errorCode = fromProtoErrorCode(r.errorCode);
    out.set(tpKey(r.topic, r.partition), {
      offset: errorCode === ErrorCode.NONE ? Number(r.offset) : -1,
      errorCode,
    });
  }
  return out;
}

/** Lag of a partition: -1 when the log end offset is unknown. */
export function lagOf(committed: number, logEnd: number, logStart: number): number {
  if (logEnd < 0) return -1;
  const from = committed >= 0 ? committed : Math.max(logStart, 0);
  return Math.max(0, logEnd - from);
}

/**
 * Offsets by position or time (`BrokerService.ListOffsets` on each partition's leader): the log
 * start offset ("earliest"), the high watermark ("latest"), or the first offset whose record
 * timestamp is at or after a time. Retriable failures are retried after a metadata refresh
 * within a deadline.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { IsolationLevel } from "../shared/generated/samsa/v1/IsolationLevel.js";
import { unary } from "../shared/grpc/client.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import type { Cluster } from "./metadata.js";
import { needsMetadataRefresh } from "./metadata.js";
import {
  API_TIMEOUT_MS_DEFAULT,
  backoffMs,
  Deadline,
  REQUEST_TIMEOUT_MS_DEFAULT,
  sleep,
} from "../shared/retry.js";

import {
  LIST_OFFSETS_EARLIEST_TIMESTAMP,
  LIST_OFFSETS_LATEST_TIMESTAMP,
} from "../shared/protocol-limits.js";

/** What to look up: the earliest or latest offset, or the first at/after a time (ms). */
export type OffsetSpec = "earliest" | "latest" | { timestamp: number };

/** Options of {@link listOffsets}. */
export interface ListOffsetsOptions {
  /** Deadline with retries, ms. Default {@link API_TIMEOUT_MS_DEFAULT}. */
  timeoutMs?: number;
  /** Deadline of one call, ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
}

function specTimestamp(spec: OffsetSpec): number {
  if (spec === "earliest") return LIST_OFFSETS_EARLIEST_TIMESTAMP;
  if (spec === "latest") return LIST_OFFSETS_LATEST_TIMESTAMP;
  if (!Number.isSafeInteger(spec.timestamp) || spec.timestamp < 0) {
    throw new SamsaError(
      ErrorCode.INVALID_TIMESTAMP,
      `timestamp ${spec.timestamp} is not ms since the epoch`,
    );
  }
  return spec.timestamp;
}

/**
 * The offset of `spec` for each of `partitions` of `topic`. For a timestamp after the last
 * record the answer is {@link NO_OFFSET}.
 * @throws SamsaError a non-retriable error, or the last retriable one past the deadline.
 */
export async function listOffsets(
  cluster: Cluster,
  topic: string,
  partitions: readonly number[],
  spec: OffsetSpec,
  options: ListOffsetsOptions = {},
): Promise<Map<number, number>> {
  const timestamp = String(specTimestamp(spec));
  const deadline = new Deadline(options.timeoutMs ?? API_TIMEOUT_MS_DEFAULT);
  const requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
  const result = new Map<number, number>();
  let pending = [...new Set(partitions)];
  for (let attempt = 0; pending.length > 0; attempt++) {
    const metadata = await cluster.topic(topic, {
      timeoutMs: deadline.remainingMs(),
      signal: options.signal,
    });
    const failures: SamsaError[] = [];
    const byLeader = new Map<string, number[]>();
    for (const p of pending) {
      const leader = cluster.leaderOf(metadata, p);
      if (leader instanceof SamsaError) {
        if (!leader.retriable) throw leader;
        failures.push(leader);
        continue;
      }
      byLeader.set(leader.address, [...(byLeader.get(leader.address) ?? []), p]);
    }
    await Promise.all(
      [...byLeader].map(async ([address, ps]) => {
        try {
          const response = await unary(
            cluster.client(address),
            "ListOffsets",
            {
              partitions: ps.map((partition) => ({ topic, partition, timestamp })),
              isolationLevel: IsolationLevel.ISOLATION_LEVEL_READ_COMMITTED,
            },
            { deadlineMs: deadline.requestMs(requestTimeoutMs), signal: options.signal },
          );
          for (const r of response.partitions) {
            const code = fromProtoErrorCode(r.errorCode);
            if (code === ErrorCode.NONE) result.set(r.partition, Number(r.offset));
            else
              failures.push(
                new SamsaError(
                  code,
                  `${topic}-${r.partition}: ${r.errorMessage || ErrorCode[code]}`,
                ),
              );
          }
        } catch (err) {
          if (!(err instanceof SamsaError)) throw err;
          failures.push(err);
        }
      }),
    );
    pending = pending.filter((p) => !result.has(p));
    if (pending.length === 0) break;
    const fatal = failures.find((e) => !e.retriable);
    if (fatal !== undefined) throw fatal;
    const last =
      failures[failures.length - 1] ??
      new SamsaError(
        ErrorCode.UNKNOWN,
        `${topic}: ListOffsets answered without partitions ${pending.join(",")}`,
      );
    if (deadline.expired || options.signal?.aborted || failures.length === 0) throw last;
    if (failures.some((e) => needsMetadataRefresh(e.code))) cluster.invalidate(topic);
    await sleep(backoffMs(attempt), options.signal, deadline);
  }
  return result;
}

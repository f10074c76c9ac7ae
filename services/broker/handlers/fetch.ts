/**
 * The Fetch long poll: read every asked partition within the request's byte budget, and when
 * fewer than `min_bytes` are there, park on the partitions' data waiters (no polling loop) until
 * one of them moves, the wait ends or the caller goes away.
 */
import type { FetchPartitionResult } from "../../shared/generated/samsa/v1/FetchPartitionResult.js";
import type { FetchRequest__Output } from "../../shared/generated/samsa/v1/FetchRequest.js";
import {
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_PARTITION_BYTES_MAX_DEFAULT,
  FETCH_WAIT_MS_MAX,
  NO_OFFSET,
} from "../../shared/protocol-limits.js";
import {
  checkPartitionCount,
  checkTopicPartition,
  errorResult,
  limit,
  NO_ERROR,
  parseInt64,
} from "../../shared/request-parsing.js";
import type { Partition } from "../partition.js";
import type { HandlerDeps } from "./handler-deps.js";

/** One partition's read: the answer, and what to wait on if the fetch parks. */
interface PartitionRead {
  readonly result: FetchPartitionResult;
  /** The partition, when it was read without error (only those are waited on). */
  readonly part?: Partition;
  /** The offset read from. */
  readonly offset: number;
}

const EMPTY = Buffer.alloc(0);

async function readPartition(
  deps: HandlerDeps,
  fp: FetchRequest__Output["partitions"][number],
  maxBytes: number,
): Promise<PartitionRead> {
  const base = { topic: fp.topic, partition: fp.partition };
  let offset = NO_OFFSET;
  try {
    checkTopicPartition(fp.topic, fp.partition);
    offset = parseInt64(fp.fetchOffset, "fetch_offset");
    const part = deps.replicas.partitionFor(fp.topic, fp.partition, true);
    part.checkEpoch(fp.currentLeaderEpoch ?? -1);
    const r = await part.log.read(offset, maxBytes);
    const result = {
      ...base,
      errorCode: NO_ERROR,
      highWatermark: String(r.highWatermark),
      logStartOffset: String(r.logStartOffset),
      logEndOffset: String(r.logEndOffset),
      records: r.bytes,
      nextOffset: String(r.nextOffset),
    };
    return { part, offset, result };
  } catch (err) {
    deps.logUnexpected(err, fp.topic, fp.partition);
    const none = String(NO_OFFSET);
    const result = {
      ...base,
      ...errorResult(err),
      highWatermark: none,
      logStartOffset: none,
      logEndOffset: none,
      records: EMPTY,
      nextOffset: String(offset),
    };
    return { offset, result };
  }
}

/**
 * Reads the partitions in request order within the total byte budget (`max_bytes`, capped at
 * {@link FETCH_BYTES_MAX_DEFAULT}) and each partition's own (`partition_max_bytes`). Once the
 * budget is spent the rest get no bytes, but still their offsets and errors.
 */
async function fetchOnce(
  deps: HandlerDeps,
  request: FetchRequest__Output,
): Promise<PartitionRead[]> {
  let budget = limit(request.maxBytes, FETCH_BYTES_MAX_DEFAULT, 1, FETCH_BYTES_MAX_DEFAULT);
  const out: PartitionRead[] = [];
  for (const fp of request.partitions) {
    const partMax = limit(
      fp.partitionMaxBytes,
      FETCH_PARTITION_BYTES_MAX_DEFAULT,
      1,
      FETCH_BYTES_MAX_DEFAULT,
    );
    const r = await readPartition(deps, fp, budget > 0 ? Math.min(partMax, budget) : 0);
    if (budget <= 0) r.result.records = EMPTY;
    budget -= (r.result.records as Buffer).length;
    out.push(r);
  }
  return out;
}

/** Answers a Fetch: at once when `min_bytes` are there or a partition failed, else after a long poll. */
export async function fetch(
  deps: HandlerDeps,
  request: FetchRequest__Output,
  callSignal: AbortSignal,
): Promise<{ partitions: FetchPartitionResult[] }> {
  checkPartitionCount(request.partitions.length);
  const minBytes = Math.max(request.minBytes, 1);
  const deadline = Date.now() + Math.min(Math.max(request.maxWaitMs, 0), FETCH_WAIT_MS_MAX);
  for (;;) {
    const reads = await fetchOnce(deps, request);
    const bytes = reads.reduce((n, r) => n + (r.result.records as Buffer).length, 0);
    const failed = reads.some((r) => r.result.errorCode !== NO_ERROR);
    const waitMs = deadline - Date.now();
    if (bytes >= minBytes || failed || waitMs <= 0 || callSignal.aborted) {
      const partitions = reads.map((r) => r.result);
      deps.metrics.recordFetch(partitions);
      return { partitions };
    }
    // Park until any partition's high watermark moves past what we read; then release the
    // other partitions' waiters at once rather than at their timeout.
    const woken = new AbortController();
    const signal = AbortSignal.any([callSignal, woken.signal]);
    await Promise.race(reads.map((r) => r.part!.waitForData(r.offset, waitMs, signal)));
    woken.abort();
  }
}

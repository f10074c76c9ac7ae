/**
 * The gateway's streams: Subscribe (batches of one partition, as a broker streams them) and
 * Consume (decoded records of one or every partition of a topic). Both resolve their starting
 * point to an offset first (ListOffsets through the router), then follow the partition's leader
 * with {@link followPartition}: when a leader's stream ends with a retriable error (leadership
 * moved, the broker stopped or became unreachable) the gateway finds the new leader and resumes
 * at the offset after the last batch it passed on, so the client sees one unbroken stream with
 * every record once, in order. Every stage is pull-based and bounded: a client that does not read
 * stops `send`, which stops the merge, the decoding and the reading of the broker streams, so
 * HTTP/2 flow control stops the brokers; nothing is queued beyond the bounds named below.
 */
import { Deadline } from "../shared/retry.js";
import {
  LIST_OFFSETS_EARLIEST_TIMESTAMP,
  LIST_OFFSETS_LATEST_TIMESTAMP,
} from "../shared/protocol-limits.js";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { ConsumeRequest__Output } from "../shared/generated/samsa/v1/ConsumeRequest.js";
import type { ConsumeResponse } from "../shared/generated/samsa/v1/ConsumeResponse.js";
import { IsolationLevel } from "../shared/generated/samsa/v1/IsolationLevel.js";
import { SpecialOffset } from "../shared/generated/samsa/v1/SpecialOffset.js";
import type { SubscribeRequest__Output } from "../shared/generated/samsa/v1/SubscribeRequest.js";
import type { SubscribeResponse__Output } from "../shared/generated/samsa/v1/SubscribeResponse.js";
import { STREAM_READ_AHEAD_MESSAGES, stream } from "../shared/grpc/client.js";
import { PreEncoded, type StreamSend } from "../shared/grpc/handlers.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import type { RecordHeader } from "../shared/generated/samsa/v1/RecordHeader.js";
import { decodeBatchWith } from "../shared/record-batch/builder.js";
import { batchSizeBytes } from "../shared/record-batch/header.js";
import type { RecordFactory } from "../shared/record-batch/records.js";
import { checkTopicPartition, parseInt64 } from "../shared/request-parsing.js";
import { validateTopicName } from "../shared/topic-name.js";
import {
  type EncodedRecords,
  encodeConsumeMessage,
  encodeConsumePrefix,
  encodeConsumeRecords,
} from "./consume-encoding.js";
import type { Router } from "./router.js";
import { type Attempt, asSamsaError, type Routing } from "./routing.js";

/**
 * How long a stream keeps retrying without delivering anything before it ends with the last
 * error, ms: a partition offline this long is an outage the client should hear about.
 */
export const FOLLOW_RETRY_TIMEOUT_MS = 120_000;
/** Deadline of resolving a stream's start offsets, ms. */
export const STREAM_START_TIMEOUT_MS = 30_000;
/**
 * Record bytes the gateway asks a broker for per Subscribe message of a Consume stream (a
 * larger batch still comes whole). With one message read ahead ({@link STREAM_READ_AHEAD_MESSAGES})
 * and one being decoded, a partition of a Consume whose client does not read holds about twice
 * this plus {@link GATEWAY_BROKER_FLOW_CONTROL_WINDOW_BYTES} in the gateway.
 */
export const CONSUME_SUBSCRIBE_BYTES_MAX = 64 * 1024;
/**
 * HTTP/2 flow-control window of the gateway's broker channels, per connection and per call,
 * bytes: what a broker's Subscribe stream may have in flight to the gateway while the gateway's
 * client does not read. Small because the gateway holds it per partition of every stuck
 * stream; proxied Fetch answers larger than it wait for a WINDOW_UPDATE every this many bytes.
 */
export const GATEWAY_BROKER_FLOW_CONTROL_WINDOW_BYTES = 256 * 1024;
/**
 * `max_records_per_message` of a Consume at most. A message holds the records of one Subscribe
 * message at most ({@link CONSUME_SUBSCRIBE_BYTES_MAX} and the batch that crosses it), so its
 * size is bounded by that, whatever the count.
 */
export const CONSUME_RECORDS_PER_MESSAGE_MAX = 10_000;

/** What the streams need. */
export interface StreamDeps {
  readonly routing: Routing;
  readonly router: Router;
}

/** The starting point fields Subscribe and Consume share. */
type StartSpec = Pick<SubscribeRequest__Output, "start" | "offset" | "special" | "timestamp">;

/** Subscribe through the gateway: one partition's batches, following its leader. */
export async function subscribe(
  request: SubscribeRequest__Output,
  deps: StreamDeps,
  send: StreamSend<SubscribeResponse__Output>,
  signal: AbortSignal,
): Promise<void> {
  const { topic, partition } = request;
  checkTopicPartition(topic, partition);
  const [offset] = await startOffsets(deps, topic, [partition], request, "Subscribe", signal);
  const follow = { topic, partition, offset: offset!, maxBytes: request.maxBytes };
  for await (const message of followPartition(deps.routing, follow, "Subscribe", signal))
    await send(message, message.records.length);
}

/**
 * Consume: decoded records of one or every partition, until `max_messages` records or cancelled;
 * one record per message, or with `max_records_per_message` > 1 up to that many records of one
 * partition per message (what one Subscribe message brought, never waiting for more).
 */
export async function consume(
  request: ConsumeRequest__Output,
  deps: StreamDeps,
  send: StreamSend<ConsumeResponse>,
  signal: AbortSignal,
): Promise<void> {
  const { topic } = request;
  validateTopicName(topic);
  checkTopicPartition(topic, request.partition ?? 0);
  const perMessage = request.maxRecordsPerMessage;
  if (perMessage > CONSUME_RECORDS_PER_MESSAGE_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `max_records_per_message ${perMessage} exceeds the limit of ${CONSUME_RECORDS_PER_MESSAGE_MAX}`,
    );
  }
  const deadline = new Deadline(STREAM_START_TIMEOUT_MS);
  const count = (await deps.routing.topic(topic, deadline, signal)).partitions;
  const partitions =
    request.partition === undefined ? [...Array(count).keys()] : [request.partition];
  const offsets = await startOffsets(deps, topic, partitions, request, "Consume", signal);
  const stop = new AbortController();
  const inner = AbortSignal.any([signal, stop.signal]);
  const follow = (partition: number, i: number): FollowSpec => ({
    topic,
    partition,
    offset: offsets[i]!,
    maxBytes: CONSUME_SUBSCRIBE_BYTES_MAX,
  });
  const limit = request.maxMessages;
  try {
    if (perMessage <= 1) {
      const sources = partitions.map((partition, i) =>
        partitionRecords(
          deps.routing,
          follow(partition, i),
          responseFactory(topic, partition),
          inner,
        ),
      );
      let sent = 0;
      for await (const { records } of mergeOrOne(sources, stop)) {
        for (const record of records) {
          await send(record, recordBytes(record));
          sent++;
          if (limit > 0 && sent >= limit) return;
        }
      }
      return;
    }
    const sources = partitions.map((partition, i) =>
      partitionEncoded(deps.routing, follow(partition, i), inner),
    );
    const prefixes = new Map<number, Buffer>();
    let sent = 0;
    for await (const { partition, records } of mergeOrOne(sources, stop)) {
      let prefix = prefixes.get(partition);
      if (prefix === undefined) {
        prefix = encodeConsumePrefix(topic, partition);
        prefixes.set(partition, prefix);
      }
      const count = records.ends.length;
      for (let from = 0; from < count; ) {
        let to = Math.min(count, from + perMessage);
        if (limit > 0) to = Math.min(to, from + limit - sent);
        const message = encodeConsumeMessage(prefix, records, from, to);
        await send(new PreEncoded<ConsumeResponse>(message), message.length);
        sent += to - from;
        if (limit > 0 && sent >= limit) return;
        from = to;
      }
    }
  } finally {
    stop.abort();
  }
}

/** Key and value bytes of a record, for the send buffer's bound. */
function recordBytes(record: { key?: unknown; value?: unknown }): number {
  return (
    ((record.key as Buffer | undefined)?.length ?? 0) +
    ((record.value as Buffer | undefined)?.length ?? 0)
  );
}

/** The merge of the sources; one source needs none (a Promise.race per message saved). */
function mergeOrOne<T>(
  sources: AsyncGenerator<T, void, undefined>[],
  stop: AbortController,
): AsyncGenerator<T, void, undefined> {
  return sources.length === 1 ? sources[0]! : merge(sources, stop);
}

/** Where one partition is followed from. */
interface FollowSpec {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** Byte limit of one streamed message; 0 = the broker's default. */
  readonly maxBytes: number;
}

/**
 * Streams a partition's batches from its current leader, starting at `spec.offset`, and resumes
 * at the next offset on the new leader whenever a stream ends with a retriable error. Ends when
 * `signal` aborts; throws a non-retriable error, an UNKNOWN_TOPIC_OR_PARTITION the metadata
 * confirms, or the last error after {@link FOLLOW_RETRY_TIMEOUT_MS} without progress.
 */
export async function* followPartition(
  routing: Routing,
  spec: FollowSpec,
  method: string,
  signal: AbortSignal,
): AsyncGenerator<SubscribeResponse__Output, void, undefined> {
  let offset = spec.offset;
  let number = 0;
  let failingSinceMs: number | undefined;
  while (!signal.aborted) {
    const seen = routing.version;
    let error: SamsaError;
    try {
      const target = routing.leaderFor(spec.topic, spec.partition);
      const request = { ...spec, offset: String(offset) };
      for await (const message of stream(target.client, "Subscribe", request, { signal })) {
        number = 0;
        failingSinceMs = undefined;
        offset = Number(message.nextOffset);
        routing.deps.metrics.recordBytes(spec.topic, "out", message.records.length);
        yield message;
      }
      if (signal.aborted) return;
      // A broker's stream only ends with an error; an end without one is treated as a lost one.
      error = new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "the leader ended the stream");
    } catch (err) {
      if (signal.aborted) return;
      error = asSamsaError(err);
    }
    failingSinceMs ??= Date.now();
    const attempt: Attempt = { number: number++, seen, failingSinceMs, signal };
    const stalled = Date.now() - failingSinceMs >= FOLLOW_RETRY_TIMEOUT_MS;
    if (stalled || routing.isFinal(error, attempt)) throw error;
    routing.deps.logger.debug("resuming stream", {
      topic: spec.topic,
      partition: spec.partition,
      offset,
      code: error.codeName,
    });
    await routing.pause(method, [error], attempt);
  }
}

/** Header list of the records without headers (most): one shared array, not one per record. */
const NO_HEADERS: RecordHeader[] = [];

/** A record's headers as the proto has them (a null header value as empty bytes). */
function protoHeaders(headers: readonly { key: string; value: Buffer | null }[]): RecordHeader[] {
  return headers.length === 0
    ? NO_HEADERS
    : headers.map((h) => ({ key: h.key, value: h.value ?? Buffer.alloc(0) }));
}

/**
 * One-record messages of a partition. Every record the same shape (unset key or value as
 * undefined, which protobufjs skips).
 */
function responseFactory(topic: string, partition: number): RecordFactory<ConsumeResponse> {
  return (offset, timestamp, key, value, headers) => ({
    topic,
    partition,
    offset,
    timestamp,
    key: key ?? undefined,
    value: value ?? undefined,
    headers: protoHeaders(headers),
  });
}

/** The records one Subscribe message of a partition brought. */
interface PartitionChunk<R> {
  readonly partition: number;
  readonly records: R;
}

/**
 * One partition's records from `spec.offset` on as `ConsumeRecord` entries in their encoding,
 * one run per Subscribe message (see {@link encodeConsumeRecords}).
 */
async function* partitionEncoded(
  routing: Routing,
  spec: FollowSpec,
  signal: AbortSignal,
): AsyncGenerator<PartitionChunk<EncodedRecords>, void, undefined> {
  const { partition } = spec;
  let position = spec.offset;
  for await (const message of followPartition(routing, spec, "Consume", signal)) {
    const records = encodeConsumeRecords(message.records, position);
    if (records.ends.length === 0) continue;
    position = records.lastOffset + 1;
    yield { partition, records };
  }
}

/**
 * One partition's records from `spec.offset` on, decoded by `make`, each once, as one array per
 * Subscribe message (at most {@link CONSUME_SUBSCRIBE_BYTES_MAX} of records and the batch that
 * crosses it): the async steps (the follow, the merge) are paid per message, not per record.
 * Offsets and timestamps are numbers (exact below 2^53), which protobufjs encodes without
 * parsing a string into a Long.
 */
async function* partitionRecords<T extends { offset?: unknown }>(
  routing: Routing,
  spec: FollowSpec,
  make: RecordFactory<T>,
  signal: AbortSignal,
): AsyncGenerator<PartitionChunk<T[]>, void, undefined> {
  const { partition } = spec;
  // A batch may start before the position (the first one read, or after a resume).
  let position = spec.offset;
  for await (const message of followPartition(routing, spec, "Consume", signal)) {
    const data = message.records;
    const out: T[] = [];
    for (let pos = 0; pos < data.length; ) {
      const batch = decodeBatchWith(data, pos, make, position);
      pos += batchSizeBytes(batch.header);
      for (const r of batch.records) out.push(r);
      if (batch.records.length > 0) position = Number(out[out.length - 1]!.offset) + 1;
    }
    if (out.length > 0) yield { partition, records: out };
  }
}

/**
 * Interleaves async sources fairly (a source that just delivered goes to the back), pulling
 * one item ahead per source at most. Ends when every source ended; the first error ends it
 * too. On any end, `stop` is aborted so the sources still waiting end as well.
 */
async function* merge<T>(
  sources: AsyncGenerator<T, void, undefined>[],
  stop: AbortController,
): AsyncGenerator<T, void, undefined> {
  const pull = (i: number) => sources[i]!.next().then((result) => ({ i, result }));
  const pending = new Map(sources.map((_, i) => [i, pull(i)] as const));
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      pending.delete(i);
      if (result.done) continue;
      pending.set(i, pull(i));
      yield result.value;
    }
  } finally {
    stop.abort();
    // The sources end on the abort; their last results (or errors) are of no interest now.
    for (const p of pending.values()) p.catch(() => undefined);
  }
}

/**
 * The start offset of each partition: the request's offset, or the earliest, latest or
 * by-timestamp offset from the leaders (no record at or after the time = latest, as a broker's
 * Subscribe has it). Throws a partition's error as the call's error.
 */
async function startOffsets(
  deps: StreamDeps,
  topic: string,
  partitions: readonly number[],
  start: StartSpec,
  method: string,
  signal: AbortSignal,
): Promise<number[]> {
  const timestamp = startTimestamp(start);
  if (timestamp === undefined) {
    const offset = parseInt64(start.offset, "offset");
    return partitions.map(() => offset);
  }
  const deadline = new Deadline(STREAM_START_TIMEOUT_MS);
  const list = async (ts: number, which: readonly number[]) => {
    const request = {
      partitions: which.map((partition) => ({ topic, partition, timestamp: String(ts) })),
      isolationLevel: IsolationLevel.ISOLATION_LEVEL_UNSPECIFIED,
    };
    const results = await deps.router.listOffsetParts(request, deadline, signal, method);
    return results.map((r) => {
      const code = fromProtoErrorCode(r.errorCode);
      if (code !== ErrorCode.NONE) throw new SamsaError(code, r.errorMessage || undefined);
      return Number(r.offset);
    });
  };
  const offsets = await list(timestamp, partitions);
  const none = partitions.filter((_, i) => offsets[i]! < 0);
  if (none.length > 0) {
    const latest = await list(LIST_OFFSETS_LATEST_TIMESTAMP, none);
    for (const [k, partition] of none.entries())
      offsets[partitions.indexOf(partition)] = latest[k]!;
  }
  return offsets;
}

/** The ListOffsets timestamp of a start; undefined for an explicit offset. */
function startTimestamp(start: StartSpec): number | undefined {
  switch (start.start) {
    case "offset":
      return undefined;
    case "timestamp":
      // A time before the epoch means "from the first record", as a broker treats it.
      return Math.max(parseInt64(start.timestamp, "timestamp"), 0);
    case "special":
      if (start.special === SpecialOffset.SPECIAL_OFFSET_EARLIEST)
        return LIST_OFFSETS_EARLIEST_TIMESTAMP;
      if (start.special === SpecialOffset.SPECIAL_OFFSET_LATEST)
        return LIST_OFFSETS_LATEST_TIMESTAMP;
      throw new SamsaError(ErrorCode.INVALID_REQUEST, `unknown special offset ${start.special}`);
    default:
      return LIST_OFFSETS_LATEST_TIMESTAMP;
  }
}

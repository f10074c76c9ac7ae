/**
 * A simple partition consumer (no consumer groups yet): `consume(topic, options)` is an async
 * iterable of the records of some or all partitions of a topic, from the earliest or latest
 * offset, an offset, or a time. It long-polls each partition leader with Fetch (one call per
 * leader in flight; a leader's answer is yielded as soon as it arrives), skips records below the
 * position (a batch may start before it), and follows leader changes: NOT_LEADER, fenced
 * epochs, unknown partitions and unreachable brokers refresh the metadata, back off and retry;
 * the metadata refreshes in the background, so partitions that have a leader keep being read while
 * another is offline or its leader hangs (a Fetch answer late past its wait refreshes the metadata,
 * again every FETCH_LATE_MARGIN_MS while it stays late, and a call to a broker that no longer
 * leads is cancelled and sent to the new leader). While an answer is consumed, the next Fetch to
 * its leader is already in flight. Iteration ends when the signal aborts or the caller stops; a
 * non-retriable error is thrown. {@link Consumer.consumeBatches} is the same a batch at a time.
 */
import { assert, ErrorCode, SamsaError } from "../shared/errors.js";
import type { FetchResponse__Output } from "../shared/generated/samsa/v1/FetchResponse.js";
import { IsolationLevel } from "../shared/generated/samsa/v1/IsolationLevel.js";
import { unary } from "../shared/grpc/client.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import {
  BATCH_HEADER_BYTES,
  batchSizeBytes,
  decodeBatchWith,
  lastOffsetOf,
  type RecordFactory,
  readBatchHeader,
} from "../shared/record-batch/index.js";
import { decodeBatchAt, type OnCorruptBatch, skipCorruptAnswer } from "./corrupt-batch.js";
import { listOffsets, type OffsetSpec } from "./list-offsets.js";
import { Cluster, type ClusterOptions, needsMetadataRefresh } from "./metadata.js";
import { asSamsaError } from "./produce-job.js";
import type { ConsumerBatch, ConsumerRecord } from "./records.js";
import { RecordIterator } from "./record-iterator.js";
import {
  API_TIMEOUT_MS_DEFAULT,
  backoffMs,
  REQUEST_TIMEOUT_MS_DEFAULT,
  sleep,
} from "../shared/retry.js";
import {
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_PARTITION_BYTES_MAX_DEFAULT,
  NO_OFFSET,
} from "../shared/protocol-limits.js";

/** Longest a Fetch waits for `minBytes`, ms (Kafka's `fetch.max.wait.ms`). */
export const FETCH_MAX_WAIT_MS_DEFAULT = 500;
/** Bytes a Fetch waits for (Kafka's `fetch.min.bytes`). */
export const FETCH_MIN_BYTES_DEFAULT = 1;
/** Longest the fetch loop sleeps when it has nothing to wait for (no leader known yet), ms. */
export const FETCH_IDLE_WAIT_MS = 100;
/**
 * How long past its wait (`maxWaitMs`) a Fetch answer may be before the consumer suspects the
 * leader is hung and refreshes the metadata (a new leader then gets the partitions at once), ms.
 */
export const FETCH_LATE_MARGIN_MS = 1_000;
/** Fetch's replica id for consumers. */
const CONSUMER_REPLICA_ID = -1;

/** Where to start: earliest, latest (only new records), an offset, or the first at/after a time (ms). */
export type StartFrom = "earliest" | "latest" | { offset: number } | { timestamp: number };

/** What to do when the position is outside the log (Kafka's `auto.offset.reset`). */
export type OffsetReset = "earliest" | "latest" | "none";

/** Options of {@link Consumer.consume}. */
export interface ConsumeOptions {
  /** Partitions to read; default all of the topic's. */
  partitions?: readonly number[];
  /** Default "latest". */
  from?: StartFrom;
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
  /** Default {@link FETCH_MAX_WAIT_MS_DEFAULT}. */
  maxWaitMs?: number;
  /** Default {@link FETCH_MIN_BYTES_DEFAULT}. */
  minBytes?: number;
  /** Default {@link FETCH_BYTES_MAX_DEFAULT}. */
  maxBytes?: number;
  /** Default {@link FETCH_PARTITION_BYTES_MAX_DEFAULT}. */
  partitionMaxBytes?: number;
  /** Default "none": OFFSET_OUT_OF_RANGE is thrown. */
  autoOffsetReset?: OffsetReset;
  /** Deadline of finding the topic and the start offsets, ms. Default {@link API_TIMEOUT_MS_DEFAULT}. */
  startTimeoutMs?: number;
  /**
   * Moves past damaged batches (a stored batch failing its CRC, or one that does not decode),
   * calling this for each with what was skipped. Default none: the iteration throws
   * CORRUPT_MESSAGE naming the partition and offset (a later `consume` from the offset after
   * the batch is the manual seek past it).
   */
  onCorruptBatch?: OnCorruptBatch;
}

/** Options of {@link Consumer}. Give `cluster` (shared) or `bootstrapServers` (owned). */
export interface ConsumerOptions {
  cluster?: Cluster;
  bootstrapServers?: ClusterOptions["bootstrapServers"];
  /** Deadline of one call beyond a Fetch's wait, ms. Default {@link REQUEST_TIMEOUT_MS_DEFAULT}. */
  requestTimeoutMs?: number;
}

interface PartitionState {
  partition: number;
  position: number;
  /**
   * Where the next Fetch starts when it is sent before the answer in hand is consumed (a
   * pipelined fetch): the end of that answer. Cleared when an answer for the partition is handled.
   */
  ahead: number | undefined;
  busy: boolean;
  retryAtMs: number;
  attempt: number;
}

interface FetchOutcome {
  address: string;
  states: PartitionState[];
  response?: FetchResponse__Output;
  error?: SamsaError;
}

/** A Fetch in flight to one leader. */
interface InFlight {
  readonly promise: Promise<FetchOutcome>;
  readonly states: PartitionState[];
  /** Cancels the call (its partitions moved to another leader). */
  readonly cancel: AbortController;
  /** Set when cancelled because the partitions moved: they are fetched again at once. */
  moved: boolean;
  /**
   * When the answer is late (the long poll's wait plus {@link FETCH_LATE_MARGIN_MS}), ms; once
   * late, moved on by {@link FETCH_LATE_MARGIN_MS} at each refresh it causes.
   */
  lateAtMs: number;
  /** The lateness was noticed (the metadata refreshed for it). */
  late: boolean;
}

/** Reads records of topics straight from partition leaders. */
export class Consumer {
  private readonly cluster: Cluster;
  private readonly ownsCluster: boolean;
  private readonly requestTimeoutMs: number;
  /** A metadata refresh under way (shared by every consume of this consumer). */
  private refreshing: Promise<void> | undefined;

  constructor(options: ConsumerOptions) {
    assert(
      options.cluster !== undefined || options.bootstrapServers !== undefined,
      "cluster or bootstrapServers",
    );
    this.ownsCluster = options.cluster === undefined;
    this.cluster = options.cluster ?? new Cluster({ bootstrapServers: options.bootstrapServers! });
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
  }

  /** The offsets of `spec` per partition (see {@link listOffsets}). */
  listOffsets(
    topic: string,
    partitions: readonly number[],
    spec: OffsetSpec,
    signal?: AbortSignal,
  ): Promise<Map<number, number>> {
    return listOffsets(this.cluster, topic, partitions, spec, {
      requestTimeoutMs: this.requestTimeoutMs,
      signal,
    });
  }

  /**
   * Records of `topic` from `options.from` on, until the signal aborts; see the module doc. The
   * records are served a batch at a time from {@link consumeBatches}: a `next()` with records of
   * the current batch left answers with an already resolved promise (no async generator step,
   * no fetch bookkeeping per record).
   */
  consume(
    topic: string,
    options: ConsumeOptions = {},
  ): AsyncGenerator<ConsumerRecord, void, undefined> {
    return new RecordIterator(this.consumeBatches(topic, options));
  }

  /**
   * The same records as {@link consume}, a record batch at a time: each item is the records of
   * one stored batch at or after the position (never empty), with the offset after the batch.
   * For callers that handle records in bulk; the per-record cost of an async iteration is then
   * paid once per batch (typically hundreds of records). The records' key, value and header
   * values are views into the Fetch answer: copy them to keep them longer than the batch.
   * While a batch is handled the next Fetch to its leader is already in flight (pipelined) when
   * the answer in hand held only whole, undamaged-looking batches.
   */
  async *consumeBatches(
    topic: string,
    options: ConsumeOptions = {},
  ): AsyncGenerator<ConsumerBatch, void, undefined> {
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) stop.abort();
    const signal = stop.signal;
    const inflight = new Map<string, InFlight>();
    try {
      let states: PartitionState[];
      try {
        states = await this.start(topic, options, signal);
      } catch (err) {
        if (signal.aborted) return; // stopped while starting: an empty iteration, not an error
        throw err;
      }
      while (!signal.aborted) {
        this.issueFetches(topic, states, inflight, options, signal);
        // Woken by a leader's answer, the end of a metadata refresh, or the next retry time.
        const waits: Promise<FetchOutcome | undefined>[] = [...inflight.values()].map(
          (f) => f.promise,
        );
        if (this.refreshing !== undefined) waits.push(this.refreshing.then(() => undefined));
        const next = Math.min(
          ...states.filter((s) => !s.busy).map((s) => s.retryAtMs),
          ...[...inflight.values()].filter((f) => !f.moved).map((f) => f.lateAtMs),
        );
        const pause = new AbortController();
        if (Number.isFinite(next) || waits.length === 0) {
          const ms = Number.isFinite(next) ? Math.max(1, next - Date.now()) : FETCH_IDLE_WAIT_MS;
          waits.push(sleep(ms, AbortSignal.any([signal, pause.signal])).then(() => undefined));
        }
        const outcome = await Promise.race(waits);
        pause.abort();
        if (outcome === undefined) continue;
        const done = inflight.get(outcome.address);
        inflight.delete(outcome.address);
        for (const s of outcome.states) s.busy = false;
        if (signal.aborted) break;
        if (done?.moved) continue; // cancelled on purpose: fetched again from the new leader
        if (this.fetchAhead(topic, outcome))
          this.issueFetches(topic, states, inflight, options, signal);
        yield* this.handle(topic, outcome, options, signal);
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      stop.abort(); // cancels the fetches still in flight
      for (const f of inflight.values()) f.cancel.abort();
    }
  }

  /**
   * Handles one leader's Fetch answer: yields each partition's records; an out-of-range
   * position is reset as `autoOffsetReset` says; other errors go to {@link failed}.
   */
  private async *handle(
    topic: string,
    outcome: FetchOutcome,
    options: ConsumeOptions,
    signal: AbortSignal,
  ): AsyncGenerator<ConsumerBatch, void, undefined> {
    for (const s of outcome.states) s.ahead = undefined;
    if (outcome.error !== undefined) {
      for (const s of outcome.states) this.failed(topic, s, outcome.error);
      return;
    }
    const reset = options.autoOffsetReset ?? "none";
    for (const result of outcome.response!.partitions) {
      const s = outcome.states.find((st) => st.partition === result.partition);
      if (s === undefined || result.topic !== topic) continue;
      const code = fromProtoErrorCode(result.errorCode);
      if (code === ErrorCode.NONE) {
        s.attempt = 0;
        yield* this.batches(topic, s, result.records, options.onCorruptBatch);
      } else if (code === ErrorCode.CORRUPT_MESSAGE) {
        const where = { topic, partition: s.partition, position: s.position };
        const next = Number(result.nextOffset);
        const skip = skipCorruptAnswer(where, next, result.errorMessage, options.onCorruptBatch);
        if (skip instanceof SamsaError) throw skip;
        s.position = skip;
      } else if (code === ErrorCode.OFFSET_OUT_OF_RANGE && reset !== "none") {
        const offsets = await this.listOffsets(topic, [s.partition], reset, signal);
        s.position = offsets.get(s.partition) ?? s.position;
      } else {
        const message = `${topic}-${s.partition}: ${result.errorMessage || ErrorCode[code]}`;
        this.failed(topic, s, new SamsaError(code, message));
      }
    }
  }

  /** Closes the connections (when the consumer owns its cluster). */
  close(): void {
    if (this.ownsCluster) this.cluster.close();
  }

  /** The partitions to read and their start positions. */
  private async start(
    topic: string,
    options: ConsumeOptions,
    signal: AbortSignal,
  ): Promise<PartitionState[]> {
    const timeoutMs = options.startTimeoutMs ?? API_TIMEOUT_MS_DEFAULT;
    const metadata = await this.cluster.topic(topic, { timeoutMs, signal });
    const all = metadata.partitions.map((p) => p.partition);
    const partitions = options.partitions === undefined ? all : [...new Set(options.partitions)];
    for (const p of partitions) {
      if (!all.includes(p))
        throw new SamsaError(ErrorCode.INVALID_REQUEST, `topic ${topic} has no partition ${p}`);
    }
    const from = options.from ?? "latest";
    let positions: Map<number, number>;
    if (typeof from === "object" && "offset" in from) {
      if (!Number.isSafeInteger(from.offset) || from.offset < 0) {
        throw new SamsaError(ErrorCode.INVALID_REQUEST, `offset ${from.offset} is not an offset`);
      }
      positions = new Map(partitions.map((p) => [p, from.offset]));
    } else {
      const opts = { timeoutMs, requestTimeoutMs: this.requestTimeoutMs, signal };
      positions = await listOffsets(this.cluster, topic, partitions, from, opts);
      // No record at or after the time: start at the end, for records yet to come.
      const none = partitions.filter((p) => positions.get(p) === NO_OFFSET);
      if (none.length > 0) {
        const latest = await listOffsets(this.cluster, topic, none, "latest", opts);
        for (const [p, o] of latest) positions.set(p, o);
      }
    }
    return partitions.map((partition) => ({
      partition,
      position: positions.get(partition)!,
      ahead: undefined,
      busy: false,
      retryAtMs: 0,
      attempt: 0,
    }));
  }

  /**
   * Starts one Fetch per leader that has idle partitions and none in flight, by the cached
   * metadata: a refresh it needs runs in the background (the partitions that have a leader keep
   * being read meanwhile, whatever broker is slow to answer it). A Fetch in flight to a broker
   * that no longer leads one of its partitions is cancelled, so that partition is read from its
   * new leader now rather than when the old one's call times out (a hung broker).
   */
  private issueFetches(
    topic: string,
    states: PartitionState[],
    inflight: Map<string, InFlight>,
    options: ConsumeOptions,
    signal: AbortSignal,
  ): void {
    const now = Date.now();
    for (const f of inflight.values()) {
      // A leader that does not answer its long poll in time may be hung: has the partition moved?
      // Again every FETCH_LATE_MARGIN_MS while it stays late: the partition may move only
      // after the first refresh (the controller waits out the hung broker's session).
      if (!f.moved && now >= f.lateAtMs) {
        f.late = true;
        f.lateAtMs = now + FETCH_LATE_MARGIN_MS;
        this.cluster.invalidate(topic);
      }
    }
    if (this.cluster.needsRefresh(topic)) this.refreshInBackground(topic, signal);
    const metadata = this.cluster.cached(topic);
    if (metadata === undefined) return;
    for (const [address, f] of inflight) {
      if (f.moved) continue;
      const moved = f.states.some((s) => {
        const leader = this.cluster.leaderOf(metadata, s.partition);
        return !(leader instanceof SamsaError) && leader.address !== address;
      });
      if (moved) {
        f.moved = true;
        f.cancel.abort();
      }
    }
    const idle = states.filter((s) => !s.busy && s.retryAtMs <= now);
    if (idle.length === 0) return;
    const byLeader = new Map<string, { s: PartitionState; epoch: number }[]>();
    for (const s of idle) {
      const leader = this.cluster.leaderOf(metadata, s.partition);
      if (leader instanceof SamsaError) this.failed(topic, s, leader);
      else if (!inflight.has(leader.address)) {
        byLeader.set(leader.address, [
          ...(byLeader.get(leader.address) ?? []),
          { s, epoch: leader.leaderEpoch },
        ]);
      }
    }
    const maxWaitMs = options.maxWaitMs ?? FETCH_MAX_WAIT_MS_DEFAULT;
    for (const [address, parts] of byLeader) {
      for (const { s } of parts) s.busy = true;
      const request = {
        partitions: parts.map(({ s, epoch }) => ({
          topic,
          partition: s.partition,
          fetchOffset: String(s.ahead ?? s.position),
          currentLeaderEpoch: epoch,
          partitionMaxBytes: options.partitionMaxBytes ?? FETCH_PARTITION_BYTES_MAX_DEFAULT,
        })),
        maxWaitMs,
        minBytes: options.minBytes ?? FETCH_MIN_BYTES_DEFAULT,
        maxBytes: options.maxBytes ?? FETCH_BYTES_MAX_DEFAULT,
        isolationLevel: IsolationLevel.ISOLATION_LEVEL_READ_COMMITTED,
        replicaId: CONSUMER_REPLICA_ID,
      };
      const partStates = parts.map((p) => p.s);
      const cancel = new AbortController();
      const call = unary(this.cluster.client(address), "Fetch", request, {
        deadlineMs: maxWaitMs + this.requestTimeoutMs,
        signal: AbortSignal.any([signal, cancel.signal]),
      });
      inflight.set(address, {
        states: partStates,
        cancel,
        moved: false,
        lateAtMs: now + maxWaitMs + FETCH_LATE_MARGIN_MS,
        late: false,
        promise: call.then(
          (response) => ({ address, states: partStates, response }),
          (err: unknown) => ({ address, states: partStates, error: asSamsaError(err) }),
        ),
      });
    }
  }

  /** Refreshes the topic's metadata unless a refresh is under way; never throws. */
  private refreshInBackground(topic: string, signal: AbortSignal): void {
    if (this.refreshing !== undefined) return;
    this.refreshing = this.cluster
      .topic(topic, { timeoutMs: this.requestTimeoutMs, signal })
      .then(
        () => undefined,
        () => undefined, // retried at the next pass; partitions without a leader back off
      )
      .finally(() => {
        this.refreshing = undefined;
      });
  }

  /**
   * Whether the next Fetch for the answer's partitions can be sent before the answer is
   * consumed: every partition answered without error, with records made of whole batches back
   * to back (by their headers; CRCs and records are checked later, as they are decoded). Sets
   * each partition's {@link PartitionState.ahead} to the end of its records. An answer with an
   * error, no records, or a batch whose framing is off is handled first, as without pipelining
   * (backoffs, offset resets and skips of damaged batches need the position it leaves).
   */
  private fetchAhead(topic: string, outcome: FetchOutcome): boolean {
    const response = outcome.response;
    if (response === undefined || response.partitions.length !== outcome.states.length)
      return false;
    const ends: number[] = [];
    for (const [i, result] of response.partitions.entries()) {
      const s = outcome.states[i]!;
      if (result.topic !== topic || result.partition !== s.partition) return false;
      if (fromProtoErrorCode(result.errorCode) !== ErrorCode.NONE) return false;
      const end = answerEnd(result.records);
      if (end === undefined) return false;
      ends.push(end);
    }
    for (const [i, s] of outcome.states.entries()) s.ahead = Math.max(s.position, ends[i]!);
    return true;
  }

  /**
   * Yields the records at or after the position a batch at a time and moves the position past
   * the batches. Each batch is decoded when reached (its records die young, cheap for the
   * garbage collector) into the records handed on, nothing else per record; a corrupt batch
   * throws after the good batches before it. A batch that fails to decode goes to
   * `decodeBatchAt` (corrupt-batch.ts), which skips it or throws the error naming where.
   */
  private *batches(
    topic: string,
    s: PartitionState,
    data: Buffer,
    onCorrupt: OnCorruptBatch | undefined,
  ): Generator<ConsumerBatch> {
    const partition = s.partition;
    const make: RecordFactory<ConsumerRecord> = (offset, timestamp, key, value, headers) => ({
      topic,
      partition,
      offset,
      timestamp,
      key,
      value,
      headers,
    });
    for (let pos = 0; pos < data.length; ) {
      let records: ConsumerRecord[];
      let nextOffset: number;
      try {
        const batch = decodeBatchWith(data, pos, make, s.position);
        records = batch.records;
        nextOffset = lastOffsetOf(batch.header) + 1;
        pos += batchSizeBytes(batch.header);
      } catch {
        const where = { topic, partition, position: s.position };
        const at = decodeBatchAt(data, pos, where, onCorrupt); // throws, or skips on purpose
        pos += at.size;
        nextOffset = at.nextOffset;
        const position = s.position;
        records = (at.batch?.records ?? [])
          .filter((r) => r.offset >= position)
          .map((r) => make(r.offset, r.timestamp, r.key, r.value, r.headers));
      }
      const last = records.length > 0 ? records[records.length - 1]!.offset + 1 : 0;
      s.position = Math.max(s.position, last, nextOffset);
      if (records.length > 0) yield { topic, partition, records, nextOffset };
    }
  }

  /** Handles a partition's error: throws a non-retriable one, else schedules a retry. */
  private failed(topic: string, s: PartitionState, err: SamsaError): void {
    s.ahead = undefined;
    if (!err.retriable) throw err;
    if (needsMetadataRefresh(err.code)) this.cluster.invalidate(topic);
    s.retryAtMs = Date.now() + backoffMs(s.attempt++);
  }
}

/**
 * The offset after the last of the whole batches filling `data` back to back, by their headers
 * only; undefined when there are none or the framing does not add up (then nothing is fetched
 * ahead: the answer's handling decides where the partition goes on).
 */
function answerEnd(data: Buffer): number | undefined {
  let end: number | undefined;
  for (let pos = 0; pos < data.length; ) {
    if (data.length - pos < BATCH_HEADER_BYTES) return undefined;
    const header = readBatchHeader(data, pos);
    const size = batchSizeBytes(header);
    if (size < BATCH_HEADER_BYTES || pos + size > data.length) return undefined;
    end = lastOffsetOf(header) + 1;
    pos += size;
  }
  return end;
}

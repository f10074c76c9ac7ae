/**
 * The producer's batching (Kafka's `RecordAccumulator`): `add` chooses the record's partition at
 * once and encodes the record into that partition's open batch (a {@link BatchBuilder}: bytes,
 * no per-record objects besides the record's {@link Delivery}). A partition's batches wait in
 * its queue until they are full (`batch.size`) or `linger.ms` has passed since they were opened;
 * the {@link Sender} then takes them to the partition's leader. Records without a key stick to
 * one partition until its batch is full (Kafka's sticky partitioner, KIP-480), so batches fill
 * up instead of spreading one record per partition.
 *
 * Memory: every open or unacknowledged batch holds its buffer, and all of them together take at
 * most `buffer.memory` bytes; an `add` that needs a new batch when there is no room waits (in
 * order with every other waiting `add`) up to `max.block.ms`. A record's `delivered` promise is
 * made only when it is asked for, so a producer that only flushes pays nothing per record for it.
 */
import { assert, ErrorCode, SamsaError } from "../shared/errors.js";
import { asSamsaError } from "./produce-job.js";
import { partitionForKey } from "../shared/partitioner.js";
import {
  type AppendHeader,
  appendBytesMax,
  BATCH_HEADER_BYTES,
  BatchBuilder,
  type RecordBytes,
} from "../shared/record-batch/index.js";
import type { ProducerRecord, RecordMetadata } from "./records.js";

/** How long a batch may wait for more records, ms (Kafka's `linger.ms`). */
export const LINGER_MS_DEFAULT = 5;
/** Size of a partition's batch, bytes: a full batch is sent at once (Kafka's `batch.size`). */
export const BATCH_SIZE_BYTES_DEFAULT = 16_384;
/** Most bytes of batches open or in flight, bytes (Kafka's `buffer.memory`). */
export const BUFFER_MEMORY_BYTES_DEFAULT = 33_554_432;
/** Longest `add` waits for buffer room or the topic's metadata, ms (Kafka's `max.block.ms`). */
export const MAX_BLOCK_MS_DEFAULT = 60_000;
/**
 * After this many records added without a turn of the event loop in between, `add` answers
 * after the loop's next turn instead of at once. Kafka's sender is a thread of its own; ours
 * shares the event loop with the caller, and a caller that awaits each `add` while there is
 * buffer room never gives it up: answers and the sends they make possible would wait until the
 * buffer is full. A turn every 1,000 records (about 2 ms of adds) lets them run; measured in
 * docs/performance.md. The count restarts whenever the sender ran ({@link
 * RecordAccumulator.eventLoopTurned}): a caller that gives the loop its turns by itself (waiting
 * for its own acknowledgements, say) is never made to wait, which would split its records
 * between two Produce calls a round trip apart.
 */
export const ADD_YIELD_RECORDS = 1000;

/** Batching options (Kafka's names, camelCased with their unit). */
export interface AccumulatorOptions {
  /** Default {@link LINGER_MS_DEFAULT}. */
  lingerMs?: number;
  /** Default {@link BATCH_SIZE_BYTES_DEFAULT}. */
  batchSizeBytes?: number;
  /** Default {@link BUFFER_MEMORY_BYTES_DEFAULT}. */
  bufferMemoryBytes?: number;
  /** Default {@link MAX_BLOCK_MS_DEFAULT}. */
  maxBlockMs?: number;
  /** Largest send and batch, bytes (the producer sets it). */
  maxRequestSizeBytes?: number;
  /**
   * A partition holding this many batches already opens its next ones
   * {@link BACKLOG_BATCH_SIZE_FACTOR} times `batch.size` (at most max.request.size). The
   * idempotent producer sets it to its 5 unacknowledged batches per partition, so a partition
   * that cannot keep up sends fewer, larger batches instead of falling behind. Default never.
   */
  backlogBatches?: number;
}

/** How much larger than `batch.size` a backlogged partition's batches are (see backlogBatches). */
export const BACKLOG_BATCH_SIZE_FACTOR = 16;

/** A buffered record's delivery: resolves with where it was written, or rejects. */
export interface Delivery {
  readonly delivered: Promise<RecordMetadata>;
}

/**
 * Called once with a record's outcome (Kafka's `Callback`): `error` null and where it was
 * written, or the error. It runs in the producer's own completion path: keep it short; what it
 * throws is reported as a process warning and otherwise ignored.
 */
export type DeliveryCallback = (error: SamsaError | null, metadata: RecordMetadata | null) => void;

/** What the accumulator needs to know about topics (the producer's metadata). */
export interface TopicPartitions {
  /** The topic's partition count when its metadata is at hand, else undefined. */
  partitionCount(topic: string): number | undefined;
  /** Waits for the topic's metadata; resolves with its partition count. */
  loadPartitionCount(topic: string, timeoutMs: number): Promise<number>;
}

/** Chooses a partition for a record (the default: murmur2 of the key, sticky without one). */
export type PartitionChooser = (
  topic: string,
  key: RecordBytes,
  partitionCount: number,
) => number | undefined;

const noop = (): void => {};

/** A batch's outcome, as its records' promises wait for it. */
interface BatchOutcome {
  readonly promise: Promise<number>;
  resolve(baseOffset: number): void;
  reject(err: SamsaError): void;
}

/** A batch of one partition: open while records go in, then sealed, sent, settled. */
export class ProducerBatch {
  readonly builder: BatchBuilder;
  /** No more records go in (it is full, or it was taken for sending). */
  sealed = false;
  /** Idempotence: the base sequence given at its first close, -1 before (or without). */
  baseSequence = -1;
  /** Idempotence: KIP-360 sequence restarts this batch went through. */
  sequenceResets = 0;
  /**
   * Idempotence: the call this batch was last sent in under its current sequences (a number the
   * sender gives), -1 before. A retry sends exactly that call's batches together again: a call
   * mixing batches the leader wrote with new ones would be refused whole.
   */
  sendGroup = -1;
  /**
   * Delivered by then or failed, ms since the epoch, when a `Producer.send` with its own timeout
   * put records in it (the latest of theirs); else the sender's delivery timeout from `createdMs`.
   */
  deadlineMs: number | undefined;
  /** Sealed (sendable at once) when its records take this many bytes: `batch.size`, or more. */
  fullBytes = Number.POSITIVE_INFINITY;
  /** It holds records of `add` (not only of `send`): its error is reported by `flush()`. */
  fromAdd = false;
  /** Base offset once written (-1 with acks=0), or the error it failed with. */
  private outcome: number | SamsaError | undefined;
  /** Made when the first record's delivery is asked for (one promise per batch). */
  private pending: BatchOutcome | undefined;
  /** The records' promises made before the outcome. */
  private asked: Promise<RecordMetadata>[] | undefined;
  /** Callbacks of records added with one: record index, timestamp, function (parallel arrays). */
  private callbackIndex: number[] | undefined;
  private callbackTimestamp: number[] | undefined;
  private callbacks: DeliveryCallback[] | undefined;

  constructor(
    readonly topic: string,
    readonly partition: number,
    capacityBytes: number,
    /** When it was opened, ms since the epoch (linger and the delivery timeout count from it). */
    readonly createdMs: number,
  ) {
    this.builder = new BatchBuilder(capacityBytes);
  }

  get recordCount(): number {
    return this.builder.recordCount;
  }

  /** The outcome of the record at `index` (added with `timestamp`). */
  outcomeOf(index: number, timestamp: number): Promise<RecordMetadata> {
    const o = this.outcome;
    let p: Promise<RecordMetadata>;
    if (o === undefined) {
      p = this.batchPromise().then((base) => this.metadata(base, index, timestamp));
      // Kept so that a failure can mark it handled (below); a success costs nothing more.
      this.asked ??= [];
      this.asked.push(p);
    } else if (o instanceof SamsaError) {
      p = Promise.reject(o);
      p.catch(noop);
    } else p = Promise.resolve(this.metadata(o, index, timestamp));
    return p;
  }

  private batchPromise(): Promise<number> {
    if (this.pending === undefined) {
      let resolve!: (n: number) => void;
      let reject!: (e: SamsaError) => void;
      const promise = new Promise<number>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(noop);
      this.pending = { promise, resolve, reject };
    }
    return this.pending.promise;
  }

  /** Calls `callback` with the outcome of the record at `index` (added with `timestamp`). */
  onDelivery(index: number, timestamp: number, callback: DeliveryCallback): void {
    if (this.callbacks === undefined) {
      this.callbackIndex = [];
      this.callbackTimestamp = [];
      this.callbacks = [];
    }
    this.callbackIndex!.push(index);
    this.callbackTimestamp!.push(timestamp);
    this.callbacks.push(callback);
  }

  /** Settles every record: written from `baseOffset` (-1: acks=0), or failed with the error. */
  settle(outcome: number | SamsaError): void {
    assert(this.outcome === undefined, "a batch settles once");
    this.outcome = outcome;
    const callbacks = this.callbacks;
    if (callbacks !== undefined) {
      const indices = this.callbackIndex!;
      const timestamps = this.callbackTimestamp!;
      this.callbacks = this.callbackIndex = this.callbackTimestamp = undefined;
      for (let i = 0; i < callbacks.length; i++) {
        try {
          if (outcome instanceof SamsaError) callbacks[i]!(outcome, null);
          else callbacks[i]!(null, this.metadata(outcome, indices[i]!, timestamps[i]!));
        } catch (err) {
          process.emitWarning(`a producer delivery callback threw: ${String(err)}`);
        }
      }
    }
    const pending = this.pending;
    if (pending === undefined) return;
    if (outcome instanceof SamsaError) {
      // A delivery asked for and then ignored must not become an unhandled rejection; flush()
      // reports the error too. (Handlers attached now run before the rejection is checked.)
      for (const p of this.asked ?? []) p.catch(noop);
      pending.reject(outcome);
    } else pending.resolve(outcome);
    this.asked = undefined;
  }

  private metadata(baseOffset: number, index: number, timestamp: number): RecordMetadata {
    return {
      topic: this.topic,
      partition: this.partition,
      offset: baseOffset < 0 ? -1 : baseOffset + index,
      timestamp,
    };
  }
}

class RecordDelivery implements Delivery {
  private promise: Promise<RecordMetadata> | undefined;

  constructor(
    private readonly batch: ProducerBatch,
    private readonly index: number,
    private readonly timestamp: number,
  ) {}

  get delivered(): Promise<RecordMetadata> {
    this.promise ??= this.batch.outcomeOf(this.index, this.timestamp);
    return this.promise;
  }
}

/** One partition's batches, oldest first; the last may be open. */
export interface PartitionQueue {
  readonly topic: string;
  readonly partition: number;
  readonly batches: ProducerBatch[];
  /**
   * Produce calls carrying this partition's batches now in flight: at most one without
   * idempotence (so the order holds through retries), up to 5 with it (the broker's sequence
   * check keeps the order; sender.ts).
   */
  inFlight: number;
  /** Batches at the head of `batches` that are in such a call (they are never taken again). */
  sentBatches: number;
  /**
   * A call of this partition failed: nothing more is sent until every call in flight answered,
   * then the batches go again from the head, in sequence order (Kafka's re-enqueued batches).
   */
  retrying: boolean;
  /** Idempotence: the partition's sequences restart under a new epoch before the next send. */
  resetPending: SamsaError | undefined;
  /** Not sent again before this, ms since the epoch (backoff after a retriable error). */
  retryAtMs: number;
  /** Failed attempts in a row (for the backoff). */
  attempts: number;
}

interface TopicState {
  readonly queues: (PartitionQueue | undefined)[];
  /** The partition keyless records go to now (sticky), -1 before the first. */
  sticky: number;
}

/** An `add` waiting for buffer room or metadata, in order. */
interface Pending {
  readonly run: () => void;
}

/** Tells the sender that batches became sendable (now, or at `atMs` for a lingering batch). */
export type WakeFn = (atMs: number) => void;

/** Buffers records per partition in batches; see the module comment. */
export class RecordAccumulator {
  readonly lingerMs: number;
  readonly batchSizeBytes: number;
  private readonly backlogBatches: number;
  readonly bufferMemoryBytes: number;
  readonly maxBlockMs: number;
  readonly maxRequestSizeBytes: number;
  private readonly topics = new Map<string, TopicState>();
  /** Queues holding at least one batch. */
  readonly nonEmpty = new Set<PartitionQueue>();
  private readonly pending: Pending[] = [];
  private usedBytes = 0;
  private batchCount = 0;
  private idleWaiters: (() => void)[] = [];
  /** Flushes under way: while positive, every batch is sendable at once. */
  flushing = 0;
  private firstError: SamsaError | undefined;
  private closed = false;
  private wake: WakeFn = noop;
  /** Records added since the event loop last had a turn (see {@link ADD_YIELD_RECORDS}). */
  private addsSinceYield = 0;

  constructor(
    private readonly metadata: TopicPartitions,
    options: AccumulatorOptions = {},
    private readonly chooser?: PartitionChooser,
    private readonly random: () => number = Math.random,
  ) {
    this.lingerMs = options.lingerMs ?? LINGER_MS_DEFAULT;
    this.batchSizeBytes = options.batchSizeBytes ?? BATCH_SIZE_BYTES_DEFAULT;
    this.backlogBatches = options.backlogBatches ?? Number.POSITIVE_INFINITY;
    this.bufferMemoryBytes = options.bufferMemoryBytes ?? BUFFER_MEMORY_BYTES_DEFAULT;
    this.maxBlockMs = options.maxBlockMs ?? MAX_BLOCK_MS_DEFAULT;
    this.maxRequestSizeBytes = options.maxRequestSizeBytes ?? this.bufferMemoryBytes;
    assert(this.lingerMs >= 0 && this.batchSizeBytes > 0, "lingerMs >= 0, batchSizeBytes > 0");
    assert(this.bufferMemoryBytes > 0 && this.maxRequestSizeBytes > 0, "memory limits > 0");
  }

  /** Connects the sender (called once by it). */
  setWake(wake: WakeFn): void {
    this.wake = wake;
  }

  /**
   * The event loop had a turn (the sender calls this from its timers and immediates): the
   * records added since then start a new count towards {@link ADD_YIELD_RECORDS}.
   */
  eventLoopTurned(): void {
    this.addsSinceYield = 0;
  }

  /**
   * Buffers `record` for `topic`; see {@link Delivery}. `deadlineMs` (ms since the epoch): its
   * batch is not given up before then (see {@link ProducerBatch.deadlineMs}).
   */
  add(
    topic: string,
    record: ProducerRecord,
    callback?: DeliveryCallback,
    deadlineMs?: number,
  ): Promise<Delivery> {
    if (this.closed) {
      return Promise.reject(new SamsaError(ErrorCode.INVALID_REQUEST, "the producer is closed"));
    }
    const explicit = record.partition;
    if (explicit !== undefined && (!Number.isSafeInteger(explicit) || explicit < 0)) {
      return Promise.reject(
        new SamsaError(
          ErrorCode.INVALID_REQUEST,
          `partition ${explicit} is not a partition number`,
        ),
      );
    }
    const key = toRecordBytes(record.key);
    const value = toRecordBytes(record.value);
    const headers = toHeaders(record.headers);
    const bytes = appendBytesMax(key, value, headers) + BATCH_HEADER_BYTES;
    if (bytes > this.bufferMemoryBytes || bytes > this.maxRequestSizeBytes) {
      return Promise.reject(
        new SamsaError(
          ErrorCode.MESSAGE_TOO_LARGE,
          `a record of ${bytes - BATCH_HEADER_BYTES} bytes exceeds buffer.memory or max.request.size`,
        ),
      );
    }
    // The timestamp is taken now, not when the batch goes out.
    const timestamp = record.timestamp ?? Date.now();
    if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
      return Promise.reject(
        new SamsaError(
          ErrorCode.INVALID_TIMESTAMP,
          `timestamp ${timestamp} is not a safe ms value`,
        ),
      );
    }
    if (this.pending.length === 0) {
      const count = this.metadata.partitionCount(topic);
      if (count !== undefined) {
        const delivery = this.tryAppend(
          topic,
          count,
          explicit,
          key,
          value,
          headers,
          timestamp,
          callback,
          deadlineMs,
        );
        if (delivery instanceof SamsaError) return Promise.reject(delivery);
        if (delivery !== undefined) {
          if (++this.addsSinceYield < ADD_YIELD_RECORDS) return Promise.resolve(delivery);
          this.addsSinceYield = 0;
          return new Promise((resolve) => setImmediate(resolve, delivery));
        }
      }
    }
    return this.addLater(topic, explicit, key, value, headers, timestamp, callback, deadlineMs);
  }

  /** The slow way in: behind every other waiting `add`, after metadata and buffer room. */
  private addLater(
    topic: string,
    explicit: number | undefined,
    key: RecordBytes,
    value: RecordBytes,
    headers: AppendHeader[] | undefined,
    timestamp: number,
    callback: DeliveryCallback | undefined,
    deadlineMs: number | undefined,
  ): Promise<Delivery> {
    const startedMs = Date.now();
    return new Promise<Delivery>((resolve, reject) => {
      let loading = false;
      let timer: NodeJS.Timeout | undefined;
      const entry: Pending = {
        run: () => {
          if (this.pending[0] !== entry) return;
          const count = this.metadata.partitionCount(topic);
          if (count === undefined) {
            if (loading) return;
            loading = true;
            const leftMs = Math.max(1, this.maxBlockMs - (Date.now() - startedMs));
            this.metadata.loadPartitionCount(topic, leftMs).then(
              () => {
                loading = false;
                entry.run();
              },
              (err: unknown) => finish(asSamsaError(err)),
            );
            return;
          }
          const d = this.tryAppend(
            topic,
            count,
            explicit,
            key,
            value,
            headers,
            timestamp,
            callback,
            deadlineMs,
          );
          if (d !== undefined) finish(d);
          // Otherwise it waits for room: release() runs it again.
        },
      };
      const finish = (outcome: Delivery | SamsaError): void => {
        clearTimeout(timer);
        const i = this.pending.indexOf(entry);
        if (i >= 0) this.pending.splice(i, 1);
        if (outcome instanceof SamsaError) reject(outcome);
        else resolve(outcome);
        this.pending[0]?.run();
        this.notifyIdle();
      };
      timer = setTimeout(() => {
        finish(
          new SamsaError(
            ErrorCode.REQUEST_TIMED_OUT,
            `no room in buffer.memory (${this.bufferMemoryBytes} bytes) or no metadata of ${topic} within max.block.ms ${this.maxBlockMs}`,
          ),
        );
      }, this.maxBlockMs);
      this.pending.push(entry);
      entry.run();
    });
  }

  /**
   * Appends to the partition's open batch, or opens one when there is buffer room. Returns the
   * delivery, an error (a bad partition), or undefined when there is no room yet.
   */
  private tryAppend(
    topic: string,
    partitionCount: number,
    explicit: number | undefined,
    key: RecordBytes,
    value: RecordBytes,
    headers: AppendHeader[] | undefined,
    timestamp: number,
    callback?: DeliveryCallback,
    deadlineMs?: number,
  ): Delivery | SamsaError | undefined {
    const t = this.topicState(topic);
    let partition = explicit;
    if (partition === undefined) partition = this.chooser?.(topic, key, partitionCount);
    if (partition === undefined) {
      partition =
        key === null
          ? this.stickyPartition(t, partitionCount)
          : partitionForKey(key, partitionCount);
    }
    if (partition >= partitionCount) {
      return new SamsaError(
        ErrorCode.INVALID_REQUEST,
        `topic ${topic} has no partition ${partition} (it has ${partitionCount})`,
      );
    }
    let q = t.queues[partition];
    if (q === undefined) {
      q = {
        topic,
        partition,
        batches: [],
        inFlight: 0,
        sentBatches: 0,
        retrying: false,
        resetPending: undefined,
        retryAtMs: 0,
        attempts: 0,
      };
      t.queues[partition] = q;
    }
    const open = q.batches[q.batches.length - 1];
    if (open !== undefined && !open.sealed) {
      const index = open.recordCount;
      if (open.builder.tryAppend(key, value, headers, timestamp)) {
        if (callback !== undefined) open.onDelivery(index, timestamp, callback);
        if (deadlineMs === undefined) open.fromAdd = true;
        else if (open.deadlineMs !== undefined) {
          open.deadlineMs = Math.max(open.deadlineMs, deadlineMs);
        }
        if (open.builder.sizeBytes >= open.fullBytes) this.seal(t, open);
        return new RecordDelivery(open, index, timestamp);
      }
      this.seal(t, open);
      // A sticky record moves on with the partition it was meant for: the next batch opens there.
    }
    const fullBytes =
      q.batches.length >= this.backlogBatches
        ? Math.min(this.maxRequestSizeBytes, this.batchSizeBytes * BACKLOG_BATCH_SIZE_FACTOR)
        : this.batchSizeBytes;
    const capacity = Math.min(
      this.maxRequestSizeBytes,
      Math.max(fullBytes, appendBytesMax(key, value, headers) + BATCH_HEADER_BYTES),
    );
    if (this.usedBytes + capacity > this.bufferMemoryBytes) return undefined;
    this.usedBytes += capacity;
    this.batchCount++;
    const now = Date.now();
    const batch = new ProducerBatch(topic, partition, capacity, now);
    batch.fullBytes = fullBytes;
    const appended = batch.builder.tryAppend(key, value, headers, timestamp);
    assert(appended, "the first record fits its batch");
    if (callback !== undefined) batch.onDelivery(0, timestamp, callback);
    batch.deadlineMs = deadlineMs;
    batch.fromAdd = deadlineMs === undefined;
    q.batches.push(batch);
    this.nonEmpty.add(q);
    if (batch.builder.sizeBytes >= fullBytes) this.seal(t, batch);
    else this.wake(this.flushing > 0 ? now : now + this.lingerMs);
    return new RecordDelivery(batch, 0, timestamp);
  }

  private topicState(topic: string): TopicState {
    let t = this.topics.get(topic);
    if (t === undefined) {
      t = { queues: [], sticky: -1 };
      this.topics.set(topic, t);
    }
    return t;
  }

  private stickyPartition(t: TopicState, partitionCount: number): number {
    if (t.sticky < 0 || t.sticky >= partitionCount) {
      t.sticky = Math.floor(this.random() * partitionCount);
    }
    return t.sticky;
  }

  /** No more records go into `batch`; keyless records move to the next partition. */
  seal(t: TopicState | undefined, batch: ProducerBatch): void {
    if (batch.sealed) return;
    batch.sealed = true;
    const state = t ?? this.topics.get(batch.topic);
    if (state !== undefined && state.sticky === batch.partition) {
      const count = this.metadata.partitionCount(batch.topic) ?? state.queues.length;
      state.sticky = count > 0 ? (batch.partition + 1) % count : -1;
    }
    this.wake(Date.now());
  }

  /** Seals the open batch of `topic`'s `partition`, if any: it may be sent at once. */
  sealOpen(topic: string, partition: number): void {
    const q = this.topics.get(topic)?.queues[partition];
    const open = q?.batches[q.batches.length - 1];
    if (open !== undefined && !open.sealed) this.seal(undefined, open);
  }

  /**
   * When the head of `q` may be sent, ms since the epoch: now when sealed, flushing or followed
   * by another batch; else when its linger ends.
   */
  sendableAtMs(q: PartitionQueue): number {
    const head = q.batches[q.sentBatches];
    if (head === undefined) return Number.POSITIVE_INFINITY;
    if (head.sealed || this.flushing > 0 || q.batches.length > q.sentBatches + 1) return 0;
    return head.createdMs + this.lingerMs;
  }

  /**
   * Takes the sendable batches of `q` after those in flight (at least one, then while their
   * bytes fit in `bytesLeft`), sealing them and counting them in flight. The open tail goes only
   * when its linger is over. With `maxBatches` (idempotence) at most that many, and batches sent
   * before go again exactly with the batches of the call they were sent in.
   */
  take(
    q: PartitionQueue,
    bytesLeft: number,
    nowMs: number,
    maxBatches = Number.POSITIVE_INFINITY,
  ): ProducerBatch[] {
    const out: ProducerBatch[] = [];
    let bytes = 0;
    const group = q.batches[q.sentBatches]?.sendGroup ?? -1;
    for (let i = q.sentBatches; i < q.batches.length && out.length < maxBatches; i++) {
      const b = q.batches[i]!;
      if (b.sendGroup !== group) break;
      if (group >= 0) {
        out.push(b);
        bytes += b.builder.sizeBytes;
        continue;
      }
      if (!b.sealed && !(this.flushing > 0 || b.createdMs + this.lingerMs <= nowMs)) break;
      if (out.length > 0 && bytes + b.builder.sizeBytes > bytesLeft) break;
      if (!b.sealed) this.seal(undefined, b);
      out.push(b);
      bytes += b.builder.sizeBytes;
    }
    // A call sent before goes again whole or waits for a call with room for it.
    if (group >= 0 && bytes > bytesLeft) return [];
    q.sentBatches += out.length;
    return out;
  }

  /**
   * Removes the first `n` batches of `q` and settles them with `outcome` (a base offset of the
   * first: each next one follows the records of the one before; or an error).
   */
  complete(q: PartitionQueue, n: number, outcome: number | SamsaError): void {
    this.settleBatches(q, q.batches.splice(0, n), outcome);
  }

  /**
   * Removes `batches` (consecutive, one call's) from `q` wherever they are, and settles them as
   * {@link complete} does.
   */
  completeBatches(
    q: PartitionQueue,
    batches: readonly ProducerBatch[],
    outcome: number | SamsaError,
  ): void {
    const at = q.batches.indexOf(batches[0]!);
    assert(at >= 0, "completed batches are queued");
    this.settleBatches(q, q.batches.splice(at, batches.length), outcome);
  }

  private settleBatches(
    q: PartitionQueue,
    done: ProducerBatch[],
    outcome: number | SamsaError,
  ): void {
    let offset = typeof outcome === "number" ? outcome : -1;
    for (const b of done) {
      if (outcome instanceof SamsaError) {
        if (b.fromAdd) this.firstError ??= outcome;
        b.settle(outcome);
      } else {
        b.settle(offset);
        if (offset >= 0) offset += b.recordCount;
      }
      this.release(b.builder.capacityBytes);
    }
    if (q.batches.length === 0) this.nonEmpty.delete(q);
  }

  /** Sends everything buffered and waits; throws the first delivery error since the last flush. */
  async flush(): Promise<void> {
    this.flushing++;
    try {
      this.wake(Date.now());
      while (this.batchCount > 0 || this.pending.length > 0) {
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      }
    } finally {
      this.flushing--;
    }
    const error = this.firstError;
    this.firstError = undefined;
    if (error !== undefined) throw error;
  }

  /** Flushes, then refuses new records. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.closed = true;
    }
  }

  private release(bytes: number): void {
    this.usedBytes -= bytes;
    this.batchCount--;
    assert(this.usedBytes >= 0 && this.batchCount >= 0, "buffer accounting never goes negative");
    this.pending[0]?.run();
    this.notifyIdle();
  }

  /** Wakes the flushes once nothing is buffered or waiting to be. */
  private notifyIdle(): void {
    if (this.batchCount > 0 || this.pending.length > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

function toRecordBytes(b: ProducerRecord["value"] | undefined): RecordBytes {
  if (b === null || b === undefined) return null;
  if (typeof b === "string" || Buffer.isBuffer(b)) return b;
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function toHeaders(headers: ProducerRecord["headers"]): AppendHeader[] | undefined {
  if (headers === undefined) return undefined;
  const list = Array.isArray(headers)
    ? (headers as readonly { key: string; value: ProducerRecord["value"] }[])
    : Object.entries(headers as Readonly<Record<string, ProducerRecord["value"]>>).map(
        ([key, value]) => ({ key, value }),
      );
  if (list.length === 0) return undefined;
  return list.map((h) => ({ key: h.key, value: toRecordBytes(h.value) }));
}

/**
 * The producer's batching mode (Kafka's RecordAccumulator, per topic): records given to `add`
 * wait in a per-topic queue until `linger.ms` has passed since the first of them or the queue
 * holds `batch.size` bytes, then go out in one send of up to `max.request.size` bytes. One send
 * per topic is in flight at a time, so records keep their order per partition even across
 * retries (Kafka's `max.in.flight.requests.per.connection=1`); records added meanwhile form the
 * next send. Buffered and in-flight records together take at most `buffer.memory` bytes; `add`
 * waits for room up to `max.block.ms`.
 */
import { assert, ErrorCode, SamsaError } from "../shared/errors.js";
import { BATCH_HEADER_BYTES } from "../shared/record-batch/index.js";
import { normalizeRecord, type ProducerRecord, type RecordMetadata } from "./records.js";

/** How long a record may wait for more to batch with, ms (Kafka's `linger.ms`). */
export const LINGER_MS_DEFAULT = 5;
/** Queued bytes of a topic that trigger a send at once, bytes (Kafka's `batch.size`). */
export const BATCH_SIZE_BYTES_DEFAULT = 16_384;
/** Most bytes of records buffered or in flight, bytes (Kafka's `buffer.memory`). */
export const BUFFER_MEMORY_BYTES_DEFAULT = 33_554_432;
/** Longest `add` waits for buffer room, ms (Kafka's `max.block.ms`). */
export const MAX_BLOCK_MS_DEFAULT = 60_000;

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
  /** Largest send, bytes (the producer sets it). */
  maxRequestSizeBytes?: number;
}

/** A buffered record's delivery: resolves with where it was written, or rejects. */
export interface Delivery {
  readonly delivered: Promise<RecordMetadata>;
}

/** Sends records of a topic and gives each one's outcome (the producer's `produce`). */
export type SendFn = (
  topic: string,
  records: ProducerRecord[],
) => Promise<(RecordMetadata | SamsaError)[]>;

interface Entry {
  record: ProducerRecord;
  bytes: number;
  resolve: (m: RecordMetadata) => void;
  reject: (e: SamsaError) => void;
}

interface TopicQueue {
  entries: Entry[];
  bytes: number;
  timer: NodeJS.Timeout | undefined;
  /** A send is scheduled behind `tail` and will take the queue when it starts. */
  scheduled: boolean;
  tail: Promise<void>;
}

interface Waiter {
  bytes: number;
  resolve: () => void;
}

/** Buffers records per topic and sends them in batches. */
export class RecordAccumulator {
  private readonly lingerMs: number;
  private readonly batchSizeBytes: number;
  private readonly bufferMemoryBytes: number;
  private readonly maxBlockMs: number;
  private readonly maxRequestSizeBytes: number;
  private readonly topics = new Map<string, TopicQueue>();
  private readonly waiters: Waiter[] = [];
  private usedBytes = 0;
  private flushing = 0;
  private firstError: SamsaError | undefined;
  private closed = false;

  constructor(
    private readonly send: SendFn,
    options: AccumulatorOptions = {},
  ) {
    this.lingerMs = options.lingerMs ?? LINGER_MS_DEFAULT;
    this.batchSizeBytes = options.batchSizeBytes ?? BATCH_SIZE_BYTES_DEFAULT;
    this.bufferMemoryBytes = options.bufferMemoryBytes ?? BUFFER_MEMORY_BYTES_DEFAULT;
    this.maxBlockMs = options.maxBlockMs ?? MAX_BLOCK_MS_DEFAULT;
    this.maxRequestSizeBytes = options.maxRequestSizeBytes ?? this.bufferMemoryBytes;
    assert(this.lingerMs >= 0 && this.batchSizeBytes > 0, "lingerMs >= 0, batchSizeBytes > 0");
    assert(this.bufferMemoryBytes > 0 && this.maxRequestSizeBytes > 0, "memory limits > 0");
  }

  /** Buffers `record` for `topic`; see {@link Delivery}. */
  async add(topic: string, record: ProducerRecord): Promise<Delivery> {
    if (this.closed) throw new SamsaError(ErrorCode.INVALID_REQUEST, "the producer is closed");
    const bytes = normalizeRecord(record, 0).sizeBytes;
    if (bytes > this.bufferMemoryBytes || bytes + BATCH_HEADER_BYTES > this.maxRequestSizeBytes) {
      throw new SamsaError(
        ErrorCode.MESSAGE_TOO_LARGE,
        `a record of ${bytes} bytes exceeds buffer.memory or max.request.size`,
      );
    }
    // The timestamp is taken now, not when the batch goes out.
    const stamped = { ...record, timestamp: record.timestamp ?? Date.now() };
    await this.reserve(bytes);
    let q = this.topics.get(topic);
    if (q === undefined) {
      q = { entries: [], bytes: 0, timer: undefined, scheduled: false, tail: Promise.resolve() };
      this.topics.set(topic, q);
    }
    const delivered = new Promise<RecordMetadata>((resolve, reject) => {
      q.entries.push({ record: stamped, bytes, resolve, reject });
    });
    // Errors also reach flush(); an ignored delivery must not become an unhandled rejection.
    delivered.catch(() => {});
    q.bytes += bytes;
    if (q.bytes >= this.batchSizeBytes) this.drain(topic, q);
    else q.timer ??= setTimeout(() => this.drain(topic, q), this.lingerMs);
    return { delivered };
  }

  /** Sends everything buffered and waits; throws the first delivery error since the last flush. */
  async flush(): Promise<void> {
    this.flushing++;
    try {
      for (;;) {
        const busy = [...this.topics].filter(([, q]) => q.entries.length > 0 || q.scheduled);
        for (const [topic, q] of busy) if (q.entries.length > 0) this.drain(topic, q);
        await Promise.all([...this.topics.values()].map((q) => q.tail));
        if (busy.length === 0) break;
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

  /** Waits until `bytes` fit in buffer.memory (FIFO), up to max.block.ms. */
  private reserve(bytes: number): Promise<void> {
    if (this.waiters.length === 0 && this.usedBytes + bytes <= this.bufferMemoryBytes) {
      this.usedBytes += bytes;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(
          new SamsaError(
            ErrorCode.REQUEST_TIMED_OUT,
            `no room in buffer.memory (${this.bufferMemoryBytes} bytes) within max.block.ms ${this.maxBlockMs}`,
          ),
        );
      }, this.maxBlockMs);
      this.waiters.push(waiter);
    });
  }

  private release(bytes: number): void {
    this.usedBytes -= bytes;
    assert(this.usedBytes >= 0, "buffer accounting never goes negative");
    while (
      this.waiters.length > 0 &&
      this.usedBytes + this.waiters[0]!.bytes <= this.bufferMemoryBytes
    ) {
      const waiter = this.waiters.shift()!;
      this.usedBytes += waiter.bytes;
      waiter.resolve();
    }
  }

  /** Schedules a send of the topic's queue behind the one in flight (at most one scheduled). */
  private drain(topic: string, q: TopicQueue): void {
    clearTimeout(q.timer);
    q.timer = undefined;
    if (q.scheduled) return;
    q.scheduled = true;
    q.tail = q.tail.then(async () => {
      q.scheduled = false;
      const taken = this.take(q);
      if (taken.length > 0) await this.deliver(topic, taken);
      if (q.entries.length === 0) return;
      if (q.bytes >= this.batchSizeBytes || this.flushing > 0) this.drain(topic, q);
      else q.timer ??= setTimeout(() => this.drain(topic, q), this.lingerMs);
    });
  }

  /** Takes up to max.request.size bytes of records (at least one) off the queue. */
  private take(q: TopicQueue): Entry[] {
    let bytes = 0;
    let n = 0;
    while (
      n < q.entries.length &&
      (n === 0 || bytes + q.entries[n]!.bytes <= this.maxRequestSizeBytes)
    ) {
      bytes += q.entries[n]!.bytes;
      n++;
    }
    q.bytes -= bytes;
    return q.entries.splice(0, n);
  }

  private async deliver(topic: string, entries: Entry[]): Promise<void> {
    let outcomes: (RecordMetadata | SamsaError)[];
    try {
      outcomes = await this.send(
        topic,
        entries.map((e) => e.record),
      );
    } catch (err) {
      const error =
        err instanceof SamsaError ? err : new SamsaError(ErrorCode.UNKNOWN, String(err));
      outcomes = entries.map(() => error);
    }
    entries.forEach((e, i) => {
      const outcome = outcomes[i]!;
      if (outcome instanceof SamsaError) {
        this.firstError ??= outcome;
        e.reject(outcome);
      } else e.resolve(outcome);
    });
    this.release(entries.reduce((sum, e) => sum + e.bytes, 0));
  }
}

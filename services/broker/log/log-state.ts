/**
 * The mutable state of one partition log, shared by the modules that implement it
 * (`log-append.ts`, `log-read.ts`, `log-truncate.ts`, `log-retention.ts`, `log-flush.ts`) and
 * by the facade `file-partition-log.ts`. Nothing outside `services/broker/log/` sees it: the
 * rest of the broker uses the `PartitionLog` interface (`partition-log.ts`).
 *
 * Invariants (checked where a mutation could break them):
 *   logStartOffset ≤ highWatermark ≤ logEndOffset, recoveryPoint ≤ logEndOffset,
 *   segments non-empty, sorted by base offset, the last one active.
 * Every mutation of the segment list or of the offsets runs on `queue`, the serial write queue;
 * the one exception is the flush, which advances `recoveryPoint` beside it (see `log-flush.ts`).
 */
import {
  type LogConfig,
  PRODUCER_ID_EXPIRATION_MS_DEFAULT,
} from "../../shared/config/log-config.js";
import { assert, ErrorCode, SamsaError } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { fsyncDir } from "./atomic-file.js";
import type { LeaderEpochCache } from "./leader-epoch-cache.js";
import { writePartitionCheckpoint } from "./partition-checkpoint.js";
import type { LoadedLog } from "./partition-loader.js";
import type { PartitionLogOptions } from "./partition-log.js";
import { writeProducerSnapshot } from "./producer-snapshot.js";
import { RecentAppends } from "./recent-appends.js";
import { ProducerStateManager } from "./producer-state.js";
import { LogSegment } from "./segment.js";
import { SerialQueue } from "./serial-queue.js";

/** One partition log's segments, offsets and queues (see the file comment). */
export class LogState {
  readonly dir: string;
  readonly topic: string;
  readonly partition: number;
  readonly config: LogConfig;
  readonly logger: Logger;
  /** Clock in ms. */
  readonly now: () => number;
  /** Copy-on-write: readers keep the array they started with; writers replace it. */
  segments: readonly LogSegment[];
  readonly epochs: LeaderEpochCache;
  startOffset: number;
  endOffset: number;
  hw: number;
  /** Everything below it is fsynced (indexes included); recovery starts here. */
  recoveryPoint: number;
  /** Records appended since the last flush (for `flush.messages`). */
  unflushedMessages = 0;
  /** This segment's random reduction of `segment.ms`, drawn at each roll. */
  rollJitterMs: number;
  /** Lowest log end a truncation left while a flush ran (+∞ when none); see `log-flush.ts`. */
  truncatedDuringFlush = Number.POSITIVE_INFINITY;
  closed = false;
  /** Set by a failed write: the log is offline and every later call throws it. */
  failure: SamsaError | undefined;
  /** Told of the first failure (the log manager takes the log dir offline). */
  readonly onFailure: ((error: SamsaError) => void) | undefined;
  /** Idempotent producers' state as of the log end (mutated on the write queue only). */
  readonly producers: ProducerStateManager;
  /** Idempotent appends answered as duplicates, and refused for an old producer epoch. */
  readonly producerCounters = { duplicates: 0, fencedEpochs: 0 };
  /** The batches last written, kept in memory for reads at the log end (`recent-appends.ts`). */
  readonly recent = new RecentAppends();
  /** The serial write queue: appends, roll, truncation, retention, DeleteRecords. */
  readonly queue = new SerialQueue();
  private readonly checkpointQueue = new SerialQueue();

  constructor(options: PartitionLogOptions, loaded: LoadedLog) {
    this.dir = options.dir;
    this.topic = options.topic;
    this.partition = options.partition;
    this.config = options.config;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.onFailure = options.onFailure;
    this.segments = loaded.segments;
    this.epochs = loaded.epochs;
    this.startOffset = loaded.logStartOffset;
    this.endOffset = loaded.logEndOffset;
    this.hw = loaded.highWatermark;
    this.recoveryPoint = loaded.recoveryPoint;
    this.rollJitterMs = this.newJitter();
    this.producers = new ProducerStateManager(
      options.producerIdExpirationMs ?? PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    );
  }

  /** The segment appends go to: always the last. */
  get active(): LogSegment {
    return this.segments[this.segments.length - 1]!;
  }

  /** Largest batch accepted: a batch must fit in one segment, so segment.bytes bounds it too. */
  get maxBatchBytes(): number {
    return Math.min(this.config.maxMessageBytes, this.config.segmentBytes);
  }

  /** Total bytes of all segments. */
  get sizeBytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }

  /** Throws KAFKA_STORAGE_ERROR once closed, or the write failure that took the log offline. */
  checkUsable(): void {
    if (this.closed)
      throw new SamsaError(
        ErrorCode.KAFKA_STORAGE_ERROR,
        `log ${this.topic}-${this.partition} is closed`,
      );
    if (this.failure) throw this.failure;
  }

  /** Starts a new active segment at `baseOffset` (≥ log end); runs on the write queue. */
  async rollAt(baseOffset: number): Promise<void> {
    assert(baseOffset >= this.endOffset, "a new segment starts at or after the log end");
    const old = this.active;
    old.addFinalTimeIndexEntry();
    // The producer state as of the new segment's start (Kafka snapshots at every roll), so a
    // rebuild reads at most the segment after it.
    await writeProducerSnapshot(this.dir, baseOffset, this.producers);
    const seg = await LogSegment.create(this.dir, baseOffset, this.config);
    // The new file must survive a crash before anything acknowledged lands in it.
    await fsyncDir(this.dir);
    this.segments = [...this.segments, seg];
    this.rollJitterMs = this.newJitter();
    this.logger.info("rolled segment", {
      baseOffset,
      previousBaseOffset: old.baseOffset,
      previousBytes: old.size,
    });
  }

  /**
   * Renames segments (already out of `segments`) to `.deleted` now; closes and removes their
   * files after `file.delete.delay.ms`, so reads in flight on an older snapshot finish.
   */
  async retire(drop: readonly LogSegment[]): Promise<void> {
    for (const seg of drop) {
      const remove = await seg.markDeleted();
      const timer = setTimeout(
        () => void remove().catch(() => undefined),
        this.config.fileDeleteDelayMs,
      );
      timer.unref();
    }
  }

  /**
   * Persists the epoch cache and the partition checkpoint. Runs on its own queue: flushes run
   * beside the write queue, and two atomic replacements of one file must never interleave.
   */
  writeCheckpoint(): Promise<void> {
    return this.checkpointQueue.run(async () => {
      await this.epochs.flush();
      await writePartitionCheckpoint(this.dir, {
        recoveryPoint: this.recoveryPoint,
        logStartOffset: this.startOffset,
        highWatermark: this.hw,
      });
    });
  }

  private newJitter(): number {
    const j = this.config.segmentJitterMs;
    return j > 0 ? Math.floor(Math.random() * j) : 0;
  }
}

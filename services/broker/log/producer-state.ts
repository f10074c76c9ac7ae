/**
 * Idempotent producers' state in one partition (Kafka's `ProducerStateManager`,
 * `ProducerStateEntry` and `ProducerAppendInfo`): per producer id, its epoch, the sequence
 * ranges and offsets of its last {@link PRODUCER_BATCH_WINDOW} batches, and when it last wrote.
 *
 * A leader append is checked here on the serial write queue (`log-append.ts`), so two requests
 * never race: the next sequence is appended; a batch already in the window is a duplicate,
 * answered with the offsets it got the first time; a gap is OUT_OF_ORDER_SEQUENCE_NUMBER; an
 * older epoch INVALID_PRODUCER_EPOCH; a producer the partition does not know, with a sequence
 * other than 0, UNKNOWN_PRODUCER_ID. Follower appends and the rebuild from the log on load are
 * not checked (the leader did), only recorded, so that a follower that becomes leader
 * deduplicates like the old leader. Entries expire `producer.id.expiration.ms` after their last
 * batch's max timestamp (Kafka's rule), which bounds the memory per partition.
 *
 * The state as of an offset is persisted in snapshot files (`producer-snapshot.ts`).
 */
import { PRODUCER_ID_EXPIRATION_MS_DEFAULT } from "../../shared/config/log-config.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import type { BatchHeader } from "../../shared/record-batch/header.js";
import { NO_PRODUCER_ID } from "../../shared/record-batch/layout.js";

/** Batches remembered per producer (Kafka's: `max.in.flight.requests.per.connection` ≤ 5). */
export const PRODUCER_BATCH_WINDOW = 5;
/** Largest sequence number; the next one after it is 0 (Kafka's wrap-around). */
export const SEQUENCE_MAX = 2 ** 31 - 1;

/** One batch a producer wrote: its sequence range and where it went. */
export interface ProducerBatchMetadata {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly firstOffset: number;
  readonly lastOffset: number;
}

/** What the partition knows of one producer id. */
export interface ProducerEntry {
  readonly producerId: bigint;
  /** The producer's current epoch here. */
  epoch: number;
  /** Its last batches of this epoch, oldest first, at most {@link PRODUCER_BATCH_WINDOW}. */
  batches: ProducerBatchMetadata[];
  /** Max timestamp of its last batch, ms: expiry counts from it. */
  lastTimestamp: number;
}

/** The verdict on one leader batch. */
export type ProducerCheck =
  /** Not an idempotent batch (no producer id): nothing to check or record. */
  | { readonly kind: "none" }
  /** Append it, then {@link ProducerStateManager.record} it. */
  | { readonly kind: "append" }
  /** Already written: answer with these offsets, write nothing. */
  | { readonly kind: "duplicate"; readonly firstOffset: number; readonly lastOffset: number }
  | { readonly kind: "error"; readonly error: SamsaError };

/** Last sequence of a batch (wrapping past {@link SEQUENCE_MAX}). */
export function lastSequenceOf(h: Pick<BatchHeader, "baseSequence" | "lastOffsetDelta">): number {
  const last = h.baseSequence + h.lastOffsetDelta;
  return last > SEQUENCE_MAX ? last - SEQUENCE_MAX - 1 : last;
}

/** True when `next` follows `last` (0 follows {@link SEQUENCE_MAX}). */
export function inSequence(last: number, next: number): boolean {
  return next === last + 1 || (last === SEQUENCE_MAX && next === 0);
}

/** True for a batch of an idempotent producer. */
export function isIdempotent(h: Pick<BatchHeader, "producerId">): boolean {
  return h.producerId !== NO_PRODUCER_ID && h.producerId >= 0n;
}

const ok: ProducerCheck = Object.freeze({ kind: "append" });
const none: ProducerCheck = Object.freeze({ kind: "none" });

/** The producers of one partition; see the module comment. */
export class ProducerStateManager {
  private readonly entries = new Map<bigint, ProducerEntry>();

  constructor(
    /** `producer.id.expiration.ms`. */
    readonly expirationMs: number = PRODUCER_ID_EXPIRATION_MS_DEFAULT,
  ) {}

  /** Producers known. */
  get size(): number {
    return this.entries.size;
  }

  /** The entry of a producer id, if known. */
  entry(producerId: bigint): Readonly<ProducerEntry> | undefined {
    return this.entries.get(producerId);
  }

  /** Every entry (for snapshots and tests). */
  all(): IterableIterator<Readonly<ProducerEntry>> {
    return this.entries.values();
  }

  /**
   * Checks a leader batch against the producer's state (Kafka's
   * `UnifiedLog.analyzeAndValidateProducerState` then `ProducerAppendInfo.append`): the
   * duplicate check first, then the epoch, then the sequence. `staged` holds what earlier
   * batches of the same append would change (see {@link stage}); nothing is changed here.
   */
  check(h: BatchHeader, staged?: StagedProducers): ProducerCheck {
    if (!isIdempotent(h)) return none;
    const pid = h.producerId;
    const e = staged?.get(pid) ?? this.entries.get(pid);
    const firstSeq = h.baseSequence;
    const lastSeq = lastSequenceOf(h);
    if (firstSeq < 0 || h.producerEpoch < 0) {
      return refuse(ErrorCode.INVALID_REQUEST, `producer ${pid}: no sequence or epoch in batch`);
    }
    if (e === undefined) {
      if (firstSeq === 0) return ok;
      return refuse(
        ErrorCode.UNKNOWN_PRODUCER_ID,
        `producer ${pid} is not known here (new, expired or removed) and its sequence is ${firstSeq}, not 0`,
      );
    }
    if (h.producerEpoch === e.epoch) {
      for (const b of e.batches) {
        if (b.firstSeq === firstSeq && b.lastSeq === lastSeq) {
          return { kind: "duplicate", firstOffset: b.firstOffset, lastOffset: b.lastOffset };
        }
      }
    }
    if (h.producerEpoch < e.epoch) {
      return refuse(
        ErrorCode.INVALID_PRODUCER_EPOCH,
        `producer ${pid}: epoch ${h.producerEpoch} is older than ${e.epoch}`,
      );
    }
    if (h.producerEpoch > e.epoch) {
      // A new epoch starts its sequences over (KIP-360's bump).
      if (firstSeq === 0) return ok;
      return refuse(
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        `producer ${pid}: new epoch ${h.producerEpoch} must start at sequence 0, not ${firstSeq}`,
      );
    }
    const last = e.batches.at(-1);
    // An entry without batches (loaded with none) accepts any sequence, as Kafka's does.
    if (last === undefined || inSequence(last.lastSeq, firstSeq)) return ok;
    return refuse(
      ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
      `producer ${pid} epoch ${e.epoch}: sequence ${firstSeq} does not follow ${last.lastSeq}`,
    );
  }

  /**
   * Records into `staged` (copies of the entries it touches) a batch to be written at
   * [firstOffset, lastOffset]; {@link commit} makes it the state. Unchecked: for a follower or
   * recovered batch the leader checked it, and an older epoch is ignored (Kafka's replication
   * path does the same).
   */
  stage(staged: StagedProducers, h: BatchHeader, firstOffset: number, lastOffset: number): void {
    if (!isIdempotent(h)) return;
    const pid = h.producerId;
    let e = staged.get(pid);
    if (e === undefined) {
      const current = this.entries.get(pid);
      e =
        current === undefined
          ? { producerId: pid, epoch: h.producerEpoch, batches: [], lastTimestamp: h.maxTimestamp }
          : { ...current, batches: current.batches.slice() };
      staged.set(pid, e);
    }
    apply(e, h, firstOffset, lastOffset);
  }

  /** Makes staged entries the state. */
  commit(staged: StagedProducers): void {
    for (const [pid, e] of staged) this.entries.set(pid, e);
  }

  /** Records a batch written at [firstOffset, lastOffset] at once (followers, recovery). */
  record(h: BatchHeader, firstOffset: number, lastOffset: number): void {
    if (!isIdempotent(h)) return;
    const pid = h.producerId;
    let e = this.entries.get(pid);
    if (e === undefined) {
      e = { producerId: pid, epoch: h.producerEpoch, batches: [], lastTimestamp: h.maxTimestamp };
      this.entries.set(pid, e);
    }
    apply(e, h, firstOffset, lastOffset);
  }

  /** Puts an entry read from a snapshot (replacing any). */
  load(entry: ProducerEntry): void {
    this.entries.set(entry.producerId, {
      ...entry,
      batches: entry.batches.slice(-PRODUCER_BATCH_WINDOW),
    });
  }

  /** True when an entry last written at `lastTimestamp` has expired at `nowMs`. */
  isExpired(lastTimestamp: number, nowMs: number): boolean {
    return nowMs - lastTimestamp >= this.expirationMs;
  }

  /** Drops producers that have not written for `producer.id.expiration.ms`; returns how many. */
  removeExpired(nowMs: number): number {
    let n = 0;
    for (const [pid, e] of this.entries) {
      if (this.isExpired(e.lastTimestamp, nowMs)) {
        this.entries.delete(pid);
        n++;
      }
    }
    return n;
  }

  /** Forgets every producer (a full truncation, or before a rebuild). */
  clear(): void {
    this.entries.clear();
  }
}

/** Entries changed by the batches of one append, not yet the state. */
export type StagedProducers = Map<bigint, ProducerEntry>;

function refuse(code: ErrorCode, message: string): ProducerCheck {
  return { kind: "error", error: new SamsaError(code, message) };
}

function apply(e: ProducerEntry, h: BatchHeader, firstOffset: number, lastOffset: number): void {
  if (h.producerEpoch < e.epoch) return;
  if (h.producerEpoch > e.epoch) {
    e.epoch = h.producerEpoch;
    e.batches = [];
  }
  e.batches.push({ firstSeq: h.baseSequence, lastSeq: lastSequenceOf(h), firstOffset, lastOffset });
  if (e.batches.length > PRODUCER_BATCH_WINDOW) e.batches.shift();
  e.lastTimestamp = Math.max(e.lastTimestamp, h.maxTimestamp);
}

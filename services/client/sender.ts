/**
 * The producer's sender (Kafka's `Sender`): takes the sendable batches of the accumulator to the
 * partitions' leaders. Each pass groups the partitions whose head batch is sendable (full,
 * lingered, or flushing) by leader and makes one Produce per leader carrying, for each partition,
 * its sendable batches up to `max.request.size`. A broker has at most
 * `max.in.flight.requests.per.connection` Produce calls in flight. Without idempotence a
 * partition has one Produce in flight at a time, so its records stay in order across retries;
 * with it up to `maxInFlightPerPartition` (default {@link MAX_IN_FLIGHT_PER_PARTITION_DEFAULT},
 * at most {@link MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT}, Kafka's bound: the broker's sequence
 * check refuses a batch that would overtake an earlier one, and its window of 5 recognises
 * re-sends). With idempotence a partition has at most 5 batches unacknowledged. A retriable error keeps the batches in their queue: the partition then
 * sends nothing new until all its calls in flight answered, and retries from the head of its
 * queue, in sequence order, after a backoff (and a metadata refresh for stale-metadata codes);
 * Kafka's Sender re-enqueues the batches in sequence order the same way. A batch older than
 * `delivery.timeout.ms` fails with the last error; a non-retriable error fails the batches it was
 * about. Batches are closed (header, CRC, compression) once, so a retry sends the same bytes.
 *
 * Idempotence (default; producer-state.ts): nothing is sent before InitProducerId answered; a
 * batch takes its partition's next sequence numbers when first closed, so a retry after a lost
 * answer is written once (the leader answers the first offsets). OUT_OF_ORDER_SEQUENCE_NUMBER
 * (or UNKNOWN_PRODUCER_ID) for a batch behind an earlier unacknowledged one means that earlier
 * one was not written yet (it failed, or its call is still on its way): a plain retry in order.
 * For the partition's oldest unacknowledged batch it means a gap in the broker's state: once no
 * call of the partition is in flight, its sequences restart under a new epoch (KIP-360) and
 * every batch goes again, at most {@link SEQUENCE_RESETS_PER_BATCH_MAX} restarts per batch.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { asSamsaError } from "./produce-job.js";
import type { Acks__Output as ProtoAcks } from "../shared/generated/samsa/v1/Acks.js";
import type { ProducePartitionResult__Output } from "../shared/generated/samsa/v1/ProducePartitionResult.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import type { CompressionType } from "../shared/record-batch/index.js";
import { backoffMs } from "../shared/retry.js";
import { needsMetadataRefresh } from "./metadata.js";
import {
  type IdempotentProducerState,
  SEQUENCE_RESET_CODES,
  SEQUENCE_RESETS_PER_BATCH_MAX,
} from "./producer-state.js";
import type { PartitionQueue, ProducerBatch, RecordAccumulator } from "./record-accumulator.js";

/** Produce calls in flight to one broker at most (Kafka's `max.in.flight.requests.per.connection`). */
export const MAX_IN_FLIGHT_REQUESTS_PER_BROKER_DEFAULT = 5;
/** Produce calls of one partition in flight at most with idempotence (the broker's window). */
export const MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT = 5;
/**
 * Default of {@link SenderOptions.maxInFlightPerPartition} with idempotence: chosen by
 * measurement (docs/performance.md, the producer).
 */
export const MAX_IN_FLIGHT_PER_PARTITION_DEFAULT = 1;
/**
 * Unacknowledged batches of one partition at most with idempotence: the broker recognises a
 * re-sent batch among the producer's last 5 only (Kafka sends one batch per partition per call,
 * so its 5 calls are 5 batches).
 */
export const MAX_IN_FLIGHT_BATCHES_PER_PARTITION = 5;

/** One partition's bytes in a Produce call. */
export interface ProducePartition {
  readonly topic: string;
  readonly partition: number;
  readonly records: Buffer;
}

/** How the sender reaches the cluster (the producer's metadata and channels). */
export interface ProduceTransport {
  /** The partition's leader's address, or why there is none (a retriable SamsaError). */
  leader(topic: string, partition: number): { readonly address: string } | SamsaError;
  /** Refreshes the topic's metadata; resolves when done, never rejects. */
  refresh(topic: string): Promise<void>;
  /**
   * One Produce call; resolves with the partitions' results, rejects with a SamsaError when the
   * call failed as a whole (e.g. the broker is unreachable).
   */
  produce(
    address: string,
    partitions: ProducePartition[],
    acks: ProtoAcks,
    timeoutMs: number,
  ): Promise<readonly ProducePartitionResult__Output[]>;
}

/** Sender settings (resolved from the producer's options). */
export interface SenderOptions {
  readonly acks: ProtoAcks;
  readonly compression: CompressionType;
  readonly deliveryTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxRequestSizeBytes: number;
  readonly maxInFlightPerBroker: number;
  /**
   * Produce calls of one partition in flight at most with idempotence, 1 to
   * {@link MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT}; default
   * {@link MAX_IN_FLIGHT_PER_PARTITION_DEFAULT}. Always 1 without idempotence.
   */
  readonly maxInFlightPerPartition?: number;
  /** The idempotent producer's state; undefined without idempotence. */
  readonly idempotence?: IdempotentProducerState;
}

interface Taken {
  readonly q: PartitionQueue;
  readonly batches: ProducerBatch[];
}

/** Drives the accumulator's batches to the leaders; see the module comment. */
export class Sender {
  private drainScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Number.POSITIVE_INFINITY;
  private readonly inFlight = new Map<string, number>();
  /** The last retriable error of each partition that failed, for the expiry message. */
  private readonly lastErrors = new WeakMap<PartitionQueue, SamsaError>();

  constructor(
    private readonly acc: RecordAccumulator,
    private readonly transport: ProduceTransport,
    private readonly options: SenderOptions,
  ) {
    acc.setWake((atMs) => this.wake(atMs));
  }

  /** Something becomes sendable at `atMs` (ms since the epoch): drains then. */
  wake(atMs: number): void {
    if (this.drainScheduled) return;
    const now = Date.now();
    if (atMs <= now) {
      this.drainScheduled = true;
      // After the current macrotask: records added in the same turn join the same requests.
      setImmediate(() => {
        this.drainScheduled = false;
        this.drain();
      });
      return;
    }
    if (atMs >= this.timerAtMs) return;
    clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAtMs = Number.POSITIVE_INFINITY;
      this.drain();
    }, atMs - now);
  }

  /** Stops the timer (the producer is closed; nothing is buffered). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAtMs = Number.POSITIVE_INFINITY;
  }

  /** Starts InitProducerId; drains again when it answered, or after a backoff when it failed. */
  private initialize(idempotence: IdempotentProducerState): void {
    if (this.initializing) return;
    this.initializing = true;
    idempotence.initialize().then(
      () => {
        this.initializing = false;
        this.initAttempts = 0;
        this.wake(0);
      },
      () => {
        this.initializing = false;
        this.wake(Date.now() + backoffMs(this.initAttempts++));
      },
    );
  }

  private initializing = false;
  /** The next call's number for {@link ProducerBatch.sendGroup}. */
  private nextGroup = 0;
  private initAttempts = 0;

  /** One pass over the partitions with batches: sends what can go now. */
  private drain(): void {
    // Only timers and immediates call this: the event loop has had a turn.
    this.acc.eventLoopTurned();
    const now = Date.now();
    let nextAtMs = Number.POSITIVE_INFINITY;
    const idempotence = this.options.idempotence;
    const waitForId = idempotence !== undefined && !idempotence.ready;
    if (waitForId && this.acc.nonEmpty.size > 0) this.initialize(idempotence);
    const perPartition = this.maxInFlightPerPartition;
    let again = false;
    const byLeader = new Map<string, PartitionQueue[]>();
    for (const q of this.acc.nonEmpty) {
      // A partition retrying waits for every call in flight, then goes again from its head.
      if (q.inFlight >= perPartition || (q.retrying && q.inFlight > 0)) continue;
      if (q.inFlight === 0) {
        if (q.retryAtMs > now) {
          nextAtMs = Math.min(nextAtMs, q.retryAtMs);
          continue;
        }
        q.retrying = false;
        if (this.expire(q, now)) continue;
        if (q.resetPending !== undefined && !this.restartSequences(q)) continue;
      }
      if (q.sentBatches >= q.batches.length || this.batchesLeft(q) <= 0) continue;
      if (waitForId) {
        nextAtMs = Math.min(nextAtMs, this.deadlineOf(q.batches[0]!));
        continue;
      }
      const at = this.acc.sendableAtMs(q);
      if (at > now) {
        nextAtMs = Math.min(nextAtMs, at, this.deadlineOf(q.batches[0]!));
        continue;
      }
      const leader = this.transport.leader(q.topic, q.partition);
      if (leader instanceof SamsaError) {
        this.failed(q, q.batches.slice(q.sentBatches), leader, now);
        if (q.batches.length > 0) nextAtMs = Math.min(nextAtMs, q.retryAtMs);
        continue;
      }
      const list = byLeader.get(leader.address);
      if (list === undefined) byLeader.set(leader.address, [q]);
      else list.push(q);
    }
    for (const [address, queues] of byLeader) {
      let i = 0;
      while (
        i < queues.length &&
        (this.inFlight.get(address) ?? 0) < this.options.maxInFlightPerBroker
      ) {
        const taken: Taken[] = [];
        let bytes = 0;
        for (; i < queues.length; i++) {
          const q = queues[i]!;
          const left = this.options.maxRequestSizeBytes - bytes;
          if (taken.length > 0 && q.batches[q.sentBatches]!.builder.sizeBytes > left) break;
          const batches = this.acc.take(q, left, now, this.batchesLeft(q));
          if (batches.length === 0) continue;
          for (const b of batches) bytes += b.builder.sizeBytes;
          taken.push({ q, batches });
          // More of it may go at once in another call (a re-sent call's batches go alone).
          if (q.sentBatches < q.batches.length && q.inFlight + 1 < perPartition) again = true;
        }
        if (taken.length > 0) void this.send(address, taken, now);
      }
      // Queues left over wait for a call to this broker to end (which drains again).
    }
    if (again) this.wake(now);
    else if (nextAtMs < Number.POSITIVE_INFINITY) this.wake(nextAtMs);
    // Nothing buffered: no timer keeps the process alive for a linger that no longer matters.
    else if (this.acc.nonEmpty.size === 0) this.close();
  }

  /**
   * Batches `q` may send now: without idempotence any number (one call at a time); with it at
   * most {@link MAX_IN_FLIGHT_BATCHES_PER_PARTITION} unacknowledged, so that every batch whose
   * answer may be lost is still in the leader's window of 5 when it is re-sent.
   */
  private batchesLeft(q: PartitionQueue): number {
    if (this.options.idempotence === undefined) return Number.POSITIVE_INFINITY;
    return MAX_IN_FLIGHT_BATCHES_PER_PARTITION - q.sentBatches;
  }

  /** When `b` is given up if not delivered, ms since the epoch. */
  private deadlineOf(b: ProducerBatch): number {
    return b.deadlineMs ?? b.createdMs + this.options.deliveryTimeoutMs;
  }

  /** Produce calls of one partition in flight at most; see the module comment. */
  private get maxInFlightPerPartition(): number {
    if (this.options.idempotence === undefined) return 1;
    return Math.max(
      1,
      Math.min(
        MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT,
        this.options.maxInFlightPerPartition ?? MAX_IN_FLIGHT_PER_PARTITION_DEFAULT,
        this.options.maxInFlightPerBroker,
      ),
    );
  }

  /**
   * Fails the head batches of `q` older than the delivery timeout (none of them in flight);
   * true if `q` is now empty.
   */
  private expire(q: PartitionQueue, now: number): boolean {
    if (q.inFlight > 0) return false;
    let n = 0;
    while (n < q.batches.length && now >= this.deadlineOf(q.batches[n]!)) n++;
    if (n === 0) return false;
    const last = this.lastErrors.get(q);
    const within =
      q.batches[0]!.deadlineMs === undefined
        ? `delivery.timeout.ms ${this.options.deliveryTimeoutMs}`
        : "the send's timeout";
    this.acc.complete(
      q,
      n,
      new SamsaError(
        ErrorCode.REQUEST_TIMED_OUT,
        `${q.topic}-${q.partition}: not delivered within ${within}` +
          (last === undefined ? "" : ` (last error: ${last.message})`),
      ),
    );
    return q.batches.length === 0;
  }

  private async send(address: string, taken: Taken[], now: number): Promise<void> {
    this.inFlight.set(address, (this.inFlight.get(address) ?? 0) + 1);
    const partitions: ProducePartition[] = [];
    const sent: Taken[] = [];
    for (const t of taken) {
      try {
        const closed = t.batches.map((b) => this.closeBatch(t.q, b));
        const records = closed.length === 1 ? closed[0]! : Buffer.concat(closed);
        partitions.push({ topic: t.q.topic, partition: t.q.partition, records });
        t.q.inFlight++;
        if (this.options.idempotence !== undefined) {
          const group = this.nextGroup++;
          for (const b of t.batches) b.sendGroup = group;
        }
        sent.push(t);
      } catch (err) {
        t.q.sentBatches -= t.batches.length;
        this.acc.completeBatches(t.q, t.batches, asSamsaError(err));
      }
    }
    try {
      if (partitions.length === 0) return;
      const leftMs = Math.min(...sent.map((t) => this.deadlineOf(t.batches[0]!))) - now;
      const timeoutMs = Math.max(1, Math.min(this.options.requestTimeoutMs, leftMs));
      let results: readonly ProducePartitionResult__Output[];
      try {
        results = await this.transport.produce(address, partitions, this.options.acks, timeoutMs);
      } catch (err) {
        const error = asSamsaError(err);
        const at = Date.now();
        this.answered(sent);
        // The whole call failed (unreachable, timed out, a hung broker): as Kafka's client
        // disconnects and updates its metadata, so a new leader is found.
        for (const t of sent) this.failed(t.q, t.batches, error, at, address, true);
        return;
      }
      const at = Date.now();
      this.answered(sent);
      sent.forEach((t, i) => {
        let r: ProducePartitionResult__Output | undefined = results[i];
        if (r === undefined || r.topic !== t.q.topic || r.partition !== t.q.partition) {
          r = results.find((x) => x.topic === t.q.topic && x.partition === t.q.partition);
        }
        const code = r === undefined ? ErrorCode.UNKNOWN : fromProtoErrorCode(r.errorCode);
        if (code === ErrorCode.NONE) {
          const base = Number(r!.baseOffset);
          if (!(Number.isSafeInteger(base) && base >= -1)) {
            const bad = new SamsaError(
              ErrorCode.UNKNOWN,
              `the broker answered base offset ${r!.baseOffset}`,
            );
            this.acc.completeBatches(t.q, t.batches, bad);
          } else {
            t.q.attempts = 0;
            this.acc.completeBatches(t.q, t.batches, base);
          }
          return;
        }
        const message = r?.errorMessage || `no result for the partition (${ErrorCode[code]})`;
        const error = new SamsaError(code, `${t.q.topic}-${t.q.partition}: ${message}`);
        if (SEQUENCE_RESET_CODES.has(code) && this.options.idempotence !== undefined) {
          this.lastErrors.set(t.q, error);
          t.q.retrying = true;
          // Behind an earlier unacknowledged batch: that one is not written yet; this one goes
          // again after it, with the same sequences.
          if (t.q.batches[0] !== t.batches[0]) return;
          // The oldest unacknowledged batch: a gap in the broker's state. Refused, not written:
          // retried at once under the partition's new epoch, once no call is in flight.
          const sequenced = t.q.batches.filter((b) => b.builder.closed);
          if (sequenced.every((b) => b.sequenceResets < SEQUENCE_RESETS_PER_BATCH_MAX)) {
            t.q.resetPending = error;
            return;
          }
          this.acc.completeBatches(t.q, t.batches, error);
          return;
        }
        this.failed(t.q, t.batches, error, at, address);
      });
    } finally {
      this.inFlight.set(address, this.inFlight.get(address)! - 1);
      this.wake(0);
    }
  }

  /** The calls of `sent` answered: their batches are no longer in flight. */
  private answered(sent: readonly Taken[]): void {
    for (const t of sent) {
      t.q.inFlight--;
      t.q.sentBatches -= t.batches.length;
    }
  }

  /** Closes a batch for sending; an idempotent one takes its sequence numbers now, once. */
  private closeBatch(q: PartitionQueue, b: ProducerBatch): Buffer {
    const idempotence = this.options.idempotence;
    if (idempotence === undefined || b.builder.closed) {
      return b.builder.close({ compression: this.options.compression });
    }
    const fields = idempotence.assign(q.topic, q.partition, b.recordCount);
    b.baseSequence = fields.baseSequence;
    return b.builder.close({ compression: this.options.compression, ...fields });
  }

  /**
   * KIP-360 after OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for the oldest batch
   * (`q.resetPending`; no call of `q` in flight): the partition's epoch goes up and every batch
   * of `q` that has a sequence gets new ones from 0, in queue order. False when the epoch is used
   * up: the sequenced batches then fail with the broker's error.
   */
  private restartSequences(q: PartitionQueue): boolean {
    const idempotence = this.options.idempotence!;
    const err = q.resetPending!;
    q.resetPending = undefined;
    const sequenced = q.batches.filter((b) => b.builder.closed);
    try {
      idempotence.bumpEpoch(q.topic, q.partition, err);
    } catch (exhausted) {
      this.acc.complete(q, sequenced.length, asSamsaError(exhausted));
      return q.batches.length > 0;
    }
    for (const b of sequenced) {
      const fields = idempotence.assign(q.topic, q.partition, b.recordCount);
      b.baseSequence = fields.baseSequence;
      b.sequenceResets++;
      b.sendGroup = -1;
      b.builder.restampProducer(fields);
    }
    return true;
  }

  /**
   * `batches` of `q` (not in flight) failed with `err`: a non-retriable error fails them; a
   * retriable one keeps them for a retry from the head of `q`, in order, after the backoff
   * (refreshing the metadata when it is stale).
   */
  private failed(
    q: PartitionQueue,
    batches: readonly ProducerBatch[],
    err: SamsaError,
    now: number,
    address?: string,
    refresh = needsMetadataRefresh(err.code),
  ): void {
    if (batches.length === 0) return;
    if (!err.retriable) {
      this.acc.completeBatches(q, batches, err);
      return;
    }
    this.lastErrors.set(q, err);
    q.retrying = true;
    q.retryAtMs = now + backoffMs(q.attempts);
    q.attempts++;
    if (refresh) {
      void this.transport.refresh(q.topic).then(() => {
        // A new leader is tried at once (KIP-951): the backoff is for asking the same one again.
        const leader = this.transport.leader(q.topic, q.partition);
        if (address !== undefined && !(leader instanceof SamsaError) && leader.address !== address)
          q.retryAtMs = 0;
        this.wake(0);
      });
    }
    this.expire(q, now);
  }
}

/**
 * The idempotent producer's own state (Kafka's `TransactionManager` without transactions): its
 * producer id from InitProducerId, and per partition the epoch and the next sequence number.
 * A batch gets its sequence once, when it is first closed for sending, so every retry sends the
 * same bytes and the partition's leader writes it once (docs/idempotence.md).
 *
 * When a partition's leader answers OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID, it
 * refused the batch (nothing was written), and its state for this producer has a gap (an
 * earlier batch failed or expired) or is gone (expired, deleted with the log). KIP-360's answer:
 * the partition's epoch goes up by one and its sequences start again at 0 from the failed
 * batch on, which the broker accepts as a new epoch; batches already written stay written once.
 * Epochs are per partition here: a broker keeps one state per partition, so bumping one
 * partition's epoch never disturbs another's batches in flight.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { CloseOptions } from "../shared/record-batch/index.js";

/** Largest producer epoch (int16); a partition at it cannot be bumped again. */
export const PRODUCER_EPOCH_MAX = 32_767;
/** Largest sequence number; the next one after it is 0. */
export const SEQUENCE_MAX = 2 ** 31 - 1;
/** Epoch bumps one batch may go through before it fails with the broker's error. */
export const SEQUENCE_RESETS_PER_BATCH_MAX = 3;

/** The producer fields of one batch's header. */
export type ProducerFields = Required<
  Pick<CloseOptions, "producerId" | "producerEpoch" | "baseSequence">
>;

interface PartitionSequence {
  epoch: number;
  next: number;
}

/** The producer id, epochs and sequences of one idempotent producer. */
export class IdempotentProducerState {
  private id = -1n;
  private initializing: Promise<void> | undefined;
  private readonly partitions = new Map<string, PartitionSequence>();

  constructor(
    /** InitProducerId: resolves with a new producer id (epoch 0). */
    private readonly initProducerId: () => Promise<bigint>,
  ) {}

  /** The producer id, -1 before InitProducerId answered. */
  get producerId(): bigint {
    return this.id;
  }

  /** True once the producer id is known. */
  get ready(): boolean {
    return this.id >= 0n;
  }

  /** Gets the producer id (once; a failed attempt is retried by the next call). */
  initialize(): Promise<void> {
    if (this.ready) return Promise.resolve();
    this.initializing ??= this.initProducerId().then(
      (id) => {
        this.id = id;
        this.initializing = undefined;
      },
      (err: unknown) => {
        this.initializing = undefined;
        throw err;
      },
    );
    return this.initializing;
  }

  /** The header fields of a batch of `recordCount` records, taking the partition's next sequences. */
  assign(topic: string, partition: number, recordCount: number): ProducerFields {
    const p = this.partition(topic, partition);
    const baseSequence = p.next;
    p.next = (p.next + recordCount) % (SEQUENCE_MAX + 1);
    return { producerId: this.id, producerEpoch: p.epoch, baseSequence };
  }

  /**
   * KIP-360: the partition's next epoch, its sequences from 0 again.
   * @throws SamsaError `cause` when the epoch cannot go higher
   */
  bumpEpoch(topic: string, partition: number, cause: SamsaError): void {
    const p = this.partition(topic, partition);
    if (p.epoch >= PRODUCER_EPOCH_MAX) {
      throw new SamsaError(cause.code, `${cause.message} (producer epoch exhausted)`);
    }
    p.epoch++;
    p.next = 0;
  }

  private partition(topic: string, partition: number): PartitionSequence {
    const key = `${topic}\u0000${partition}`;
    let p = this.partitions.get(key);
    if (p === undefined) {
      p = { epoch: 0, next: 0 };
      this.partitions.set(key, p);
    }
    return p;
  }
}

/** Codes after which the partition's sequences restart under a new epoch (KIP-360). */
export const SEQUENCE_RESET_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
  ErrorCode.UNKNOWN_PRODUCER_ID,
]);

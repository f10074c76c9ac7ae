/**
 * The gateway as an idempotent producer (docs/idempotence.md): Publish's batches carry a
 * producer id and sequence numbers, so the router's retries after a leader change or a lost
 * answer are written once. The gateway holds one producer id per partition (ids are cheap: a
 * broker hands them out from a block), takes its sequences in order, and runs one append per
 * partition at a time, so two Publishes never race their sequences to the leader.
 *
 * After any final failure the outcome may be unknown (the append may have been written before
 * the deadline passed), so the partition drops its producer id: the next append starts a fresh
 * one at sequence 0 and can never be mistaken for a re-send of different records. A refusal
 * that means the broker lost or never had the producer's state (UNKNOWN_PRODUCER_ID,
 * OUT_OF_ORDER_SEQUENCE_NUMBER: nothing written) is retried once at once under a fresh id.
 */
import { ErrorCode } from "../shared/errors.js";
import type { ProducePartitionResult__Output } from "../shared/generated/samsa/v1/ProducePartitionResult.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import type { Deadline } from "../shared/retry.js";

/** Largest sequence number: a partition close to it starts a fresh producer id. */
export const SEQUENCE_MAX = 2 ** 31 - 1;

/** The producer fields of a partition's next append. */
export interface ProducerTurn {
  readonly producerId: bigint;
  readonly producerEpoch: number;
  /** The first record's sequence; each record takes the next. */
  readonly baseSequence: number;
}

interface PartitionProducer {
  producerId: bigint | undefined;
  next: number;
  tail: Promise<void>;
}

/** Codes that refuse an append for the producer's state: retried once under a fresh id. */
const FRESH_ID_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.UNKNOWN_PRODUCER_ID,
  ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
]);

/** The gateway's producer ids and sequences, per partition. */
export class GatewayProducers {
  private readonly partitions = new Map<string, PartitionProducer>();

  constructor(
    /** InitProducerId through a live broker. */
    private readonly newProducerId: (deadline: Deadline, signal: AbortSignal) => Promise<bigint>,
  ) {}

  /** Producer ids the gateway holds now (one per partition it published to). */
  get activeProducerIds(): number {
    let n = 0;
    for (const p of this.partitions.values()) if (p.producerId !== undefined) n++;
    return n;
  }

  /**
   * Runs `send` with the partition's next producer fields for `recordCount` records, after the
   * partition's previous append finished. Resolves with its result.
   */
  append(
    topic: string,
    partition: number,
    recordCount: number,
    deadline: Deadline,
    signal: AbortSignal,
    send: (turn: ProducerTurn) => Promise<ProducePartitionResult__Output>,
  ): Promise<ProducePartitionResult__Output> {
    const key = `${topic}\u0000${partition}`;
    let p = this.partitions.get(key);
    if (p === undefined) {
      p = { producerId: undefined, next: 0, tail: Promise.resolve() };
      this.partitions.set(key, p);
    }
    const state = p;
    const run = state.tail.then(() => this.turn(state, recordCount, deadline, signal, send));
    state.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async turn(
    p: PartitionProducer,
    recordCount: number,
    deadline: Deadline,
    signal: AbortSignal,
    send: (turn: ProducerTurn) => Promise<ProducePartitionResult__Output>,
  ): Promise<ProducePartitionResult__Output> {
    for (let attempt = 0; ; attempt++) {
      if (p.producerId === undefined || p.next + recordCount > SEQUENCE_MAX) {
        p.producerId = undefined;
        p.producerId = await this.newProducerId(deadline, signal);
        p.next = 0;
      }
      const turn = { producerId: p.producerId, producerEpoch: 0, baseSequence: p.next };
      let result: ProducePartitionResult__Output;
      try {
        result = await send(turn);
      } catch (err) {
        p.producerId = undefined;
        throw err;
      }
      const code = fromProtoErrorCode(result.errorCode);
      if (code === ErrorCode.NONE) {
        p.next += recordCount;
        return result;
      }
      p.producerId = undefined;
      if (attempt > 0 || !FRESH_ID_CODES.has(code) || deadline.expired) return result;
    }
  }
}

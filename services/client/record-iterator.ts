/**
 * The per-record async iteration of a consumer, served from a batch-at-a-time one: an async
 * generator step per record costs several promises and microtask turns, and a chain of
 * `yield*` through nested async generators costs that again at each level. This iterator keeps
 * the current batch and answers `next()` with an already resolved promise while it has records;
 * only the first record of each batch waits for the batches' generator.
 */
import type { ConsumerBatch, ConsumerRecord } from "./records.js";

const DONE: IteratorReturnResult<void> = Object.freeze({ done: true, value: undefined });

/**
 * An `AsyncGenerator` of records over an `AsyncGenerator` of batches. `next()` calls made
 * before earlier ones settled are answered in order; `return()` and `throw()` end the batches'
 * generator (its `finally` cancels the fetches in flight) and then answer as a finished
 * generator does.
 */
export class RecordIterator implements AsyncGenerator<ConsumerRecord, void, undefined> {
  private records: readonly ConsumerRecord[] = [];
  private index = 0;
  private done = false;
  /** The last `next()` waiting for the batches' generator, if any: later calls queue behind it. */
  private pending: Promise<IteratorResult<ConsumerRecord, void>> | undefined;

  constructor(private readonly batches: AsyncGenerator<ConsumerBatch, void, undefined>) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ConsumerRecord, void>> {
    if (this.pending === undefined) {
      if (this.index < this.records.length) {
        return Promise.resolve({ done: false, value: this.records[this.index++]! });
      }
      if (this.done) return Promise.resolve(DONE);
    }
    const previous = this.pending;
    const p = previous === undefined ? this.pull() : previous.then(() => this.afterPending());
    this.pending = p;
    const clear = (): void => {
      if (this.pending === p) this.pending = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  /** A `next()` queued behind another: served from the batch in hand or by pulling. */
  private afterPending(): Promise<IteratorResult<ConsumerRecord, void>> {
    if (this.index < this.records.length) {
      return Promise.resolve({ done: false, value: this.records[this.index++]! });
    }
    return this.done ? Promise.resolve(DONE) : this.pull();
  }

  private async pull(): Promise<IteratorResult<ConsumerRecord, void>> {
    while (!this.done) {
      let step: IteratorResult<ConsumerBatch, void>;
      try {
        step = await this.batches.next();
      } catch (err) {
        this.done = true;
        throw err;
      }
      if (step.done) break;
      if (step.value.records.length === 0) continue;
      this.records = step.value.records;
      this.index = 1;
      return { done: false, value: this.records[0]! };
    }
    this.done = true;
    return DONE;
  }

  async return(): Promise<IteratorResult<ConsumerRecord, void>> {
    this.finish();
    await this.batches.return(undefined);
    return DONE;
  }

  async throw(err: unknown): Promise<IteratorResult<ConsumerRecord, void>> {
    this.finish();
    await this.batches.return(undefined);
    throw err;
  }

  private finish(): void {
    this.done = true;
    this.records = [];
    this.index = 0;
  }
}

/**
 * Runs async tasks one at a time, in submission order: the single writer of a partition log.
 * A failed task rejects its own promise only; the queue carries on with the next one.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  /** Number of tasks submitted and not yet finished. */
  get size(): number {
    return this.pending;
  }

  /** Queues `task`; resolves or rejects with its outcome. */
  run<T>(task: () => Promise<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(task);
    this.tail = result.then(
      () => this.pending--,
      () => this.pending--,
    );
    return result;
  }

  /** Resolves once every task submitted so far has finished. */
  async idle(): Promise<void> {
    await this.run(async () => undefined);
  }
}

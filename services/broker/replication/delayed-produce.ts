/**
 * acks=all answers waiting for the high watermark (Kafka's produce purgatory, per partition).
 * Appends happen in offset order, so the waits are a FIFO sorted by the offset each needs: when
 * the high watermark moves, waits are completed from the head until one needs more. Each wait
 * has its own timeout (REQUEST_TIMED_OUT) and all fail at once when the leadership ends
 * (NOT_LEADER: the new leader may or may not have the batch; the producer retries). No polling
 * anywhere. The queue is bounded: past {@link DELAYED_PRODUCE_WAITS_MAX} a new wait is refused
 * with REQUEST_TIMED_OUT at once (its batch is appended, as with any acks=all timeout).
 */
import { assert, ErrorCode, SamsaError } from "../../shared/errors.js";

/** acks=all answers one partition may hold waiting for replication at most. */
export const DELAYED_PRODUCE_WAITS_MAX = 50_000;

interface Wait {
  /** The high watermark that completes it: the batch's last offset + 1. */
  readonly requiredOffset: number;
  readonly resolve: () => void;
  readonly reject: (err: SamsaError) => void;
  readonly timer: NodeJS.Timeout;
  done: boolean;
}

export class DelayedProduce {
  /** Pending waits in append (= offset) order; `head` is the first not yet completed. */
  private waits: Wait[] = [];
  private head = 0;

  /** Waits still pending. */
  get size(): number {
    return this.waits.length - this.head;
  }

  /**
   * Resolves once the high watermark reaches `requiredOffset`; rejects with REQUEST_TIMED_OUT
   * after `timeoutMs`, or with the error given to {@link failAll}.
   * @param highWatermark The current high watermark (resolves at once when already there).
   */
  wait(requiredOffset: number, highWatermark: number, timeoutMs: number): Promise<void> {
    if (highWatermark >= requiredOffset) return Promise.resolve();
    if (this.size >= DELAYED_PRODUCE_WAITS_MAX) {
      return Promise.reject(
        new SamsaError(
          ErrorCode.REQUEST_TIMED_OUT,
          `${DELAYED_PRODUCE_WAITS_MAX} acks=all answers already wait for replication`,
        ),
      );
    }
    const last = this.waits[this.waits.length - 1];
    assert(
      last === undefined || last.done || last.requiredOffset <= requiredOffset,
      "acks=all waits are queued in offset order",
    );
    return new Promise<void>((resolve, reject) => {
      const wait: Wait = {
        requiredOffset,
        resolve,
        reject,
        done: false,
        timer: setTimeout(() => {
          if (wait.done) return;
          wait.done = true;
          reject(
            new SamsaError(
              ErrorCode.REQUEST_TIMED_OUT,
              `the in-sync replicas did not reach offset ${requiredOffset} within ${timeoutMs} ms`,
            ),
          );
          this.compact();
        }, timeoutMs),
      };
      this.waits.push(wait);
    });
  }

  /** Completes every wait the high watermark now satisfies. */
  complete(highWatermark: number): void {
    while (this.head < this.waits.length) {
      const w = this.waits[this.head]!;
      if (!w.done && w.requiredOffset > highWatermark) break;
      this.head++;
      if (w.done) continue;
      w.done = true;
      clearTimeout(w.timer);
      w.resolve();
    }
    this.compact();
  }

  /** Fails every pending wait with `err` (the leadership ended). */
  failAll(err: SamsaError): void {
    const pending = this.waits.slice(this.head);
    this.waits = [];
    this.head = 0;
    for (const w of pending) {
      if (w.done) continue;
      w.done = true;
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** Drops completed waits from the front (amortized: only once they are half the array). */
  private compact(): void {
    while (this.head < this.waits.length && this.waits[this.head]!.done) this.head++;
    if (this.head === this.waits.length) {
      this.waits = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waits.length) {
      this.waits = this.waits.slice(this.head);
      this.head = 0;
    }
  }
}

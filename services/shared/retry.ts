/**
 * Deadlines, backoff and sleeping, shared by the client library and the gateway. Clients retry
 * by the error table's `retriable` flag alone (docs/protocol.md#errors), always within a
 * deadline, with exponential backoff between attempts so that a cluster in failover is not
 * hammered.
 */
import { assert } from "./errors.js";

/** First pause before a retry, ms (Kafka's `retry.backoff.ms`). */
export const RETRY_BACKOFF_INITIAL_MS = 100;
/** Longest pause before a retry, ms (Kafka's `retry.backoff.max.ms`). */
export const RETRY_BACKOFF_MAX_MS = 1_000;
/** Growth factor of the pause from one retry to the next. */
export const RETRY_BACKOFF_MULTIPLIER = 2;
/** Random spread of each pause, as a fraction of it (Kafka's 0.2), so clients do not sync up. */
export const RETRY_BACKOFF_JITTER_RATIO = 0.2;
/** Default of a request's own deadline, ms (Kafka's `request.timeout.ms`). */
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000;
/** Default deadline of an admin or metadata operation with its retries, ms (Kafka's `default.api.timeout.ms`). */
export const API_TIMEOUT_MS_DEFAULT = 60_000;

/** A point in time after which an operation gives up. */
export class Deadline {
  /** Absolute end, ms since the epoch. */
  readonly atMs: number;

  /**
   * A deadline `timeoutMs` from now.
   * @param timeoutMs How long from now, ms (kept for messages).
   */
  constructor(readonly timeoutMs: number) {
    assert(Number.isFinite(timeoutMs) && timeoutMs >= 0, "timeoutMs >= 0");
    this.atMs = Date.now() + timeoutMs;
  }

  /** A deadline at an absolute time (ms since the epoch), e.g. a gRPC call's own deadline. */
  static at(atMs: number): Deadline {
    return new Deadline(Math.max(0, atMs - Date.now()));
  }

  /** Milliseconds left, never negative. */
  remainingMs(): number {
    return Math.max(0, this.atMs - Date.now());
  }

  /** True once the deadline has passed. */
  get expired(): boolean {
    return Date.now() >= this.atMs;
  }

  /** A per-request timeout: `requestTimeoutMs`, cut to what is left of this deadline. */
  requestMs(requestTimeoutMs: number): number {
    return Math.max(1, Math.min(requestTimeoutMs, this.remainingMs()));
  }
}

/** The pause before retry number `attempt` (0 = first retry), ms, with jitter. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(
    RETRY_BACKOFF_MAX_MS,
    RETRY_BACKOFF_INITIAL_MS * RETRY_BACKOFF_MULTIPLIER ** Math.min(attempt, 30),
  );
  const jitter = 1 + RETRY_BACKOFF_JITTER_RATIO * (2 * random() - 1);
  return Math.round(base * jitter);
}

/**
 * Sleeps `ms`, but not past `deadline` (when given); resolves early, without error, when
 * `signal` aborts (callers check the signal afterwards).
 */
export function sleep(ms: number, signal?: AbortSignal, deadline?: Deadline): Promise<void> {
  const wait = deadline === undefined ? ms : Math.min(ms, deadline.remainingMs());
  if (wait <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, wait);
    signal?.addEventListener("abort", done, { once: true });
  });
}

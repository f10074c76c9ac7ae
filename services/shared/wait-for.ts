/**
 * Deadline-bounded polling for tests (nats.js `nst/launcher.ts`, etcd3 `test/util.ts`): instead
 * of sleeping a guessed amount, poll a condition until it holds or a deadline passes.
 */
import { setTimeout as sleep } from "node:timers/promises";

/** Default deadline of {@link waitFor}, in milliseconds. */
export const waitForTimeoutMsDefault = 10_000;
/** Default pause between two polls of {@link waitFor}, in milliseconds. */
export const waitForIntervalMsDefault = 50;

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. Default {@link waitForTimeoutMsDefault} (ms). */
  timeoutMs?: number;
  /** Pause between polls. Default {@link waitForIntervalMsDefault} (ms). */
  intervalMs?: number;
  /** What was awaited, for the timeout error. */
  message?: string;
}

/**
 * Polls `condition` until it returns a truthy value (which is returned) or the deadline passes
 * (then throws, with the last error thrown by `condition`, if any, as `cause`). A condition that
 * throws counts as "not yet". Each poll is awaited before the next starts, so polls never overlap.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? waitForTimeoutMsDefault;
  const intervalMs = options.intervalMs ?? waitForIntervalMsDefault;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const what = options.message ?? "condition";
      throw new Error(`waitFor: timed out after ${timeoutMs} ms waiting for ${what}`, {
        cause: lastError,
      });
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

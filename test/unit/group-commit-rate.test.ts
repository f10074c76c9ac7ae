/**
 * The per-group commit rate bound (`services/gateway/groups/offset-store.ts`): a burst goes at
 * once, then commits are spaced at the rate, and a refund gives a token back.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CommitRateLimiter } from "../../services/gateway/groups/offset-store.js";

describe("CommitRateLimiter", () => {
  it("lets a burst through, then spaces commits at the rate", () => {
    const limiter = new CommitRateLimiter(10, 3, 0);
    assert.deepEqual(
      [0, 0, 0].map(() => limiter.reserve(0)),
      [0, 0, 0],
    );
    assert.equal(limiter.reserve(0), 100, "the 4th waits one token's time (100 ms at 10/s)");
    assert.equal(limiter.reserve(0), 200, "the 5th waits for two");
    assert.equal(limiter.reserve(1_000), 0, "a second later the bucket refilled");
  });

  it("a refund gives the token back, and the bucket never holds more than its burst", () => {
    const limiter = new CommitRateLimiter(10, 2, 0);
    limiter.reserve(0);
    limiter.reserve(0);
    assert.equal(limiter.reserve(0), 100);
    limiter.refund();
    assert.equal(limiter.reserve(0), 100);
    const idle = new CommitRateLimiter(10, 2, 0);
    assert.deepEqual(
      [idle.reserve(60_000), idle.reserve(60_000), idle.reserve(60_000)],
      [0, 0, 100],
    );
  });
});

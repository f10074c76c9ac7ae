/** acks=all waits: completed by the high watermark in offset order, timed out, failed, bounded. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  DELAYED_PRODUCE_WAITS_MAX,
  DelayedProduce,
} from "../../services/broker/replication/delayed-produce.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";

const LONG_MS = 60_000;

describe("DelayedProduce", () => {
  test("resolves at once when the high watermark is already there", async () => {
    const d = new DelayedProduce();
    await d.wait(10, 10, LONG_MS);
    assert.equal(d.size, 0);
  });

  test("completes waits up to the high watermark, in order, and keeps the rest", async () => {
    const d = new DelayedProduce();
    const done: number[] = [];
    const waits = [5, 10, 15].map((o) => d.wait(o, 0, LONG_MS).then(() => done.push(o)));
    d.complete(10);
    await Promise.all(waits.slice(0, 2));
    assert.deepEqual(done, [5, 10]);
    assert.equal(d.size, 1);
    d.complete(15);
    await waits[2];
    assert.deepEqual(done, [5, 10, 15]);
    assert.equal(d.size, 0);
  });

  test("a wait times out with REQUEST_TIMED_OUT and does not block later ones", async () => {
    const d = new DelayedProduce();
    const first = d.wait(5, 0, 20);
    const second = d.wait(10, 0, LONG_MS);
    await assert.rejects(
      first,
      (e) => e instanceof SamsaError && e.code === ErrorCode.REQUEST_TIMED_OUT,
    );
    d.complete(10);
    await second;
    assert.equal(d.size, 0);
  });

  test("failAll rejects every pending wait with the reason", async () => {
    const d = new DelayedProduce();
    const waits = [1, 2].map((o) => d.wait(o, 0, LONG_MS));
    d.failAll(new SamsaError(ErrorCode.NOT_LEADER, "deposed"));
    for (const w of waits) {
      await assert.rejects(w, (e) => e instanceof SamsaError && e.code === ErrorCode.NOT_LEADER);
    }
    assert.equal(d.size, 0);
  });

  test("past the bound a new wait is refused at once", async () => {
    const d = new DelayedProduce();
    const pending = [];
    for (let i = 1; i <= DELAYED_PRODUCE_WAITS_MAX; i++) pending.push(d.wait(i, 0, LONG_MS));
    await assert.rejects(
      d.wait(DELAYED_PRODUCE_WAITS_MAX + 1, 0, LONG_MS),
      (e) => e instanceof SamsaError && e.code === ErrorCode.REQUEST_TIMED_OUT,
    );
    d.complete(DELAYED_PRODUCE_WAITS_MAX);
    await Promise.all(pending);
    assert.equal(d.size, 0);
  });
});

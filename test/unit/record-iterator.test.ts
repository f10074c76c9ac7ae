import assert from "node:assert/strict";
import { test } from "node:test";
import { RecordIterator } from "../../services/client/record-iterator.js";
import type { ConsumerBatch, ConsumerRecord } from "../../services/client/records.js";

const rec = (offset: number): ConsumerRecord => ({
  topic: "t",
  partition: 0,
  offset,
  timestamp: 0,
  key: null,
  value: Buffer.from(String(offset)),
  headers: [],
});

async function* batches(
  sizes: number[],
  finished: { value: boolean },
  failAfter?: number,
): AsyncGenerator<ConsumerBatch, void, undefined> {
  let offset = 0;
  try {
    for (const [i, n] of sizes.entries()) {
      if (failAfter === i) throw new Error("boom");
      const records = Array.from({ length: n }, () => rec(offset++));
      yield { topic: "t", partition: 0, records, nextOffset: offset };
    }
  } finally {
    finished.value = true;
  }
}

test("RecordIterator yields every record of every batch in order, skipping empty batches", async () => {
  const finished = { value: false };
  const got: number[] = [];
  for await (const r of new RecordIterator(batches([3, 0, 1, 5], finished))) got.push(r.offset);
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(finished.value, true);
});

test("RecordIterator answers concurrent next() calls in order", async () => {
  const it = new RecordIterator(batches([2, 2], { value: false }));
  const results = await Promise.all([it.next(), it.next(), it.next(), it.next(), it.next()]);
  assert.deepEqual(
    results.map((r) => (r.done ? "done" : r.value.offset)),
    [0, 1, 2, 3, "done"],
  );
});

test("RecordIterator: break ends the batches' generator; an error is thrown after the records before it", async () => {
  const finished = { value: false };
  for await (const r of new RecordIterator(batches([3, 3], finished))) if (r.offset === 1) break;
  assert.equal(finished.value, true);
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const r of new RecordIterator(batches([2, 2], { value: false }, 1)))
      got.push(r.offset);
  }, /boom/);
  assert.deepEqual(got, [0, 1]);
});

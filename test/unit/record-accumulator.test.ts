/**
 * The producer's record accumulator (`services/client/record-accumulator.ts`) against a fake send
 * function: a topic's records go out when they reach batch.size or after linger.ms, in sends of at
 * most max.request.size, one send per topic in flight, in order; buffered and in-flight records
 * stay within buffer.memory, `add` waits for room up to max.block.ms; each delivery settles with
 * its own outcome, flush() reports the first error once, close() refuses new records.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import {
  type Delivery,
  RecordAccumulator,
  type SendFn,
} from "../../services/client/record-accumulator.js";
import {
  normalizeRecord,
  type ProducerRecord,
  type RecordMetadata,
} from "../../services/client/records.js";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";
import { BATCH_HEADER_BYTES } from "../../services/shared/record-batch/index.js";
import { waitFor } from "../support/wait-for.js";

/** A linger long enough that only size, flush() or close() sends within a test. */
const LINGER_NEVER_MS = 600_000;
/** A record of the tests: a fixed-size value, so that every record has the same size. */
const rec = (i: number): ProducerRecord => ({ value: `value-${String(i).padStart(4, "0")}` });
const RECORD_BYTES = normalizeRecord(rec(0), 0).sizeBytes;
/** max.request.size where it is not what a test is about (it defaults to buffer.memory). */
const MAX_REQUEST_SIZE_BYTES = 1 << 20;

interface Call {
  topic: string;
  values: string[];
  records: ProducerRecord[];
  /** Settles this send: by default every record written, at offsets following the last. */
  finish(outcomes?: (RecordMetadata | SamsaError)[]): void;
  fail(err: unknown): void;
}

/**
 * A fake send: each call is recorded and settled by the test (`auto` settles at once, writing
 * every record). Offsets count up per topic.
 */
function fakeSend(auto = true): { send: SendFn; calls: Call[] } {
  const calls: Call[] = [];
  const next = new Map<string, number>();
  const send: SendFn = (topic, records) =>
    new Promise((resolve, reject) => {
      const written = () =>
        records.map((r) => {
          const offset = next.get(topic) ?? 0;
          next.set(topic, offset + 1);
          return { topic, partition: 0, offset, timestamp: r.timestamp ?? -1 };
        });
      const call: Call = {
        topic,
        records,
        values: records.map((r) => String(r.value)),
        finish: (outcomes) => resolve(outcomes ?? written()),
        fail: reject,
      };
      calls.push(call);
      if (auto) call.finish();
    });
  return { send, calls };
}

const values = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => String(rec(from + i).value));

/** Lets every pending promise callback and immediate run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await turn();
};

/** Whether `p` has settled, polled. */
function settledFlag(p: Promise<unknown>): () => boolean {
  let settled = false;
  const done = () => {
    settled = true;
  };
  p.then(done, done);
  return () => settled;
}

describe("record accumulator: when records go out", () => {
  it("sends a topic's records at once when they reach batch.size, not before", async () => {
    const { send, calls } = fakeSend();
    const acc = new RecordAccumulator(send, {
      lingerMs: LINGER_NEVER_MS,
      batchSizeBytes: 3 * RECORD_BYTES,
    });
    for (let i = 0; i < 2; i++) await acc.add("t", rec(i));
    await settle();
    assert.equal(calls.length, 0, "two records are below batch.size");
    const third = await acc.add("t", rec(2));
    await waitFor(() => calls.length === 1, { message: "a send at batch.size" });
    assert.deepEqual(calls[0]!.values, values(0, 3));
    assert.equal((await third.delivered).offset, 2);
    await acc.close();
  });

  it("sends what lingered once linger.ms has passed, in one send", async () => {
    const { send, calls } = fakeSend();
    const acc = new RecordAccumulator(send, { lingerMs: 20, batchSizeBytes: 1 << 20 });
    const deliveries: Delivery[] = [];
    // Added in one go: well within the linger of the first.
    for (let i = 0; i < 5; i++) deliveries.push(await acc.add("t", rec(i)));
    assert.equal(calls.length, 0);
    const written = await Promise.all(deliveries.map((d) => d.delivered));
    assert.deepEqual(
      written.map((m) => m.offset),
      [0, 1, 2, 3, 4],
    );
    assert.equal(calls.length, 1, "one send for the lingered records");
    assert.deepEqual(calls[0]!.values, values(0, 5));
    await acc.close();
  });

  it("splits a send at max.request.size of record bytes, keeping the order", async () => {
    const { send, calls } = fakeSend();
    // A record is accepted when it fits with a batch header; a send takes records while their
    // own bytes fit (the produce job then cuts batches, headers included).
    const maxRequestSizeBytes = 2 * RECORD_BYTES + BATCH_HEADER_BYTES;
    const acc = new RecordAccumulator(send, { lingerMs: LINGER_NEVER_MS, maxRequestSizeBytes });
    for (let i = 0; i < 5; i++) await acc.add("t", rec(i));
    await acc.flush();
    const perSend = Math.floor(maxRequestSizeBytes / RECORD_BYTES);
    assert.equal(perSend, 3);
    assert.deepEqual(
      calls.map((c) => c.values),
      [values(0, perSend), values(perSend, 5)],
    );
  });

  it("keeps one send per topic in flight; what is added meanwhile follows in order", async () => {
    const { send, calls } = fakeSend(false);
    const acc = new RecordAccumulator(send, {
      lingerMs: LINGER_NEVER_MS,
      batchSizeBytes: 2 * RECORD_BYTES,
    });
    for (let i = 0; i < 2; i++) await acc.add("t", rec(i));
    await waitFor(() => calls.length === 1, { message: "the first send" });
    // Past batch.size again while the first send is in flight: no second send yet.
    for (let i = 2; i < 6; i++) await acc.add("t", rec(i));
    // Another topic is not held up by this one.
    await acc.add("other", rec(100));
    await acc.add("other", rec(101));
    await waitFor(() => calls.some((c) => c.topic === "other"), { message: "other's send" });
    await settle();
    assert.equal(calls.filter((c) => c.topic === "t").length, 1, "one send of t in flight");
    calls[0]!.finish();
    await waitFor(() => calls.filter((c) => c.topic === "t").length === 2, {
      message: "the second send of t",
    });
    const tCalls = calls.filter((c) => c.topic === "t");
    assert.deepEqual(tCalls[1]!.values, values(2, 6), "the records added meanwhile, in order");
    const flushed = acc.flush();
    for (const c of calls) if (c !== calls[0]) c.finish();
    await flushed;
  });

  it("stamps a record's timestamp when it is added, and keeps a given one", async () => {
    const { send, calls } = fakeSend();
    const acc = new RecordAccumulator(send, { lingerMs: LINGER_NEVER_MS });
    await acc.add("t", rec(0));
    await acc.add("t", { ...rec(1), timestamp: 1234 });
    await acc.flush();
    const [stamped, given] = calls[0]!.records;
    assert.equal(typeof stamped!.timestamp, "number");
    assert.equal(given!.timestamp, 1234);
  });
});

describe("record accumulator: memory bound", () => {
  it("add waits for buffer.memory room until in-flight records are delivered", async () => {
    const { send, calls } = fakeSend(false);
    const acc = new RecordAccumulator(send, {
      lingerMs: LINGER_NEVER_MS,
      batchSizeBytes: 2 * RECORD_BYTES,
      bufferMemoryBytes: 2 * RECORD_BYTES,
      maxRequestSizeBytes: MAX_REQUEST_SIZE_BYTES,
      maxBlockMs: LINGER_NEVER_MS,
    });
    for (let i = 0; i < 2; i++) await acc.add("t", rec(i));
    await waitFor(() => calls.length === 1, { message: "the first send" });
    const third = acc.add("t", rec(2));
    const added = settledFlag(third);
    await settle();
    assert.equal(added(), false, "no room while two records are in flight");
    calls[0]!.finish();
    const delivery = await third;
    const flushed = acc.flush();
    await waitFor(() => calls.length === 2, { message: "the third record's send" });
    calls[1]!.finish();
    await flushed;
    assert.equal((await delivery.delivered).offset, 2);
  });

  it("add gives up after max.block.ms with REQUEST_TIMED_OUT", async () => {
    const { send, calls } = fakeSend(false);
    const acc = new RecordAccumulator(send, {
      lingerMs: 0,
      bufferMemoryBytes: RECORD_BYTES,
      maxRequestSizeBytes: MAX_REQUEST_SIZE_BYTES,
      maxBlockMs: 30,
    });
    const first = await acc.add("t", rec(0));
    await waitFor(() => calls.length === 1, { message: "the first send" });
    await assert.rejects(
      acc.add("t", rec(1)),
      (err) =>
        isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT) &&
        err.message.includes("buffer.memory") &&
        err.message.includes("max.block.ms 30"),
    );
    // The waiter that gave up holds no room: the next record fits once the first is delivered.
    calls[0]!.finish();
    await first.delivered;
    const next = await acc.add("t", rec(2));
    await waitFor(() => calls.length === 2, { message: "the next send" });
    calls[1]!.finish();
    assert.equal((await next.delivered).offset, 1);
    await acc.close();
  });

  it("refuses at once a record larger than buffer.memory or max.request.size", async () => {
    const { send, calls } = fakeSend();
    const small = new RecordAccumulator(send, {
      bufferMemoryBytes: RECORD_BYTES - 1,
      maxRequestSizeBytes: MAX_REQUEST_SIZE_BYTES,
    });
    await assert.rejects(small.add("t", rec(0)), (err) =>
      isSamsaError(err, ErrorCode.MESSAGE_TOO_LARGE),
    );
    const narrow = new RecordAccumulator(send, {
      maxRequestSizeBytes: RECORD_BYTES + BATCH_HEADER_BYTES - 1,
    });
    await assert.rejects(narrow.add("t", rec(0)), (err) =>
      isSamsaError(err, ErrorCode.MESSAGE_TOO_LARGE),
    );
    assert.equal(calls.length, 0);
  });
});

describe("record accumulator: outcomes", () => {
  it("settles each delivery with its own outcome; flush() throws the first error once", async () => {
    const { send, calls } = fakeSend(false);
    const acc = new RecordAccumulator(send, { lingerMs: LINGER_NEVER_MS });
    const deliveries: Delivery[] = [];
    for (let i = 0; i < 3; i++) deliveries.push(await acc.add("t", rec(i)));
    const flushed = acc.flush();
    await waitFor(() => calls.length === 1, { message: "the send" });
    const tooLarge = new SamsaError(ErrorCode.MESSAGE_TOO_LARGE, "record 1");
    const corrupt = new SamsaError(ErrorCode.CORRUPT_MESSAGE, "record 2");
    calls[0]!.finish([{ topic: "t", partition: 3, offset: 40, timestamp: 1 }, tooLarge, corrupt]);
    await assert.rejects(flushed, (err) => err === tooLarge);
    assert.deepEqual(await deliveries[0]!.delivered, {
      topic: "t",
      partition: 3,
      offset: 40,
      timestamp: 1,
    });
    await assert.rejects(deliveries[1]!.delivered, (err) => err === tooLarge);
    await assert.rejects(deliveries[2]!.delivered, (err) => err === corrupt);
    await acc.flush(); // the error was reported once
  });

  it("a send that throws fails every record in it (a non-SamsaError as UNKNOWN)", async () => {
    const { send, calls } = fakeSend(false);
    const acc = new RecordAccumulator(send, { lingerMs: LINGER_NEVER_MS });
    const a = await acc.add("t", rec(0));
    const b = await acc.add("t", rec(1));
    const flushed = acc.flush();
    await waitFor(() => calls.length === 1, { message: "the send" });
    calls[0]!.fail(new TypeError("a bug"));
    await assert.rejects(flushed, (err) => isSamsaError(err, ErrorCode.UNKNOWN));
    for (const d of [a, b]) {
      await assert.rejects(
        d.delivered,
        (err) => isSamsaError(err, ErrorCode.UNKNOWN) && err.message.includes("a bug"),
      );
    }
    // The room they took is released: the buffer is usable again.
    const c = await acc.add("t", rec(2));
    const again = acc.flush();
    await waitFor(() => calls.length === 2, { message: "the next send" });
    calls[1]!.finish();
    await again;
    assert.equal((await c.delivered).offset, 0);
  });

  it("close() sends what is buffered, then refuses new records", async () => {
    const { send, calls } = fakeSend();
    const acc = new RecordAccumulator(send, { lingerMs: LINGER_NEVER_MS });
    const d = await acc.add("t", rec(0));
    await acc.close();
    assert.equal(calls.length, 1);
    assert.equal((await d.delivered).offset, 0);
    await assert.rejects(
      acc.add("t", rec(1)),
      (err) => isSamsaError(err, ErrorCode.INVALID_REQUEST) && /closed/.test(err.message),
    );
  });
});

/**
 * The producer's batching (`services/client/record-accumulator.ts`) and sender
 * (`services/client/sender.ts`) against a fake cluster: records are encoded into per-partition
 * batches that go out when full (batch.size) or after linger.ms; a partition has one Produce in
 * flight and its batches keep their order, several partitions' calls overlap up to the
 * per-broker limit; keyless records stick to a partition per batch, keyed ones follow murmur2;
 * buffered and in-flight batches stay within buffer.memory, `add` waits for room up to
 * max.block.ms; retriable errors are retried (at once at a new leader), non-retriable ones fail
 * their batches, the delivery timeout fails what is left; flush() reports the first error once,
 * close() refuses new records.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import {
  type AccumulatorOptions,
  ADD_YIELD_RECORDS,
  type Delivery,
  RecordAccumulator,
} from "../../services/client/record-accumulator.js";
import type { ProducerRecord } from "../../services/client/records.js";
import { IdempotentProducerState } from "../../services/client/producer-state.js";
import { type ProducePartition, Sender, type SenderOptions } from "../../services/client/sender.js";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";
import { Acks } from "../../services/shared/generated/samsa/v1/Acks.js";
import type { ProducePartitionResult__Output } from "../../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import { partitionForKey } from "../../services/shared/partitioner.js";
import {
  appendBytesMax,
  BATCH_HEADER_BYTES,
  BatchBuilder,
  CompressionType,
  decodeBatches,
} from "../../services/shared/record-batch/index.js";
import { waitFor } from "../support/wait-for.js";

/** A linger long enough that only size, flush() or close() sends within a test. */
const LINGER_NEVER_MS = 600_000;
/** A record of the tests: a fixed-size value. */
const rec = (i: number, extra: Partial<ProducerRecord> = {}): ProducerRecord => ({
  value: `value-${String(i).padStart(4, "0")}`,
  ...extra,
});
/** Bytes a test record takes in a batch (its deltas are small: one byte each). */
const RECORD_BYTES = (() => {
  const b = new BatchBuilder(1024);
  b.tryAppend(null, String(rec(0).value), undefined, 0);
  return b.sizeBytes - BATCH_HEADER_BYTES;
})();
/** A batch.size that `n` test records fill exactly (the header included). */
const batchOf = (n: number) => BATCH_HEADER_BYTES + n * RECORD_BYTES;
/** The room one record's batch takes: its size estimate before its place is known. */
const ONE_RECORD_ROOM = BATCH_HEADER_BYTES + appendBytesMax(null, String(rec(0).value), undefined);

interface Call {
  address: string;
  partitions: {
    topic: string;
    partition: number;
    values: string[];
    timestamps: number[];
    /** Per batch: producer epoch and base sequence. */
    sequences: { epoch: number; base: number }[];
  }[];
  /** Answers: by default every partition written at offsets following the last. */
  finish(answers?: Partial<Record<number, { code: ErrorCode; message?: string }>>): void;
  fail(err: SamsaError): void;
}

/** A fake cluster: topic `t` with `partitions` partitions led by `leaders[p]` (an address). */
function fakeCluster(options: { partitions?: number; auto?: boolean; leaders?: string[] } = {}) {
  const partitions = options.partitions ?? 1;
  const leaders = options.leaders ?? Array.from({ length: partitions }, () => "b1");
  const auto = options.auto ?? true;
  const counts = new Map<string, number>([["t", partitions]]);
  const calls: Call[] = [];
  const next = new Map<number, number>();
  let refreshes = 0;
  const transport = {
    leader: (topic: string, partition: number) =>
      topic === "t" && leaders[partition] !== undefined
        ? { address: leaders[partition]! }
        : new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no leader"),
    refresh: async () => {
      refreshes++;
    },
    produce: (address: string, parts: ProducePartition[], _acks: unknown, _timeoutMs: number) =>
      new Promise<readonly ProducePartitionResult__Output[]>((resolve, reject) => {
        const decoded = parts.map((p) => {
          const batches = decodeBatches(p.records);
          const records = batches.flatMap((b) => b.records);
          return {
            topic: p.topic,
            partition: p.partition,
            values: records.map((r) => String(r.value)),
            timestamps: records.map((r) => r.timestamp),
            sequences: batches.map((b) => ({
              epoch: b.header.producerEpoch,
              base: b.header.baseSequence,
            })),
          };
        });
        const call: Call = {
          address,
          partitions: decoded,
          finish: (answers = {}) =>
            resolve(
              decoded.map((p) => {
                const a = answers[p.partition];
                if (a !== undefined && a.code !== ErrorCode.NONE) {
                  return {
                    topic: p.topic,
                    partition: p.partition,
                    errorCode: a.code,
                    errorMessage: a.message ?? "",
                    baseOffset: "-1",
                  } as unknown as ProducePartitionResult__Output;
                }
                const base = next.get(p.partition) ?? 0;
                next.set(p.partition, base + p.values.length);
                return {
                  topic: p.topic,
                  partition: p.partition,
                  errorCode: 0,
                  errorMessage: "",
                  baseOffset: String(base),
                } as unknown as ProducePartitionResult__Output;
              }),
            ),
          fail: reject,
        };
        calls.push(call);
        if (auto) call.finish();
      }),
  };
  const metadata = {
    partitionCount: (topic: string) => counts.get(topic),
    loadPartitionCount: async (topic: string, _timeoutMs: number) => {
      const n = counts.get(topic);
      if (n === undefined) throw new SamsaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, topic);
      return n;
    },
  };
  const make = (acc: AccumulatorOptions = {}, sender: Partial<SenderOptions> = {}) => {
    const accumulator = new RecordAccumulator(
      metadata,
      { maxRequestSizeBytes: 1 << 20, ...acc },
      undefined,
      () => 0,
    );
    new Sender(accumulator, transport, {
      acks: Acks.ACKS_ALL,
      compression: CompressionType.NONE,
      deliveryTimeoutMs: 120_000,
      requestTimeoutMs: 30_000,
      maxRequestSizeBytes: acc.maxRequestSizeBytes ?? 1 << 20,
      maxInFlightPerBroker: 5,
      ...sender,
    });
    return accumulator;
  };
  return { calls, counts, leaders, make, refreshes: () => refreshes };
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

describe("producer batching: when records go out", () => {
  it("sends a partition's batch at once when it reaches batch.size, not before", async () => {
    const { calls, make } = fakeCluster();
    const acc = make({ lingerMs: LINGER_NEVER_MS, batchSizeBytes: batchOf(3) });
    for (let i = 0; i < 2; i++) await acc.add("t", rec(i));
    await settle();
    assert.equal(calls.length, 0, "two records are below batch.size");
    const third = await acc.add("t", rec(2));
    await waitFor(() => calls.length === 1, { message: "a send at batch.size" });
    assert.deepEqual(calls[0]!.partitions[0]!.values, values(0, 3));
    assert.equal((await third.delivered).offset, 2);
    await acc.close();
  });

  it("sends what lingered once linger.ms has passed, in one call", async () => {
    const { calls, make } = fakeCluster();
    // Long enough that the five adds below always fall inside one linger, even on a busy machine.
    const acc = make({ lingerMs: 250, batchSizeBytes: 1 << 20 });
    const deliveries: Delivery[] = [];
    for (let i = 0; i < 5; i++) deliveries.push(await acc.add("t", rec(i)));
    assert.equal(calls.length, 0);
    const written = await Promise.all(deliveries.map((d) => d.delivered));
    assert.deepEqual(
      written.map((m) => m.offset),
      [0, 1, 2, 3, 4],
    );
    assert.equal(calls.length, 1, "one call for the lingered records");
    assert.deepEqual(calls[0]!.partitions[0]!.values, values(0, 5));
    await acc.close();
  });

  it("one call per partition in flight; the batches added meanwhile follow in one call, in order", async () => {
    const { calls, make } = fakeCluster({ auto: false });
    const acc = make({ lingerMs: LINGER_NEVER_MS, batchSizeBytes: batchOf(2) });
    const first = [await acc.add("t", rec(0)), await acc.add("t", rec(1))];
    await waitFor(() => calls.length === 1, { message: "the first call" });
    // Three more batches fill up while the first call is in flight: no second call yet.
    const later: Delivery[] = [];
    for (let i = 2; i < 8; i++) later.push(await acc.add("t", rec(i)));
    await settle();
    assert.equal(calls.length, 1, "one call of the partition in flight");
    calls[0]!.finish();
    await waitFor(() => calls.length === 2, { message: "the second call" });
    assert.deepEqual(calls[1]!.partitions[0]!.values, values(2, 8), "three batches, in order");
    calls[1]!.finish();
    assert.deepEqual(
      await Promise.all([...first, ...later].map(async (d) => (await d.delivered).offset)),
      [0, 1, 2, 3, 4, 5, 6, 7],
      "each batch's offsets follow the one before it in the same call",
    );
    await acc.close();
  });

  it("partitions on two brokers are sent in parallel, and calls to one broker overlap", async () => {
    const { calls, make } = fakeCluster({
      partitions: 3,
      auto: false,
      leaders: ["b1", "b2", "b1"],
    });
    const acc = make(
      { lingerMs: LINGER_NEVER_MS, batchSizeBytes: batchOf(1) },
      { maxInFlightPerBroker: 2 },
    );
    // A batch of one record per partition, each full at once.
    for (const p of [0, 1, 2]) await acc.add("t", rec(p, { partition: p }));
    await waitFor(() => calls.length === 2, { message: "one call per broker" });
    assert.deepEqual(calls.map((c) => c.address).sort(), ["b1", "b2"]);
    const b1 = calls.find((c) => c.address === "b1")!;
    assert.deepEqual(b1.partitions.map((p) => p.partition).sort(), [0, 2], "one call for b1's two");
    // While b1's call is in flight, partition 0 fills another batch: a second call to b1 goes.
    await acc.add("t", rec(10, { partition: 2 }));
    await settle();
    assert.equal(calls.length, 2, "partition 2 has a call in flight: it waits");
    b1.finish();
    await waitFor(() => calls.length === 3, { message: "partition 2's next call" });
    const flushed = acc.flush();
    for (const c of calls.slice(1)) c.finish();
    await flushed;
  });

  it("stamps a record's timestamp when it is added, and keeps a given one", async () => {
    const { calls, make } = fakeCluster();
    const acc = make({ lingerMs: LINGER_NEVER_MS });
    const before = Date.now();
    await acc.add("t", rec(0));
    await acc.add("t", rec(1, { timestamp: 1234 }));
    const late = await acc.add("t", rec(2, { timestamp: before + 60_000 }));
    await acc.flush();
    const [stamped, given, later] = calls[0]!.partitions[0]!.timestamps;
    assert.ok(stamped! >= before && stamped! <= Date.now(), "stamped at add");
    assert.equal(given, 1234, "a timestamp before the batch's base");
    assert.equal(later, before + 60_000);
    assert.equal((await late.delivered).timestamp, before + 60_000);
  });
});

/**
 * Adds `count` records one by one, awaiting each; returns how many of the adds answered only
 * after an event-loop turn (their promise still pending after a few microtask steps).
 */
async function addsMadeToWait(acc: RecordAccumulator, from: number, count: number) {
  let waited = 0;
  for (let i = from; i < from + count; i++) {
    const p = acc.add("t", rec(i));
    const settled = settledFlag(p);
    for (let k = 0; k < 3; k++) await null;
    if (!settled()) waited++;
    await p;
  }
  return waited;
}

describe("producer batching: the event loop's turn", () => {
  it("a caller that never gives the loop a turn waits for one every ADD_YIELD_RECORDS adds", async () => {
    const { calls, make } = fakeCluster();
    const acc = make({ lingerMs: LINGER_NEVER_MS, batchSizeBytes: batchOf(100) });
    const n = ADD_YIELD_RECORDS * 2 + ADD_YIELD_RECORDS / 2;
    assert.equal(await addsMadeToWait(acc, 0, n), 2);
    // The turns let the sender go: the full batches were sent meanwhile.
    assert.ok(calls.length > 0, "batches went out during the adds");
    await acc.close();
  });

  it("a caller that gives the loop its turns by itself is never made to wait (its records are not split)", async () => {
    const { calls, make } = fakeCluster();
    const acc = make({ lingerMs: LINGER_NEVER_MS, batchSizeBytes: batchOf(100) });
    const burst = (ADD_YIELD_RECORDS * 9) / 10;
    let waited = 0;
    for (let b = 0; b < 3; b++) {
      waited += await addsMadeToWait(acc, b * burst, burst);
      // The caller's own wait (for acknowledgements, say): the sender runs in this turn.
      const sent = calls.length;
      await waitFor(() => calls.length > sent, { message: "the full batches go in the turn" });
    }
    assert.equal(waited, 0, "3 bursts of 900 adds, the sender running between them");
    await acc.close();
  });
});

describe("producer batching: partitions", () => {
  it("keyless records stick to one partition until its batch is full, then move on", async () => {
    const { calls, make } = fakeCluster({ partitions: 3 });
    const acc = make({ lingerMs: LINGER_NEVER_MS, batchSizeBytes: batchOf(2) });
    const deliveries: Delivery[] = [];
    for (let i = 0; i < 6; i++) deliveries.push(await acc.add("t", rec(i)));
    await acc.flush();
    const parts = await Promise.all(deliveries.map(async (d) => (await d.delivered).partition));
    assert.deepEqual(parts, [0, 0, 1, 1, 2, 2], "two per batch (the random start is 0 here)");
    assert.equal(
      calls.flatMap((c) => c.partitions).length,
      3,
      "one batch of each partition (in one call: they share a leader)",
    );
  });

  it("a keyed record goes to murmur2(key) mod partitions; an explicit one where it says", async () => {
    const { make } = fakeCluster({ partitions: 3 });
    const acc = make({ lingerMs: 0 });
    for (const key of ["a", "b", "c", "order-17"]) {
      const d = await acc.add("t", rec(0, { key }));
      assert.equal((await d.delivered).partition, partitionForKey(key, 3), `key ${key}`);
    }
    assert.equal((await (await acc.add("t", rec(0, { partition: 2 }))).delivered).partition, 2);
    await assert.rejects(
      acc.add("t", rec(0, { partition: 3 })),
      (err) =>
        isSamsaError(err, ErrorCode.INVALID_REQUEST) && /has no partition 3/.test(err.message),
    );
    await acc.close();
  });

  it("waits for a topic's metadata; an unknown topic fails the add", async () => {
    const { counts, make } = fakeCluster();
    const acc = make({ lingerMs: 0 });
    await assert.rejects(acc.add("missing", rec(0)), (err) =>
      isSamsaError(err, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    );
    counts.set("t", 1);
    assert.equal((await (await acc.add("t", rec(0))).delivered).offset, 0);
    await acc.close();
  });
});

describe("producer batching: memory bound", () => {
  it("add waits for buffer.memory room until a batch is acknowledged", async () => {
    const { calls, make } = fakeCluster({ auto: false });
    const acc = make({
      lingerMs: LINGER_NEVER_MS,
      batchSizeBytes: batchOf(2),
      bufferMemoryBytes: Math.max(batchOf(2), ONE_RECORD_ROOM),
      maxBlockMs: LINGER_NEVER_MS,
    });
    for (let i = 0; i < 2; i++) await acc.add("t", rec(i));
    await waitFor(() => calls.length === 1, { message: "the first call" });
    const third = acc.add("t", rec(2));
    const added = settledFlag(third);
    await settle();
    assert.equal(added(), false, "no room while the first batch is in flight");
    calls[0]!.finish();
    const delivery = await third;
    const flushed = acc.flush();
    await waitFor(() => calls.length === 2, { message: "the third record's call" });
    calls[1]!.finish();
    await flushed;
    assert.equal((await delivery.delivered).offset, 2);
  });

  it("add gives up after max.block.ms with REQUEST_TIMED_OUT; waiting adds keep their order", async () => {
    const { calls, make } = fakeCluster({ auto: false });
    const acc = make({
      lingerMs: 0,
      batchSizeBytes: batchOf(1),
      bufferMemoryBytes: ONE_RECORD_ROOM,
      maxBlockMs: 30,
    });
    const first = await acc.add("t", rec(0));
    await waitFor(() => calls.length === 1, { message: "the first call" });
    await assert.rejects(
      acc.add("t", rec(1)),
      (err) =>
        isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT) &&
        err.message.includes("buffer.memory") &&
        err.message.includes("max.block.ms 30"),
    );
    calls[0]!.finish();
    await first.delivered;
    const next = await acc.add("t", rec(2));
    await waitFor(() => calls.length === 2, { message: "the next call" });
    calls[1]!.finish();
    assert.equal((await next.delivered).offset, 1);
    await acc.close();
  });

  it("refuses at once a record larger than buffer.memory or max.request.size", async () => {
    const { calls, make } = fakeCluster();
    const small = make({ bufferMemoryBytes: ONE_RECORD_ROOM - 1 });
    await assert.rejects(small.add("t", rec(0)), (err) =>
      isSamsaError(err, ErrorCode.MESSAGE_TOO_LARGE),
    );
    const narrow = make({ maxRequestSizeBytes: ONE_RECORD_ROOM - 1 });
    await assert.rejects(narrow.add("t", rec(0)), (err) =>
      isSamsaError(err, ErrorCode.MESSAGE_TOO_LARGE),
    );
    assert.equal(calls.length, 0);
  });
});

describe("producer batching: outcomes", () => {
  it("a non-retriable error fails that partition's batch; flush() throws the first error once", async () => {
    const { calls, make } = fakeCluster({ partitions: 2, auto: false });
    const acc = make({ lingerMs: LINGER_NEVER_MS });
    const ok = await acc.add("t", rec(0, { partition: 0 }));
    const bad = await acc.add("t", rec(1, { partition: 1 }));
    const flushed = acc.flush();
    await waitFor(() => calls.length === 1, { message: "the call" });
    calls[0]!.finish({ 1: { code: ErrorCode.CORRUPT_MESSAGE, message: "crc" } });
    await assert.rejects(flushed, (err) => isSamsaError(err, ErrorCode.CORRUPT_MESSAGE));
    assert.equal((await ok.delivered).offset, 0);
    await assert.rejects(bad.delivered, (err) => isSamsaError(err, ErrorCode.CORRUPT_MESSAGE));
    await acc.flush(); // the error was reported once
  });

  it("NOT_LEADER is retried at once at the new leader; the same bytes go again", async () => {
    const cluster = fakeCluster({ auto: false });
    const acc = cluster.make({ lingerMs: LINGER_NEVER_MS });
    const d = await acc.add("t", rec(0));
    const flushed = acc.flush();
    await waitFor(() => cluster.calls.length === 1, { message: "the first call" });
    cluster.leaders[0] = "b2";
    cluster.calls[0]!.finish({ 0: { code: ErrorCode.NOT_LEADER } });
    await waitFor(() => cluster.calls.length === 2, { message: "the retry" });
    assert.equal(cluster.calls[1]!.address, "b2");
    assert.deepEqual(cluster.calls[1]!.partitions, cluster.calls[0]!.partitions);
    assert.ok(cluster.refreshes() >= 1, "the metadata was refreshed");
    cluster.calls[1]!.finish();
    await flushed;
    assert.equal((await d.delivered).offset, 0);
  });

  it("a failed call (broker unreachable) is retried; past delivery.timeout.ms the batch fails with the last error", async () => {
    const cluster = fakeCluster({ auto: false });
    const acc = cluster.make({ lingerMs: LINGER_NEVER_MS }, { deliveryTimeoutMs: 300 });
    const d = await acc.add("t", rec(0));
    const flushed = acc.flush();
    await waitFor(() => cluster.calls.length === 1, { message: "the first call" });
    cluster.calls[0]!.fail(new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "connection refused"));
    await waitFor(() => cluster.calls.length === 2, { message: "the retry" });
    cluster.calls[1]!.fail(new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "connection refused"));
    await assert.rejects(
      d.delivered,
      (err) =>
        isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT) &&
        /delivery\.timeout\.ms 300/.test(err.message) &&
        /connection refused/.test(err.message),
    );
    await assert.rejects(flushed, (err) => isSamsaError(err, ErrorCode.REQUEST_TIMED_OUT));
  });

  it("a failed delivery that was asked for and then ignored is no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { calls, make } = fakeCluster({ auto: false });
      const acc = make({ lingerMs: LINGER_NEVER_MS });
      const d = await acc.add("t", rec(0));
      void d.delivered; // asked for, never awaited
      const flushed = acc.flush();
      await waitFor(() => calls.length === 1, { message: "the call" });
      calls[0]!.finish({ 0: { code: ErrorCode.CORRUPT_MESSAGE } });
      await assert.rejects(flushed, (err) => isSamsaError(err, ErrorCode.CORRUPT_MESSAGE));
      await settle();
      assert.deepEqual(unhandled, []);
      await assert.rejects(d.delivered, (err) => isSamsaError(err, ErrorCode.CORRUPT_MESSAGE));
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("a delivery callback hears each record's outcome once, without a promise", async () => {
    const { calls, make } = fakeCluster({ partitions: 2, auto: false });
    const acc = make({ lingerMs: LINGER_NEVER_MS });
    const heard: string[] = [];
    const cb = (i: number) => (err: SamsaError | null, m: { offset: number } | null) =>
      heard.push(err === null ? `${i}@${m!.offset}` : `${i}:${ErrorCode[err.code]}`);
    for (let i = 0; i < 3; i++) await acc.add("t", rec(i, { partition: 0 }), cb(i));
    await acc.add("t", rec(3, { partition: 1 }), cb(3));
    const flushed = acc.flush();
    await waitFor(() => calls.length === 1, { message: "the call" });
    calls[0]!.finish({ 1: { code: ErrorCode.CORRUPT_MESSAGE } });
    await assert.rejects(flushed);
    assert.deepEqual(heard, ["0@0", "1@1", "2@2", "3:CORRUPT_MESSAGE"]);
  });

  it("close() sends what is buffered, then refuses new records", async () => {
    const { calls, make } = fakeCluster();
    const acc = make({ lingerMs: LINGER_NEVER_MS });
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

describe("producer batching: idempotent calls in flight per partition", () => {
  const idempotent = () => ({
    idempotence: new IdempotentProducerState(async () => 7n),
    maxInFlightPerPartition: 5,
  });
  /** Adds records `from`..`to`-1 to partition 0, one batch each, letting the sender run between. */
  const addEach = async (acc: RecordAccumulator, from: number, to: number) => {
    const out = [];
    for (let i = from; i < to; i++) {
      out.push(await acc.add("t", rec(i, { partition: 0 })));
      await settle();
    }
    return out;
  };

  it("without idempotence one call of a partition is in flight", async () => {
    const cluster = fakeCluster({ auto: false });
    const acc = cluster.make({ lingerMs: 0, batchSizeBytes: 1 });
    await addEach(acc, 0, 3);
    assert.equal(cluster.calls.length, 1);
    cluster.calls[0]!.finish();
    await waitFor(() => cluster.calls.length === 2, { message: "the next call" });
    assert.deepEqual(cluster.calls[1]!.partitions[0]!.values, values(1, 3));
  });

  it("up to 5 calls (5 batches) in flight; a failed one and the OUT_OF_ORDER ones behind it go again as they were sent, in sequence order, same epoch", async () => {
    const cluster = fakeCluster({ auto: false });
    const acc = cluster.make({ lingerMs: 0, batchSizeBytes: 1 }, idempotent());
    const deliveries = await addEach(acc, 0, 7);
    assert.equal(cluster.calls.length, 5, "five calls of partition 0 in flight, no sixth");
    assert.deepEqual(
      cluster.calls.map((c) => c.partitions[0]!.sequences),
      [0, 1, 2, 3, 4].map((base) => [{ epoch: 0, base }]),
    );
    const flushed = acc.flush();
    // The first is not written (retriable); the leader refuses the next ones: a gap before them.
    cluster.calls[0]!.finish({ 0: { code: ErrorCode.NOT_ENOUGH_REPLICAS } });
    await settle();
    assert.equal(cluster.calls.length, 5, "nothing new while calls of the partition are in flight");
    for (const c of cluster.calls.slice(1)) {
      c.finish({ 0: { code: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER } });
    }
    // Each call again with the same batches (a call is written or refused whole), in sequence
    // order, same sequences (no epoch bump); at most 5 batches unacknowledged.
    await waitFor(() => cluster.calls.length === 10, { message: "the retries" });
    await settle();
    assert.equal(cluster.calls.length, 10);
    assert.deepEqual(
      cluster.calls.slice(5).map((c) => c.partitions[0]!.sequences),
      [0, 1, 2, 3, 4].map((base) => [{ epoch: 0, base }]),
    );
    assert.deepEqual(
      cluster.calls.slice(5).flatMap((c) => c.partitions[0]!.values),
      values(0, 5),
    );
    for (const c of cluster.calls.slice(5)) c.finish();
    await waitFor(() => cluster.calls.length === 11, { message: "the batches never sent" });
    assert.deepEqual(cluster.calls[10]!.partitions[0]!.sequences, [
      { epoch: 0, base: 5 },
      { epoch: 0, base: 6 },
    ]);
    cluster.calls[10]!.finish();
    await flushed;
    for (const [i, d] of deliveries.entries()) assert.equal((await d.delivered).offset, i);
  });

  it("OUT_OF_ORDER for the oldest batch restarts the sequences under a new epoch once no call is in flight", async () => {
    const cluster = fakeCluster({ auto: false });
    const acc = cluster.make({ lingerMs: 0, batchSizeBytes: 1 }, idempotent());
    const deliveries = await addEach(acc, 0, 2);
    assert.equal(cluster.calls.length, 2);
    const flushed = acc.flush();
    cluster.calls[0]!.finish({ 0: { code: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER } });
    await settle();
    assert.equal(cluster.calls.length, 2, "the restart waits for the call in flight");
    cluster.calls[1]!.finish({ 0: { code: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER } });
    await waitFor(() => cluster.calls.length === 3, { message: "the retry" });
    assert.deepEqual(cluster.calls[2]!.partitions[0]!.sequences, [
      { epoch: 1, base: 0 },
      { epoch: 1, base: 1 },
    ]);
    cluster.calls[2]!.finish();
    await flushed;
    assert.deepEqual(
      await Promise.all(deliveries.map(async (d) => (await d.delivered).offset)),
      [0, 1],
    );
  });

  it("answers out of order: an OUT_OF_ORDER answer before the earlier batch's success is a plain retry", async () => {
    const cluster = fakeCluster({ auto: false });
    const acc = cluster.make({ lingerMs: 0, batchSizeBytes: 1 }, idempotent());
    const deliveries = await addEach(acc, 0, 2);
    const flushed = acc.flush();
    cluster.calls[1]!.finish({ 0: { code: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER } });
    await settle();
    cluster.calls[0]!.finish();
    await waitFor(() => cluster.calls.length === 3, { message: "the retry" });
    assert.deepEqual(cluster.calls[2]!.partitions[0]!.sequences, [{ epoch: 0, base: 1 }]);
    cluster.calls[2]!.finish();
    await flushed;
    assert.deepEqual(
      await Promise.all(deliveries.map(async (d) => (await d.delivered).offset)),
      [0, 1],
    );
  });
});

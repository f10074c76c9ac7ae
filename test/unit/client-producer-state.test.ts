/**
 * The idempotent client's own state (`services/client/producer-state.ts`) and how the sender
 * uses it: one InitProducerId, per-partition sequences taken once per batch (a retry keeps
 * them), KIP-360's epoch bump of one partition after OUT_OF_ORDER_SEQUENCE_NUMBER or
 * UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_EPOCH failing the batch, and the bound on restarts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import {
  IdempotentProducerState,
  PRODUCER_EPOCH_MAX,
  SEQUENCE_MAX,
  SEQUENCE_RESET_CODES,
  SEQUENCE_RESETS_PER_BATCH_MAX,
} from "../../services/client/producer-state.js";
import { RecordAccumulator } from "../../services/client/record-accumulator.js";
import { type ProducePartition, Sender } from "../../services/client/sender.js";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";
import { Acks } from "../../services/shared/generated/samsa/v1/Acks.js";
import type { ProducePartitionResult__Output } from "../../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import { decodeBatches } from "../../services/shared/record-batch/builder.js";
import { CompressionType } from "../../services/shared/record-batch/index.js";
import { waitFor } from "../support/wait-for.js";

const err = (code: ErrorCode) => new SamsaError(code, ErrorCode[code]);

describe("IdempotentProducerState", () => {
  it("asks InitProducerId once for concurrent callers; a failure is retried by the next call", async () => {
    let calls = 0;
    const state = new IdempotentProducerState(async () => {
      calls++;
      if (calls === 1) throw err(ErrorCode.LEADER_NOT_AVAILABLE);
      return 9n;
    });
    assert.equal(state.ready, false);
    assert.equal(state.producerId, -1n);
    await assert.rejects(state.initialize());
    assert.equal(state.ready, false);
    await Promise.all([state.initialize(), state.initialize()]);
    assert.equal(calls, 2, "the two concurrent calls shared one InitProducerId");
    assert.equal(state.producerId, 9n);
    await state.initialize();
    assert.equal(calls, 2, "no call once ready");
  });

  it("gives each partition its own sequences, a batch's records consecutive; wraps after 2^31-1", async () => {
    const state = new IdempotentProducerState(async () => 9n);
    await state.initialize();
    assert.deepEqual(state.assign("t", 0, 3), {
      producerId: 9n,
      producerEpoch: 0,
      baseSequence: 0,
    });
    assert.deepEqual(state.assign("t", 0, 2), {
      producerId: 9n,
      producerEpoch: 0,
      baseSequence: 3,
    });
    assert.equal(state.assign("t", 1, 1).baseSequence, 0, "another partition");
    assert.equal(state.assign("u", 0, 1).baseSequence, 0, "another topic");
    assert.equal(state.assign("t", 0, SEQUENCE_MAX - 5).baseSequence, 5);
    assert.equal(state.assign("t", 0, 1).baseSequence, SEQUENCE_MAX);
    assert.equal(state.assign("t", 0, 1).baseSequence, 0, "after 2^31-1 comes 0");
  });

  it("bumps one partition's epoch and restarts its sequences at 0; refuses past the int16 epoch", async () => {
    const state = new IdempotentProducerState(async () => 9n);
    await state.initialize();
    state.assign("t", 0, 4);
    state.assign("t", 1, 4);
    state.bumpEpoch("t", 0, err(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER));
    assert.deepEqual(state.assign("t", 0, 1), {
      producerId: 9n,
      producerEpoch: 1,
      baseSequence: 0,
    });
    assert.deepEqual(state.assign("t", 1, 1), {
      producerId: 9n,
      producerEpoch: 0,
      baseSequence: 4,
    });
    for (let e = 1; e < PRODUCER_EPOCH_MAX; e++) {
      state.bumpEpoch("t", 0, err(ErrorCode.UNKNOWN_PRODUCER_ID));
    }
    assert.equal(state.assign("t", 0, 1).producerEpoch, PRODUCER_EPOCH_MAX);
    assert.throws(
      () => state.bumpEpoch("t", 0, err(ErrorCode.UNKNOWN_PRODUCER_ID)),
      (e) => isSamsaError(e, ErrorCode.UNKNOWN_PRODUCER_ID) && /epoch exhausted/.test(e.message),
    );
  });

  it("restarts sequences after OUT_OF_ORDER and UNKNOWN_PRODUCER_ID only", () => {
    assert.deepEqual(
      [...SEQUENCE_RESET_CODES].sort(),
      [ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.UNKNOWN_PRODUCER_ID].sort(),
    );
    assert.equal(SEQUENCE_RESET_CODES.has(ErrorCode.INVALID_PRODUCER_EPOCH), false);
  });
});

/** A sender over partitions 0 and 1 of `t` on one broker; each call is answered by the test. */
function harness() {
  const calls: {
    batches: {
      partition: number;
      epoch: number;
      base: number;
      producerId: bigint;
      bytes: Buffer;
    }[];
    answer(codes: Partial<Record<number, ErrorCode>>): void;
  }[] = [];
  const next = [0, 0];
  const acc = new RecordAccumulator(
    { partitionCount: () => 2, loadPartitionCount: async () => 2 },
    { lingerMs: 0, maxRequestSizeBytes: 1 << 20 },
    undefined,
    () => 0,
  );
  const idempotence = new IdempotentProducerState(async () => 9n);
  new Sender(
    acc,
    {
      leader: () => ({ address: "b1" }),
      refresh: async () => {},
      produce: (_address: string, parts: ProducePartition[]) =>
        new Promise<readonly ProducePartitionResult__Output[]>((resolve) => {
          calls.push({
            batches: parts.flatMap((p) =>
              decodeBatches(p.records).map((b) => ({
                partition: p.partition,
                epoch: b.header.producerEpoch,
                base: b.header.baseSequence,
                producerId: b.header.producerId,
                bytes: Buffer.from(p.records),
              })),
            ),
            answer: (codes) =>
              resolve(
                parts.map((p) => {
                  const code = codes[p.partition] ?? ErrorCode.NONE;
                  const count = decodeBatches(p.records).reduce((n, b) => n + b.records.length, 0);
                  const base = next[p.partition]!;
                  if (code === ErrorCode.NONE) next[p.partition] = base + count;
                  return {
                    topic: p.topic,
                    partition: p.partition,
                    errorCode: code,
                    errorMessage: code === ErrorCode.NONE ? "" : ErrorCode[code],
                    baseOffset: code === ErrorCode.NONE ? String(base) : "-1",
                  } as unknown as ProducePartitionResult__Output;
                }),
              ),
          });
        }),
    },
    {
      acks: Acks.ACKS_ALL,
      compression: CompressionType.NONE,
      deliveryTimeoutMs: 60_000,
      requestTimeoutMs: 30_000,
      maxRequestSizeBytes: 1 << 20,
      maxInFlightPerBroker: 5,
      idempotence,
    },
  );
  const add = (partition: number) => acc.add("t", { value: `v${partition}`, partition });
  const callCount = async (n: number) => {
    await waitFor(() => calls.length === n, { message: `call ${n}` });
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(calls.length, n);
  };
  return { acc, calls, add, callCount };
}

describe("the sender's use of the producer state", () => {
  it("a retriable error is retried with the same bytes and sequences", async () => {
    const h = harness();
    const d = await h.add(0);
    await h.callCount(1);
    assert.deepEqual(
      h.calls[0]!.batches.map(({ producerId, epoch, base }) => ({ producerId, epoch, base })),
      [{ producerId: 9n, epoch: 0, base: 0 }],
    );
    h.calls[0]!.answer({ 0: ErrorCode.NOT_ENOUGH_REPLICAS });
    await h.callCount(2);
    assert.ok(h.calls[1]!.batches[0]!.bytes.equals(h.calls[0]!.batches[0]!.bytes));
    h.calls[1]!.answer({});
    assert.equal((await d.delivered).offset, 0);
  });

  for (const code of [ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, ErrorCode.UNKNOWN_PRODUCER_ID]) {
    it(`${ErrorCode[code]} bumps the epoch of that partition only and retries from sequence 0`, async () => {
      const h = harness();
      await h.add(0);
      await h.add(1);
      await h.callCount(1);
      h.calls[0]!.answer({});
      const d0 = await h.add(0);
      const d1 = await h.add(1);
      await h.callCount(2);
      assert.deepEqual(
        h.calls[1]!.batches.map((b) => [b.partition, b.epoch, b.base]),
        [
          [0, 0, 1],
          [1, 0, 1],
        ],
      );
      h.calls[1]!.answer({ 0: code });
      await h.callCount(3);
      assert.deepEqual(
        h.calls[2]!.batches.map((b) => [b.partition, b.epoch, b.base]),
        [[0, 1, 0]],
        "partition 0 again under epoch 1 from 0",
      );
      h.calls[2]!.answer({});
      assert.equal((await d0.delivered).offset, 1);
      assert.equal((await d1.delivered).offset, 1);
      // Partition 1 kept its epoch and sequences.
      await h.add(1);
      await h.callCount(4);
      assert.deepEqual(
        h.calls[3]!.batches.map((b) => [b.partition, b.epoch, b.base]),
        [[1, 0, 2]],
      );
      h.calls[3]!.answer({});
    });
  }

  it("INVALID_PRODUCER_EPOCH fails the batch (a fenced producer)", async () => {
    const h = harness();
    const d = await h.add(0);
    await h.callCount(1);
    h.calls[0]!.answer({ 0: ErrorCode.INVALID_PRODUCER_EPOCH });
    await assert.rejects(d.delivered, (e) => isSamsaError(e, ErrorCode.INVALID_PRODUCER_EPOCH));
    await assert.rejects(h.acc.flush(), (e) => isSamsaError(e, ErrorCode.INVALID_PRODUCER_EPOCH));
  });

  it(`a batch restarts its sequences at most ${SEQUENCE_RESETS_PER_BATCH_MAX} times, then fails with the broker's error`, async () => {
    const h = harness();
    const d = await h.add(0);
    for (let i = 0; i <= SEQUENCE_RESETS_PER_BATCH_MAX; i++) {
      await h.callCount(i + 1);
      assert.equal(h.calls[i]!.batches[0]!.epoch, i);
      h.calls[i]!.answer({ 0: ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER });
    }
    await assert.rejects(d.delivered, (e) =>
      isSamsaError(e, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER),
    );
    assert.equal(h.calls.length, SEQUENCE_RESETS_PER_BATCH_MAX + 1);
    await assert.rejects(h.acc.flush());
  });
});

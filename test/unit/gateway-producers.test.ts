/**
 * The gateway's idempotent Publish appends (`services/gateway/idempotence.ts`, GatewayProducers):
 * one producer id per partition and its sequences in order, one append at a time per partition, a
 * fresh producer id after any final failure (the outcome may be unknown), one retry under a fresh
 * id after UNKNOWN_PRODUCER_ID / OUT_OF_ORDER_SEQUENCE_NUMBER, and the active ids exported as
 * `samsa_gateway_producer_ids_active`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import {
  GATEWAY_PRODUCER_IDS_METRIC,
  GatewayMetrics,
} from "../../services/gateway/gateway-metrics.js";
import { GatewayProducers, type ProducerTurn } from "../../services/gateway/idempotence.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import type { ProducePartitionResult__Output } from "../../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import { Deadline } from "../../services/shared/retry.js";

const result = (code: ErrorCode = ErrorCode.NONE) =>
  ({
    topic: "t",
    partition: 0,
    errorCode: code,
    errorMessage: code === ErrorCode.NONE ? "" : ErrorCode[code],
    baseOffset: "0",
  }) as unknown as ProducePartitionResult__Output;

/** Producers whose InitProducerId hands out 100, 101, … */
function producers() {
  let next = 100n;
  let inits = 0;
  const p = new GatewayProducers(async () => {
    inits++;
    return next++;
  });
  const turns: ProducerTurn[] = [];
  const append = (
    records: number,
    answer: (
      turn: ProducerTurn,
    ) => ProducePartitionResult__Output | Promise<ProducePartitionResult__Output>,
    partition = 0,
  ) =>
    p.append(
      "t",
      partition,
      records,
      new Deadline(5_000),
      new AbortController().signal,
      async (turn) => {
        turns.push(turn);
        return answer(turn);
      },
    );
  return { p, turns, append, inits: () => inits };
}

const ok = () => result();

describe("GatewayProducers", () => {
  it("one producer id per partition; its sequences follow the records appended", async () => {
    const { p, turns, append, inits } = producers();
    await append(3, ok);
    await append(2, ok);
    await append(4, ok, 1);
    assert.deepEqual(turns, [
      { producerId: 100n, producerEpoch: 0, baseSequence: 0 },
      { producerId: 100n, producerEpoch: 0, baseSequence: 3 },
      { producerId: 101n, producerEpoch: 0, baseSequence: 0 },
    ]);
    assert.equal(inits(), 2);
    assert.equal(p.activeProducerIds, 2);
  });

  it("runs one append of a partition at a time, in call order", async () => {
    const { turns, append } = producers();
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const first = append(1, async () => {
      await held;
      return ok();
    });
    const second = append(1, ok);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(turns.length, 1, "the second waits for the first");
    release();
    await Promise.all([first, second]);
    assert.deepEqual(
      turns.map((t) => t.baseSequence),
      [0, 1],
    );
  });

  it("a final failure drops the producer id: the next append starts a fresh one at sequence 0", async () => {
    const { p, turns, append } = producers();
    await append(2, ok);
    const failed = await append(2, () => result(ErrorCode.NOT_LEADER));
    assert.equal(failed.errorCode, ErrorCode.NOT_LEADER, "answered as it came, not retried here");
    assert.equal(p.activeProducerIds, 0);
    await append(1, ok);
    assert.deepEqual(turns.slice(1), [
      { producerId: 100n, producerEpoch: 0, baseSequence: 2 },
      { producerId: 101n, producerEpoch: 0, baseSequence: 0 },
    ]);
  });

  it("a send that throws (outcome unknown) drops the id too, and the error reaches the caller", async () => {
    const { turns, append } = producers();
    await assert.rejects(
      append(1, () => {
        throw new SamsaError(ErrorCode.REQUEST_TIMED_OUT, "deadline");
      }),
      (err) => err instanceof SamsaError && err.code === ErrorCode.REQUEST_TIMED_OUT,
    );
    await append(1, ok);
    assert.deepEqual(
      turns.map((t) => t.producerId),
      [100n, 101n],
    );
  });

  for (const code of [ErrorCode.UNKNOWN_PRODUCER_ID, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER]) {
    it(`${ErrorCode[code]} is retried once at once under a fresh id`, async () => {
      const { turns, append } = producers();
      await append(5, ok);
      const answered = await append(1, (turn) => (turn.producerId === 100n ? result(code) : ok()));
      assert.equal(answered.errorCode, ErrorCode.NONE);
      assert.deepEqual(turns.slice(1), [
        { producerId: 100n, producerEpoch: 0, baseSequence: 5 },
        { producerId: 101n, producerEpoch: 0, baseSequence: 0 },
      ]);
      // Twice in a row: answered, not retried a third time.
      const again = await append(1, () => result(code));
      assert.equal(again.errorCode, code);
      assert.equal(turns.length, 5);
    });
  }

  it("exports the active producer ids as samsa_gateway_producer_ids_active", async () => {
    const registry = new Registry();
    const metrics = new GatewayMetrics(registry);
    const { p, append } = producers();
    metrics.watchProducerIds(() => p.activeProducerIds);
    await append(1, ok);
    await append(1, ok, 1);
    await append(1, ok, 2);
    const text = await registry.getSingleMetricAsString(GATEWAY_PRODUCER_IDS_METRIC);
    assert.match(text, /^samsa_gateway_producer_ids_active 3$/m);
    await append(1, () => result(ErrorCode.NOT_LEADER), 2);
    assert.match(
      await registry.getSingleMetricAsString(GATEWAY_PRODUCER_IDS_METRIC),
      /^samsa_gateway_producer_ids_active 2$/m,
    );
  });
});

/**
 * The gateway's coalescing of Publish calls (services/gateway/publish-accumulator.ts) over a
 * scripted append: concurrent callers of a partition share one append and each gets its own
 * consecutive offsets in order; one caller's refused records fail only that caller; callers
 * that cancel before the send are taken out; acks and the size limits split appends.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import type { ProducePartitionResult__Output } from "../../services/shared/generated/samsa/v1/ProducePartitionResult.js";
import { fromProtoErrorCode } from "../../services/shared/grpc/errors.js";
import {
  type AppendSpec,
  COALESCED_APPEND_BYTES_MAX,
  PublishAccumulator,
} from "../../services/gateway/publish-accumulator.js";
import { Acks } from "../../services/shared/generated/samsa/v1/Acks.js";
import { Deadline } from "../../services/shared/retry.js";
import type { ProducerRecord } from "../../services/shared/record-batch/records.js";
import { errorResult, NO_ERROR } from "../../services/shared/request-parsing.js";

interface SentAppend {
  spec: AppendSpec;
  values: string[];
  finish: (r?: { baseOffset?: string; errorCode?: unknown; errorMessage?: string }) => void;
}

/** An append transport that records every append and answers when the test says so. */
function scripted() {
  const sent: SentAppend[] = [];
  const logEnd = new Map<number, number>();
  const waiters: Array<() => void> = [];
  const accumulator = new PublishAccumulator((spec, records) => {
    return new Promise<ProducePartitionResult__Output>((resolve) => {
      const values = records.map((r) => String(r.value));
      sent.push({
        spec,
        values,
        finish: (over = {}) => {
          const base = logEnd.get(spec.partition) ?? 0;
          const ok = over.errorCode === undefined || over.errorCode === NO_ERROR;
          if (ok) logEnd.set(spec.partition, base + values.length);
          resolve({
            topic: spec.topic,
            partition: spec.partition,
            baseOffset: ok ? String(base) : "-1",
            errorCode: NO_ERROR,
            errorMessage: "",
            highWatermark: "0",
            logStartOffset: "0",
            ...over,
          } as ProducePartitionResult__Output);
        },
      });
      for (const w of waiters.splice(0)) w();
    });
  });
  const nextSend = async (n: number): Promise<SentAppend> => {
    while (sent.length < n) await new Promise<void>((r) => waiters.push(r));
    return sent[n - 1]!;
  };
  return { accumulator, sent, nextSend };
}

const spec = (over: Partial<AppendSpec> = {}): AppendSpec => ({
  topic: "t",
  partition: 0,
  acks: Acks.ACKS_ALL,
  timeoutMs: 0,
  batchBytes: 16384,
  ...over,
});
const recs = (...values: string[]): ProducerRecord[] =>
  values.map((v) => ({ key: null, value: Buffer.from(v) }));
const deadline = () => new Deadline(10_000);
const never = new AbortController().signal;
const codeOf = (r: { errorCode: unknown }) =>
  fromProtoErrorCode(r.errorCode as Parameters<typeof fromProtoErrorCode>[0]);

describe("PublishAccumulator", () => {
  it("callers arriving while an append is in flight share the next one, each with its own offsets", async () => {
    const { accumulator, sent, nextSend } = scripted();
    const first = accumulator.append(spec(), recs("a0"), deadline(), never);
    const s1 = await nextSend(1);
    const later = [
      accumulator.append(spec(), recs("b0", "b1"), deadline(), never),
      accumulator.append(spec(), recs("c0"), deadline(), never),
      accumulator.append(spec(), recs("d0", "d1", "d2"), deadline(), never),
    ];
    assert.equal(sent.length, 1, "nothing more is sent while the first append is in flight");
    s1.finish();
    assert.equal((await first).baseOffset, "0");
    const s2 = await nextSend(2);
    assert.deepEqual(s2.values, ["b0", "b1", "c0", "d0", "d1", "d2"], "one append, in order");
    s2.finish();
    const results = await Promise.all(later);
    assert.deepEqual(
      results.map((r) => r.baseOffset),
      ["1", "3", "4"],
    );
    assert.ok(results.every((r) => codeOf(r) === ErrorCode.NONE));
    assert.equal(sent.length, 2);
  });

  it("partitions do not wait for each other", async () => {
    const { accumulator, nextSend } = scripted();
    void accumulator.append(spec({ partition: 0 }), recs("a"), deadline(), never);
    const p1 = accumulator.append(spec({ partition: 1 }), recs("b"), deadline(), never);
    await nextSend(1);
    const s = await nextSend(2);
    assert.equal(s.spec.partition, 1, "partition 1 is sent while partition 0 is in flight");
    s.finish();
    assert.equal((await p1).baseOffset, "0");
  });

  it("an append refused for its contents is sent again caller by caller: only the bad caller fails", async () => {
    const { accumulator, nextSend } = scripted();
    void accumulator.append(spec(), recs("first"), deadline(), never);
    const s1 = await nextSend(1);
    const good1 = accumulator.append(spec(), recs("g1"), deadline(), never);
    const bad = accumulator.append(spec(), recs("BAD"), deadline(), never);
    const good2 = accumulator.append(spec(), recs("g2", "g3"), deadline(), never);
    s1.finish();
    const tooLarge = {
      ...errorResult(new SamsaError(ErrorCode.MESSAGE_TOO_LARGE, "too large")),
      baseOffset: "-1",
    };
    const together = await nextSend(2);
    assert.deepEqual(together.values, ["g1", "BAD", "g2", "g3"]);
    together.finish(tooLarge);
    (await nextSend(3)).finish();
    const alone = await nextSend(4);
    assert.deepEqual(alone.values, ["BAD"]);
    alone.finish(tooLarge);
    (await nextSend(5)).finish();
    assert.equal((await good1).baseOffset, "1");
    assert.equal(codeOf(await bad), ErrorCode.MESSAGE_TOO_LARGE);
    assert.equal((await bad).baseOffset, "-1");
    assert.equal((await good2).baseOffset, "2");
  });

  it("an append failing for another reason fails every caller in it, and the next append goes on", async () => {
    const { accumulator, nextSend } = scripted();
    void accumulator.append(spec(), recs("x"), deadline(), never);
    const s1 = await nextSend(1);
    const a = accumulator.append(spec(), recs("a"), deadline(), never);
    const b = accumulator.append(spec(), recs("b"), deadline(), never);
    s1.finish();
    (await nextSend(2)).finish({
      ...errorResult(new SamsaError(ErrorCode.NOT_ENOUGH_REPLICAS, "isr too small")),
      baseOffset: "-1",
    });
    assert.equal(codeOf(await a), ErrorCode.NOT_ENOUGH_REPLICAS);
    assert.equal(codeOf(await b), ErrorCode.NOT_ENOUGH_REPLICAS);
    const c = accumulator.append(spec(), recs("c"), deadline(), never);
    (await nextSend(3)).finish();
    assert.equal((await c).baseOffset, "1");
  });

  it("a caller that cancels before the send is taken out; the others are sent", async () => {
    const { accumulator, nextSend } = scripted();
    void accumulator.append(spec(), recs("x"), deadline(), never);
    const s1 = await nextSend(1);
    const gone = new AbortController();
    const cancelled = accumulator.append(spec(), recs("gone"), deadline(), gone.signal);
    const kept = accumulator.append(spec(), recs("kept"), deadline(), never);
    gone.abort();
    assert.equal((await cancelled).baseOffset, "-1");
    s1.finish();
    const s2 = await nextSend(2);
    assert.deepEqual(s2.values, ["kept"]);
    s2.finish();
    assert.equal((await kept).baseOffset, "1");
  });

  it("callers with other acks, or past the size limit, start a new append, in order", async () => {
    const { accumulator, sent, nextSend } = scripted();
    void accumulator.append(spec(), recs("x"), deadline(), never);
    const s1 = await nextSend(1);
    const big = "v".repeat(COALESCED_APPEND_BYTES_MAX / 2);
    const all = [
      accumulator.append(spec(), recs("a"), deadline(), never),
      accumulator.append(spec({ acks: Acks.ACKS_LEADER }), recs("b"), deadline(), never),
      accumulator.append(spec({ acks: Acks.ACKS_LEADER }), recs(big), deadline(), never),
      accumulator.append(spec({ acks: Acks.ACKS_LEADER }), recs(big), deadline(), never),
    ];
    s1.finish();
    for (let n = 2; n <= 4; n++) (await nextSend(n)).finish();
    await Promise.all(all);
    assert.deepEqual(
      sent.map((s) => [s.spec.acks, s.values.length]),
      [
        [Acks.ACKS_ALL, 1],
        [Acks.ACKS_ALL, 1],
        [Acks.ACKS_LEADER, 2],
        [Acks.ACKS_LEADER, 1],
      ],
    );
    assert.deepEqual(
      (await Promise.all(all)).map((r) => r.baseOffset),
      ["1", "2", "3", "4"],
    );
  });
});

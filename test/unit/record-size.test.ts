import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import { BATCH_HEADER_BYTES } from "../../services/shared/record-batch/layout.js";
import {
  type ProducerRecord,
  RECORD_OVERHEAD_BYTES_MAX,
  recordBodyBytes,
  recordBytes,
  recordBytesMax,
} from "../../services/shared/record-batch/records.js";

const bytes = (max: number) =>
  fc.option(
    fc.integer({ min: 0, max }).map((n) => Buffer.alloc(n, 7)),
    { nil: null },
  );
const record: fc.Arbitrary<ProducerRecord> = fc.record({
  key: bytes(300),
  value: bytes(20_000),
  headers: fc.array(fc.record({ key: fc.string({ maxLength: 200 }), value: bytes(300) }), {
    maxLength: 3,
  }),
  timestamp: fc.integer({ min: 0, max: 2 ** 50 }),
});

describe("record size upper bound", () => {
  it("is Kafka's 21 bytes of fixed fields", () => {
    assert.equal(RECORD_OVERHEAD_BYTES_MAX, 21);
  });

  it("holds for the largest deltas a batch can have", () => {
    const r: ProducerRecord = { key: Buffer.alloc(100), value: Buffer.alloc(1000) };
    const worst = recordBytes(recordBodyBytes(r, -Number.MAX_SAFE_INTEGER, -(2 ** 31)));
    assert.ok(worst <= recordBytesMax(r), `${worst} > ${recordBytesMax(r)}`);
  });

  it("bounds the encoded records of any batch", () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 20 }), (records) => {
        const batch = buildBatch(records);
        const bound = records.reduce((n, r) => n + recordBytesMax(r), 0);
        assert.ok(batch.length - BATCH_HEADER_BYTES <= bound);
      }),
      { numRuns: 200 },
    );
  });
});

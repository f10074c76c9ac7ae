/**
 * The gateway's hand-written encoding of several-record Consume messages
 * (services/gateway/consume-encoding.ts), decoded with the .proto's own ConsumeResponse type:
 * every field of every record, for random batches (keys and values null, empty or not, headers
 * with null values and non-ASCII keys, offsets and timestamps at 0 and large, compressed
 * batches, a start position inside a batch, chunks of any size).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  encodeConsumeMessage,
  encodeConsumePrefix,
  encodeConsumeRecords,
} from "../../services/gateway/consume-encoding.js";
import { isSamsaError, ErrorCode } from "../../services/shared/errors.js";
import type { ConsumeResponse__Output } from "../../services/shared/generated/samsa/v1/ConsumeResponse.js";
import { gatewayService } from "../../services/shared/grpc/proto.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";
import { CompressionType } from "../../services/shared/record-batch/layout.js";
import type { ProducerRecord } from "../../services/shared/record-batch/records.js";

const decode = (bytes: Buffer) =>
  gatewayService.definition.Consume!.responseDeserialize(bytes) as ConsumeResponse__Output;

const bytesArb = fc.oneof(
  fc.constant(null),
  fc.constant(Buffer.alloc(0)),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => Buffer.from(a)),
);
const recordArb: fc.Arbitrary<ProducerRecord> = fc.record({
  key: bytesArb,
  value: bytesArb,
  headers: fc.array(
    fc.record({
      key: fc.oneof(fc.constant(""), fc.string(), fc.constant("ключ🔑")),
      value: bytesArb,
    }),
    { maxLength: 3 },
  ),
  timestamp: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 31 }), fc.constant(2 ** 50)),
});
const batchesArb = fc.array(
  fc.record({
    records: fc.array(recordArb, { minLength: 1, maxLength: 20 }),
    codec: fc.constantFrom(CompressionType.NONE, CompressionType.GZIP, CompressionType.ZSTD),
  }),
  { minLength: 1, maxLength: 4 },
);

describe("Consume messages encoded from batches", () => {
  it("decode, with the .proto's types, to exactly the records of the batches", () => {
    fc.assert(
      fc.property(
        batchesArb,
        fc.constantFrom(0, 1, 300, 2 ** 40),
        fc.nat(30),
        fc.integer({ min: 1, max: 25 }),
        fc.constantFrom("t", "orders.v1-ü"),
        fc.constantFrom(0, 1, 200),
        (batches, firstOffset, skip, perMessage, topic, partition) => {
          let offset = firstOffset;
          const parts: Buffer[] = [];
          for (const b of batches) {
            parts.push(buildBatch(b.records, { compression: b.codec, baseOffset: offset }));
            offset += b.records.length;
          }
          const data = Buffer.concat(parts);
          const expected = decodeBatches(data)
            .flatMap((b) => b.records)
            .filter((r) => r.offset >= firstOffset + skip);
          const encoded = encodeConsumeRecords(data, firstOffset + skip);
          assert.equal(encoded.ends.length, expected.length);
          assert.equal(encoded.lastOffset, expected.at(-1)?.offset ?? -1);
          const prefix = encodeConsumePrefix(topic, partition);
          const got: ConsumeResponse__Output["records"] = [];
          for (let from = 0; from < encoded.ends.length; from += perMessage) {
            const to = Math.min(encoded.ends.length, from + perMessage);
            const m = decode(encodeConsumeMessage(prefix, encoded, from, to));
            assert.equal(m.topic, topic);
            assert.equal(m.partition, partition);
            assert.equal(m.records.length, to - from);
            got.push(...m.records);
          }
          assert.deepEqual(
            got.map((r) => ({
              offset: Number(r.offset),
              timestamp: Number(r.timestamp),
              key: r.key ?? null,
              value: r.value ?? null,
              headers: r.headers.map((h) => ({ key: h.key, value: h.value })),
            })),
            expected.map((r) => ({
              offset: r.offset,
              timestamp: r.timestamp,
              key: r.key === null ? null : Buffer.from(r.key),
              value: r.value === null ? null : Buffer.from(r.value),
              headers: r.headers.map((h) => ({ key: h.key, value: h.value ?? Buffer.alloc(0) })),
            })),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses a damaged batch with CORRUPT_MESSAGE", () => {
    const batch = buildBatch([{ value: Buffer.from("hello") }]);
    batch[batch.length - 3]! ^= 0xff;
    assert.throws(
      () => encodeConsumeRecords(batch, 0),
      (err) => isSamsaError(err, ErrorCode.CORRUPT_MESSAGE),
    );
  });
});

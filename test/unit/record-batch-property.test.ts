/**
 * Property tests: random record lists round-trip through buildBatch/decodeBatch for every codec,
 * and random damage to a valid batch makes decodeBatch throw SamsaError and nothing else.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { SamsaError } from "../../services/shared/errors.js";
import {
  BATCH_LENGTH_OFFSET,
  buildBatch,
  CompressionType,
  computeBatchCrc,
  CRC_OFFSET,
  decodeBatch,
  isCompressionSupported,
  LOG_OVERHEAD_BYTES,
  type ProducerRecord,
  RECORDS_OFFSET,
  TimestampType,
} from "../../services/shared/record-batch/index.js";

const CODECS = [
  CompressionType.NONE,
  CompressionType.GZIP,
  CompressionType.LZ4,
  CompressionType.ZSTD,
].filter(isCompressionSupported);
const TIMESTAMP_MAX = 2 ** 45;

const bytes = (maxLength: number) =>
  fc.uint8Array({ maxLength }).map((a) => Buffer.from(a.buffer, a.byteOffset, a.length));

const recordArb: fc.Arbitrary<ProducerRecord> = fc.record(
  {
    key: fc.option(bytes(40)),
    value: fc.option(bytes(300), { freq: 8 }),
    headers: fc.array(
      fc.record({
        key: fc.string({ unit: "grapheme", maxLength: 10 }),
        value: fc.option(bytes(20)),
      }),
      { maxLength: 4 },
    ),
    timestamp: fc.integer({ min: 0, max: TIMESTAMP_MAX }),
  },
  { requiredKeys: ["value"] },
);

const batchArb = fc.record({
  records: fc.array(recordArb, { minLength: 1, maxLength: 40 }),
  codec: fc.constantFrom(...CODECS),
  baseOffset: fc.integer({ min: 0, max: 2 ** 50 }),
  now: fc.integer({ min: 0, max: TIMESTAMP_MAX }),
  logAppendTime: fc.boolean(),
});

const hex = (b: Buffer | null | undefined) => (b == null ? null : b.toString("hex"));

describe("record batch properties", () => {
  it("random record lists round-trip for every codec", () => {
    fc.assert(
      fc.property(batchArb, ({ records, codec, baseOffset, now, logAppendTime }) => {
        const timestampType = logAppendTime
          ? TimestampType.LOG_APPEND_TIME
          : TimestampType.CREATE_TIME;
        const batch = buildBatch(records, { compression: codec, baseOffset, now, timestampType });
        const decoded = decodeBatch(batch);
        const timestamps = records.map((r) => r.timestamp ?? now);
        const maxTimestamp = Math.max(...timestamps);
        assert.equal(decoded.header.maxTimestamp, maxTimestamp);
        assert.equal(decoded.header.baseTimestamp, timestamps[0]);
        assert.deepEqual(
          decoded.records.map((r) => ({
            offset: r.offset,
            timestamp: r.timestamp,
            key: hex(r.key),
            value: hex(r.value),
            headers: r.headers.map((h) => ({ key: h.key, value: hex(h.value) })),
          })),
          records.map((r, i) => ({
            offset: baseOffset + i,
            timestamp: logAppendTime ? maxTimestamp : timestamps[i],
            key: hex(r.key),
            value: hex(r.value),
            headers: (r.headers ?? []).map((h) => ({ key: h.key, value: hex(h.value) })),
          })),
        );
      }),
      { numRuns: 300 },
    );
  });
});

/** Applies `edits` (position, byte) to a copy of `batch`; positions wrap around its length. */
function mutate(batch: Buffer, edits: Array<[number, number]>, truncateTo: number | null): Buffer {
  const out = Buffer.from(batch);
  for (const [pos, byte] of edits) out[pos % out.length] = byte;
  return truncateTo === null ? out : out.subarray(0, truncateTo % (out.length + 1));
}

/** Recomputes the CRC when the batch length allows, so damage reaches the record decoder. */
function resign(batch: Buffer): Buffer {
  if (batch.length < RECORDS_OFFSET) return batch;
  const size = batch.readInt32BE(BATCH_LENGTH_OFFSET) + LOG_OVERHEAD_BYTES;
  if (size >= RECORDS_OFFSET && size <= batch.length) {
    batch.writeUInt32BE(computeBatchCrc(batch.subarray(0, size)), CRC_OFFSET);
  }
  return batch;
}

function decodeOrSamsaError(buf: Buffer): void {
  try {
    decodeBatch(buf);
  } catch (err) {
    if (!(err instanceof SamsaError)) {
      assert.fail(`decodeBatch threw a non-SamsaError: ${String(err)}`);
    }
  }
}

const damageArb = fc.record({
  batch: batchArb,
  edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
    minLength: 1,
    maxLength: 6,
  }),
  truncateTo: fc.option(fc.nat(), { freq: 4 }),
  /** Edits land in the records region, where the decoders (not the CRC) must catch them. */
  recordsOnly: fc.boolean(),
});

describe("record batch damage", () => {
  it("random byte mutations make decodeBatch throw only SamsaError", () => {
    fc.assert(
      fc.property(damageArb, ({ batch: b, edits, truncateTo }) => {
        const batch = buildBatch(b.records, { compression: b.codec, now: b.now });
        decodeOrSamsaError(mutate(batch, edits, truncateTo));
      }),
      { numRuns: 500 },
    );
  });

  it("mutations with the CRC recomputed make decodeBatch throw only SamsaError", () => {
    fc.assert(
      fc.property(damageArb, ({ batch: b, edits, truncateTo, recordsOnly }) => {
        const batch = buildBatch(b.records, { compression: b.codec, now: b.now });
        const region = batch.length - RECORDS_OFFSET;
        const placed: Array<[number, number]> = recordsOnly
          ? edits.map(([pos, byte]) => [RECORDS_OFFSET + (pos % region), byte])
          : edits;
        decodeOrSamsaError(resign(mutate(batch, placed, truncateTo)));
      }),
      { numRuns: 1500 },
    );
  });
});

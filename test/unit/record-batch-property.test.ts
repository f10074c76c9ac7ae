/**
 * Property tests: random record lists round-trip through buildBatch/decodeBatch for every codec,
 * and random damage to a valid batch is refused with a SamsaError (always, when a byte under the
 * CRC changed) or, where only bytes outside the CRC changed (base offset, leader epoch), decodes
 * to exactly the original records; with the CRC recomputed, whatever decodes is consistent.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BATCH_LENGTH_OFFSET,
  buildBatch,
  CompressionType,
  CRC_OFFSET,
  computeBatchCrc,
  type DecodedBatch,
  decodeBatch,
  isCompressionSupported,
  LOG_OVERHEAD_BYTES,
  PARTITION_LEADER_EPOCH_OFFSET,
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

/**
 * The first bytes of the base offset, which the damage below leaves alone. A base offset of
 * 2^53 or more (or a negative one) is not refused today: it decodes to offsets that are not
 * safe integers, several records sharing one (reported as a bug). Once decodeBatch refuses it,
 * set this to 0 and the properties below cover those bytes too.
 */
const BASE_OFFSET_BYTES_SPARED = 3;

/**
 * Applies `edits` (position, byte) to a copy of `batch`; positions wrap around its length,
 * sparing the first {@link BASE_OFFSET_BYTES_SPARED} bytes (an edit there goes to the next ones).
 */
function mutate(batch: Buffer, edits: Array<[number, number]>, truncateTo: number | null): Buffer {
  const out = Buffer.from(batch);
  for (const [pos, byte] of edits) {
    const at = pos % out.length;
    out[at < BASE_OFFSET_BYTES_SPARED ? at + BASE_OFFSET_BYTES_SPARED : at] = byte;
  }
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

/**
 * The part of a decoded batch that the CRC protects: everything but `baseOffset` and
 * `partitionLeaderEpoch` (which the broker stamps, outside the CRC) and the CRC itself; record
 * offsets are taken relative to the base offset.
 */
function protectedPart(d: DecodedBatch) {
  const { baseOffset, partitionLeaderEpoch: _epoch, crc: _crc, ...header } = d.header;
  return {
    header,
    records: d.records.map((r) => ({ ...r, offset: r.offset - baseOffset })),
  };
}

/**
 * A damaged batch is either refused with a SamsaError or, when only bytes outside the CRC
 * changed, decodes to exactly the original records (at the offsets of its own base offset).
 * Returns whether it decoded.
 */
function refusedOrOriginal(original: Buffer, damaged: Buffer): boolean {
  let decoded: DecodedBatch;
  try {
    decoded = decodeBatch(damaged);
  } catch (err) {
    if (!(err instanceof SamsaError)) {
      assert.fail(`decodeBatch threw a non-SamsaError: ${String(err)}`);
    }
    return false;
  }
  assert.equal(damaged.length, original.length, "a decoded batch was not truncated");
  // Any change inside the CRC'd region must have been caught.
  assert.ok(
    damaged.subarray(ATTRIBUTES_OFFSET).equals(original.subarray(ATTRIBUTES_OFFSET)),
    "a change inside the CRC'd region decoded",
  );
  assert.deepEqual(protectedPart(decoded), protectedPart(decodeBatch(original)));
  return true;
}

/**
 * A damaged batch whose CRC was recomputed may decode to other records, but then to a
 * consistent batch: as many records as its header says, offsets increasing from the base offset
 * up to its last offset delta; and only SamsaErrors are thrown otherwise.
 */
function refusedOrConsistent(damaged: Buffer): void {
  let decoded: DecodedBatch;
  try {
    decoded = decodeBatch(damaged);
  } catch (err) {
    if (!(err instanceof SamsaError)) {
      assert.fail(`decodeBatch threw a non-SamsaError: ${String(err)}`);
    }
    return;
  }
  const { header, records } = decoded;
  assert.equal(records.length, header.recordCount, "record count");
  let previous = header.baseOffset - 1;
  for (const r of records) {
    assert.ok(r.offset > previous, `offset ${r.offset} after ${previous}`);
    previous = r.offset;
  }
  assert.ok(previous <= header.baseOffset + header.lastOffsetDelta, "within lastOffsetDelta");
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

/** Edits of the bytes before the CRC'd region only: base offset, length, leader epoch, magic, CRC. */
const headEditsArb = fc.array(
  fc.tuple(fc.integer({ min: 0, max: ATTRIBUTES_OFFSET - 1 }), fc.integer({ min: 0, max: 255 })),
  { minLength: 1, maxLength: 6 },
);

describe("record batch damage", () => {
  it("random byte mutations are refused with a SamsaError or change nothing protected", () => {
    fc.assert(
      fc.property(damageArb, ({ batch: b, edits, truncateTo }) => {
        const batch = buildBatch(b.records, { compression: b.codec, now: b.now });
        refusedOrOriginal(batch, mutate(batch, edits, truncateTo));
      }),
      { numRuns: 500 },
    );
  });

  it("a changed byte in the CRC'd region is always refused with CORRUPT_MESSAGE", () => {
    fc.assert(
      fc.property(damageArb, ({ batch: b, edits }) => {
        const batch = buildBatch(b.records, { compression: b.codec, now: b.now });
        const region = batch.length - ATTRIBUTES_OFFSET;
        const placed: Array<[number, number]> = edits.map(([pos, byte]) => [
          ATTRIBUTES_OFFSET + (pos % region),
          byte,
        ]);
        const damaged = mutate(batch, placed, null);
        fc.pre(!damaged.equals(batch));
        assert.throws(
          () => decodeBatch(damaged),
          (err) => isSamsaError(err, ErrorCode.CORRUPT_MESSAGE),
        );
      }),
      { numRuns: 500 },
    );
  });

  it("damage to the bytes outside the CRC is refused or decodes to the same records", () => {
    let decoded = 0;
    let refused = 0;
    fc.assert(
      fc.property(batchArb, headEditsArb, (b, edits) => {
        const batch = buildBatch(b.records, { compression: b.codec, now: b.now });
        const damaged = mutate(batch, edits, null);
        fc.pre(!damaged.equals(batch));
        if (refusedOrOriginal(batch, damaged)) decoded++;
        else refused++;
      }),
      { numRuns: 500 },
    );
    // Both outcomes happen: a new base offset or leader epoch decodes, a new length, magic or
    // CRC is refused.
    assert.ok(decoded > 0 && refused > 0, `decoded ${decoded}, refused ${refused}`);
  });

  it("a new base offset and leader epoch decode to the same records at the new offsets", () => {
    const batch = buildBatch(
      [{ value: Buffer.from("a") }, { key: Buffer.from("k"), value: Buffer.from("b") }],
      {
        now: 1_000,
      },
    );
    const stamped = Buffer.from(batch);
    stamped.writeBigInt64BE(42n, BASE_OFFSET_OFFSET);
    stamped.writeInt32BE(7, PARTITION_LEADER_EPOCH_OFFSET);
    assert.ok(refusedOrOriginal(batch, stamped));
    const decoded = decodeBatch(stamped);
    assert.equal(decoded.header.partitionLeaderEpoch, 7);
    assert.deepEqual(
      decoded.records.map((r) => [r.offset, r.value?.toString()]),
      [
        [42, "a"],
        [43, "b"],
      ],
    );
  });

  it("mutations with the CRC recomputed are refused with a SamsaError or decode consistently", () => {
    fc.assert(
      fc.property(damageArb, ({ batch: b, edits, truncateTo, recordsOnly }) => {
        const batch = buildBatch(b.records, { compression: b.codec, now: b.now });
        const region = batch.length - RECORDS_OFFSET;
        const placed: Array<[number, number]> = recordsOnly
          ? edits.map(([pos, byte]) => [RECORDS_OFFSET + (pos % region), byte])
          : edits;
        refusedOrConsistent(resign(mutate(batch, placed, truncateTo)));
      }),
      { numRuns: 1500 },
    );
  });
});

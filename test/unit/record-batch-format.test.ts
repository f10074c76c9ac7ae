/**
 * Byte-level fixtures of the record batch format (docs/format.md §9 walks through FIXTURE_HEX
 * byte by byte), round trips for every codec, and base offset / leader epoch stamping.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import {
  BATCH_RECORDS_MAX,
  buildBatch,
  CompressionType,
  type DecodedRecord,
  decodeBatch,
  decodeBatches,
  isCompressionSupported,
  iterateBatches,
  NO_PRODUCER_ID,
  type ProducerRecord,
  stampBatch,
  TimestampType,
  validateBatch,
} from "../../services/shared/record-batch/index.js";

const T0 = 1_700_000_000_000;

/** Two records: one with key and a header, one with a null key, 5 ms apart. */
const FIXTURE_RECORDS: ProducerRecord[] = [
  {
    key: Buffer.from("k1"),
    value: Buffer.from("hello"),
    headers: [{ key: "h", value: Buffer.from("v") }],
    timestamp: T0,
  },
  { key: null, value: Buffer.from("world"), timestamp: T0 + 5 },
];

/** buildBatch(FIXTURE_RECORDS) — also what Kafka's (and kafkajs's) v2 encoder produces. */
const FIXTURE_HEX = [
  "0000000000000000", // baseOffset 0
  "0000004f", // batchLength 79
  "ffffffff", // partitionLeaderEpoch -1
  "02", // magic 2
  "4bf42f08", // crc (CRC-32C of everything below)
  "0000", // attributes: no compression, create time
  "00000001", // lastOffsetDelta 1
  "0000018bcfe56800", // baseTimestamp 1700000000000
  "0000018bcfe56805", // maxTimestamp 1700000000005
  "ffffffffffffffff", // producerId -1
  "ffff", // producerEpoch -1
  "ffffffff", // baseSequence -1
  "00000002", // recordCount 2
  // record 0
  "22", // length 17
  "00", // attributes
  "00", // timestampDelta 0
  "00", // offsetDelta 0
  "04", // keyLength 2
  "6b31", // "k1"
  "0a", // valueLength 5
  "68656c6c6f", // "hello"
  "02", // headerCount 1
  "02", // header keyLength 1
  "68", // "h"
  "02", // header valueLength 1
  "76", // "v"
  // record 1
  "16", // length 11
  "00", // attributes
  "0a", // timestampDelta 5
  "02", // offsetDelta 1
  "01", // keyLength -1: null key
  "0a", // valueLength 5
  "776f726c64", // "world"
  "00", // headerCount 0
].join("");

const CODECS = [
  CompressionType.NONE,
  CompressionType.GZIP,
  CompressionType.LZ4,
  CompressionType.ZSTD,
].filter(isCompressionSupported);

function plain(r: DecodedRecord) {
  return {
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key?.toString("hex") ?? null,
    value: r.value?.toString("hex") ?? null,
    headers: r.headers.map((h) => ({ key: h.key, value: h.value?.toString("hex") ?? null })),
  };
}

function expected(records: ProducerRecord[], baseOffset: number, now: number) {
  return records.map((r, i) => ({
    offset: baseOffset + i,
    timestamp: r.timestamp ?? now,
    key: r.key?.toString("hex") ?? null,
    value: r.value?.toString("hex") ?? null,
    headers: (r.headers ?? []).map((h) => ({
      key: h.key,
      value: h.value?.toString("hex") ?? null,
    })),
  }));
}

function assertCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SamsaError, `expected a SamsaError, got ${String(err)}`);
    assert.equal(
      err.code,
      code,
      `expected ${ErrorCode[code]}, got ${err.codeName}: ${err.message}`,
    );
    return true;
  });
}

describe("record batch byte fixture", () => {
  it("buildBatch produces exactly the fixture bytes", () => {
    assert.equal(buildBatch(FIXTURE_RECORDS).toString("hex"), FIXTURE_HEX);
  });

  it("decodeBatch gives back the fixture's header and records", () => {
    const { header, records } = decodeBatch(Buffer.from(FIXTURE_HEX, "hex"));
    assert.deepEqual(header, {
      baseOffset: 0,
      batchLength: 79,
      partitionLeaderEpoch: -1,
      magic: 2,
      crc: 0x4bf42f08,
      attributes: 0,
      lastOffsetDelta: 1,
      baseTimestamp: T0,
      maxTimestamp: T0 + 5,
      producerId: NO_PRODUCER_ID,
      producerEpoch: -1,
      baseSequence: -1,
      recordCount: 2,
    });
    assert.deepEqual(records.map(plain), [
      {
        offset: 0,
        timestamp: T0,
        key: "6b31",
        value: "68656c6c6f",
        headers: [{ key: "h", value: "76" }],
      },
      { offset: 1, timestamp: T0 + 5, key: null, value: "776f726c64", headers: [] },
    ]);
  });

  it("stamping offset 1000 / epoch 7 changes only bytes 0-7 and 12-15 (docs/format.md §9)", () => {
    const batch = Buffer.from(FIXTURE_HEX, "hex");
    stampBatch(batch, 0, 1000, 7);
    const stamped = `00000000000003e8${FIXTURE_HEX.slice(16, 24)}00000007${FIXTURE_HEX.slice(32)}`;
    assert.equal(batch.toString("hex"), stamped);
    assert.deepEqual(
      decodeBatch(batch).records.map((r) => r.offset),
      [1000, 1001],
    );
  });

  it("decodes at a position inside a larger buffer", () => {
    const buf = Buffer.concat([Buffer.from("garbage!"), Buffer.from(FIXTURE_HEX, "hex")]);
    assert.equal(decodeBatch(buf, 8).records.length, 2);
  });
});

describe("record batch round trips", () => {
  const values = Array.from({ length: 200 }, (_, i) => ({
    key: i % 3 === 0 ? null : Buffer.from(`key-${i}`),
    value: i % 17 === 0 ? null : Buffer.alloc(100 + (i % 7), i),
    headers: i % 5 === 0 ? [{ key: `hé-${i}`, value: i % 10 === 0 ? null : Buffer.from("x") }] : [],
    timestamp: T0 + ((i * 7919) % 1000) - 500,
  }));

  for (const codec of CODECS) {
    it(`round-trips 200 records with ${CompressionType[codec]}`, () => {
      const batch = buildBatch(values, { compression: codec, baseOffset: 42 });
      const { header, records } = decodeBatch(batch);
      assert.equal(header.attributes & 0x07, codec);
      assert.equal(header.baseTimestamp, values[0]!.timestamp);
      assert.equal(header.maxTimestamp, Math.max(...values.map((v) => v.timestamp)));
      assert.equal(header.recordCount, 200);
      assert.equal(header.lastOffsetDelta, 199);
      assert.deepEqual(records.map(plain), expected(values, 42, 0));
    });
  }

  it("fills in missing timestamps from `now` and missing keys/headers as null/[]", () => {
    const batch = buildBatch([{ value: Buffer.from("a") }, { value: null, timestamp: 5 }], {
      now: 1234,
    });
    const { header, records } = decodeBatch(batch);
    assert.equal(header.baseTimestamp, 1234);
    assert.equal(header.maxTimestamp, 1234);
    assert.deepEqual(records.map(plain), [
      { offset: 0, timestamp: 1234, key: null, value: "61", headers: [] },
      { offset: 1, timestamp: 5, key: null, value: null, headers: [] },
    ]);
  });

  it("writes producer fields and gives LOG_APPEND_TIME batches maxTimestamp everywhere", () => {
    const batch = buildBatch(FIXTURE_RECORDS, {
      timestampType: TimestampType.LOG_APPEND_TIME,
      producerId: 77n,
      producerEpoch: 3,
      baseSequence: 9,
      partitionLeaderEpoch: 4,
    });
    const { header, records } = decodeBatch(batch);
    assert.equal(header.attributes, 0x08);
    assert.equal(header.producerId, 77n);
    assert.equal(header.producerEpoch, 3);
    assert.equal(header.baseSequence, 9);
    assert.equal(header.partitionLeaderEpoch, 4);
    assert.deepEqual(
      records.map((r) => r.timestamp),
      [T0 + 5, T0 + 5],
    );
  });

  it("decodes back-to-back batches of mixed codecs", () => {
    const batches = CODECS.map((codec, i) =>
      buildBatch(FIXTURE_RECORDS, { compression: codec, baseOffset: i * 2 }),
    );
    const decoded = decodeBatches(Buffer.concat(batches));
    assert.equal(decoded.length, CODECS.length);
    assert.deepEqual(
      decoded.flatMap((b) => b.records.map((r) => r.offset)),
      CODECS.flatMap((_, i) => [i * 2, i * 2 + 1]),
    );
    assert.deepEqual(decodeBatches(Buffer.alloc(0)), []);
    const whole = Buffer.concat(batches);
    assertCode(() => decodeBatches(whole.subarray(0, whole.length - 1)), ErrorCode.CORRUPT_MESSAGE);
  });

  it("iterates back-to-back batches one at a time, failing only when it reaches a defect", () => {
    const batches = CODECS.map((codec, i) =>
      buildBatch(FIXTURE_RECORDS, { compression: codec, baseOffset: i * 2 }),
    );
    const whole = Buffer.concat(batches);
    assert.deepEqual(
      [...iterateBatches(whole)].map((b) => b.records.map(plain)),
      decodeBatches(whole).map((b) => b.records.map(plain)),
    );
    assert.deepEqual([...iterateBatches(Buffer.alloc(0))], []);
    const iter = iterateBatches(whole.subarray(0, whole.length - 1));
    for (let i = 0; i < CODECS.length - 1; i++)
      assert.equal(iter.next().value?.header.baseOffset, i * 2);
    assertCode(() => iter.next(), ErrorCode.CORRUPT_MESSAGE);
  });

  it("handles a 1 MiB value and multi-byte length varints", () => {
    const big = Buffer.alloc(1024 * 1024, 0xab);
    for (const codec of CODECS) {
      const { records } = decodeBatch(buildBatch([{ value: big }], { compression: codec }));
      assert.ok(records[0]!.value!.equals(big));
    }
  });
});

describe("stamping base offset and leader epoch", () => {
  for (const codec of CODECS) {
    it(`keeps the CRC valid (${CompressionType[codec]})`, () => {
      const batch = buildBatch(FIXTURE_RECORDS, { compression: codec });
      const crcBefore = validateBatch(batch).crc;
      stampBatch(batch, 0, 1_000_000_007, 12);
      const header = validateBatch(batch);
      assert.equal(header.crc, crcBefore);
      const { records } = decodeBatch(batch);
      assert.equal(header.baseOffset, 1_000_000_007);
      assert.equal(header.partitionLeaderEpoch, 12);
      assert.deepEqual(
        records.map((r) => r.offset),
        [1_000_000_007, 1_000_000_008],
      );
    });
  }
});

describe("buildBatch argument checks", () => {
  it("rejects an empty record list and too many records", () => {
    assertCode(() => buildBatch([]), ErrorCode.INVALID_REQUEST);
    const tooMany = new Array<ProducerRecord>(BATCH_RECORDS_MAX + 1).fill({ value: null });
    assertCode(() => buildBatch(tooMany), ErrorCode.INVALID_REQUEST);
  });

  it("rejects bad timestamps and options", () => {
    assertCode(() => buildBatch([{ value: null, timestamp: -1 }]), ErrorCode.INVALID_TIMESTAMP);
    assertCode(() => buildBatch([{ value: null, timestamp: 1.5 }]), ErrorCode.INVALID_TIMESTAMP);
    assertCode(() => buildBatch([{ value: null }], { baseOffset: -1 }), ErrorCode.INVALID_REQUEST);
    assertCode(
      () => buildBatch([{ value: null }], { producerEpoch: 40_000 }),
      ErrorCode.INVALID_REQUEST,
    );
    assertCode(
      () => buildBatch([{ value: null }], { producerId: 2n ** 63n }),
      ErrorCode.INVALID_REQUEST,
    );
  });

  it("rejects SNAPPY and unknown codecs as unsupported", () => {
    for (const compression of [CompressionType.SNAPPY, 7 as CompressionType]) {
      assertCode(
        () => buildBatch(FIXTURE_RECORDS, { compression }),
        ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
      );
    }
  });
});

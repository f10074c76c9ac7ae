/**
 * Malformed batches: every defect must surface as a SamsaError with the documented code
 * (docs/format.md §7), never as a RangeError or a crash.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import {
  ATTRIBUTES_OFFSET,
  BATCH_LENGTH_OFFSET,
  buildBatch,
  CompressionType,
  computeBatchCrc,
  CRC_OFFSET,
  decodeBatch,
  LAST_OFFSET_DELTA_OFFSET,
  MAGIC_OFFSET,
  RECORD_COUNT_OFFSET,
  RECORDS_OFFSET,
  validateBatch,
} from "../../services/shared/record-batch/index.js";

const T0 = 1_700_000_000_000;
const FIXTURE = buildBatch(
  [
    {
      key: Buffer.from("k1"),
      value: Buffer.from("hello"),
      headers: [{ key: "h", value: Buffer.from("v") }],
      timestamp: T0,
    },
    { key: null, value: Buffer.from("world"), timestamp: T0 + 5 },
  ],
  { now: T0 },
);
/** Positions inside FIXTURE's records region (see the fixture in record-batch-format.test.ts). */
const R0 = RECORDS_OFFSET; // record 0 starts here: its length varint
const R0_KEY_LENGTH = R0 + 4;
const R0_VALUE_LENGTH = R0 + 7;
const R0_HEADER_COUNT = R0 + 13;
const R0_HEADER_KEY_LENGTH = R0 + 14;
const R1 = R0 + 18; // record 1's length varint
const R1_OFFSET_DELTA = R1 + 3;

function copy(): Buffer {
  return Buffer.from(FIXTURE);
}

/** Recomputes the CRC so a deliberate defect reaches the record decoder. */
function resign(batch: Buffer): Buffer {
  batch.writeUInt32BE(computeBatchCrc(batch), CRC_OFFSET);
  return batch;
}

function assertCode(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SamsaError, `expected a SamsaError, got ${String(err)}`);
    assert.equal(
      err.code,
      code,
      `expected ${ErrorCode[code]}, got ${err.codeName}: ${err.message}`,
    );
    if (message) assert.match(err.message, message);
    return true;
  });
}

const corrupt = (buf: Buffer, message?: RegExp) =>
  assertCode(() => decodeBatch(buf), ErrorCode.CORRUPT_MESSAGE, message);

describe("batch-level validation", () => {
  it("accepts the untouched fixture", () => {
    assert.equal(decodeBatch(copy()).records.length, 2);
  });

  it("rejects truncated batches", () => {
    for (const n of [0, 1, 12, 60, 61, FIXTURE.length - 1]) {
      corrupt(FIXTURE.subarray(0, n), /truncated/);
    }
  });

  it("rejects a batch larger than maxBatchBytes with MESSAGE_TOO_LARGE", () => {
    const max = FIXTURE.length - 1;
    assertCode(
      () => validateBatch(FIXTURE, 0, { maxBatchBytes: max }),
      ErrorCode.MESSAGE_TOO_LARGE,
    );
    assertCode(() => decodeBatch(FIXTURE, 0, { maxBatchBytes: max }), ErrorCode.MESSAGE_TOO_LARGE);
    assert.equal(decodeBatch(FIXTURE, 0, { maxBatchBytes: FIXTURE.length }).records.length, 2);
  });

  it("rejects a batch length below the header size or past the buffer", () => {
    const short = copy();
    short.writeInt32BE(10, BATCH_LENGTH_OFFSET);
    corrupt(short, /smaller than the header/);
    const long = copy();
    long.writeInt32BE(FIXTURE.length, BATCH_LENGTH_OFFSET);
    corrupt(long, /truncated/);
  });

  it("rejects a wrong magic", () => {
    for (const magic of [0, 1, 3, 0xff]) {
      const b = copy();
      b[MAGIC_OFFSET] = magic;
      corrupt(b, /magic/);
    }
  });

  it("rejects a flipped bit anywhere in the CRC'd region (CRC mismatch)", () => {
    for (let i = ATTRIBUTES_OFFSET; i < FIXTURE.length; i++) {
      const b = copy();
      b[i]! ^= 1 << (i % 8);
      corrupt(b, /CRC|record count|offset delta/);
    }
    const b = copy();
    b[R1 + 6]! ^= 0x01; // a byte of "world"
    corrupt(b, /CRC mismatch/);
  });

  it("rejects a negative or oversized record count", () => {
    for (const count of [-1, -2_000_000_000, 2_000_000_000]) {
      const b = copy();
      b.writeInt32BE(count, RECORD_COUNT_OFFSET);
      corrupt(resign(b), /record count/);
    }
  });

  it("rejects a lastOffsetDelta inconsistent with the record count", () => {
    for (const delta of [-1, 0]) {
      const b = copy();
      b.writeInt32BE(delta, LAST_OFFSET_DELTA_OFFSET);
      corrupt(resign(b), /last offset delta/);
    }
  });

  it("rejects garbage", () => {
    corrupt(Buffer.from("this is not a record batch at all, just some text........"));
    // A random batchLength may be huge: the length check reports MESSAGE_TOO_LARGE first.
    for (let i = 0; i < 200; i++) {
      const junk = randomBytes(1 + (i % 120));
      assert.throws(
        () => decodeBatch(junk),
        (err: unknown) =>
          err instanceof SamsaError &&
          (err.code === ErrorCode.CORRUPT_MESSAGE || err.code === ErrorCode.MESSAGE_TOO_LARGE),
      );
    }
  });
});

describe("record-level validation (CRC recomputed so the records are decoded)", () => {
  it("rejects a record count that does not match the records", () => {
    const more = copy();
    more.writeInt32BE(3, RECORD_COUNT_OFFSET);
    more.writeInt32BE(2, LAST_OFFSET_DELTA_OFFSET);
    corrupt(resign(more), /truncated varint|cannot hold/);
    const fewer = copy();
    fewer.writeInt32BE(1, RECORD_COUNT_OFFSET);
    corrupt(resign(fewer), /bytes after the batch's 1 records/);
  });

  it("rejects an offsetDelta beyond lastOffsetDelta or not increasing", () => {
    const beyond = copy();
    beyond[R1_OFFSET_DELTA] = 0x04; // offsetDelta 2 > lastOffsetDelta 1
    corrupt(resign(beyond), /offset delta 2/);
    const repeated = copy();
    repeated[R1_OFFSET_DELTA] = 0x00; // offsetDelta 0 again
    corrupt(resign(repeated), /offset delta 0/);
  });

  it("rejects negative lengths other than -1", () => {
    const key = copy();
    key[R0_KEY_LENGTH] = 0x03; // -2
    corrupt(resign(key), /negative key length -2/);
    const headerKey = copy();
    headerKey[R0_HEADER_KEY_LENGTH] = 0x01; // -1: header keys cannot be null
    corrupt(resign(headerKey), /header key length -1/);
    const headerCount = copy();
    headerCount[R0_HEADER_COUNT] = 0x01; // -1
    corrupt(resign(headerCount), /header count -1/);
    const record = copy();
    record[R0] = 0x01; // record length -1
    corrupt(resign(record), /record 0 length -1/);
  });

  it("rejects lengths past the end of the record", () => {
    const value = copy();
    value[R0_VALUE_LENGTH] = 0x0c; // 6 bytes, but "hello" is followed by the header count
    corrupt(resign(value));
    const longValue = copy();
    longValue[R0_VALUE_LENGTH] = 0x7e; // 63 bytes
    corrupt(resign(longValue), /value length 63 exceeds/);
    const longRecord = copy();
    longRecord[R0] = 0x7e; // record length 63
    corrupt(resign(longRecord), /record 0 length 63/);
  });

  it("rejects a record whose fields do not fill its length", () => {
    // Record 0 claims 18 bytes but its fields take 17: the extra byte is not allowed.
    const b = copy();
    b[R0] = 0x24;
    corrupt(resign(b), /record 0 has 1 bytes past its fields/);
  });

  it("rejects a truncated or overlong varint inside a record", () => {
    const b = copy();
    b.fill(0xff, R1 + 1); // record 1: every byte after its length has the continuation bit
    corrupt(resign(b), /varint|varlong/);
  });

  it("rejects SNAPPY and unknown codecs with UNSUPPORTED_COMPRESSION_TYPE", () => {
    for (const codec of [CompressionType.SNAPPY, 5, 6, 7]) {
      const b = copy();
      b.writeInt16BE(codec, ATTRIBUTES_OFFSET);
      assertCode(() => decodeBatch(resign(b)), ErrorCode.UNSUPPORTED_COMPRESSION_TYPE);
    }
  });

  it("rejects uncompressed records labelled as compressed", () => {
    for (const codec of [CompressionType.GZIP, CompressionType.LZ4, CompressionType.ZSTD]) {
      const b = copy();
      b.writeInt16BE(codec, ATTRIBUTES_OFFSET);
      corrupt(resign(b));
    }
  });

  it("accepts an empty batch (record count 0) and decodes it to no records", () => {
    const b = Buffer.from(FIXTURE.subarray(0, RECORDS_OFFSET));
    b.writeInt32BE(RECORDS_OFFSET - 12, BATCH_LENGTH_OFFSET);
    b.writeInt32BE(0, RECORD_COUNT_OFFSET);
    b.writeInt32BE(0, LAST_OFFSET_DELTA_OFFSET);
    assert.deepEqual(decodeBatch(resign(b)).records, []);
  });
});

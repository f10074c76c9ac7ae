/**
 * The record framing walk (record-walk.ts) that the leader runs on every append: every
 * malformed records region is refused with CORRUPT_MESSAGE naming the record, good batches of
 * every codec are accepted, decompression bombs are refused at the bound, and (property) any
 * batch the walk accepts decodes with `decodeBatch`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import {
  ATTRIBUTES_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  BatchBuilder,
  buildBatch,
  CompressionType,
  CRC_OFFSET,
  CURRENT_MAGIC,
  compressRecords,
  computeBatchCrc,
  decodeBatch,
  decompressRecords,
  isCompressionSupported,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAX_TIMESTAMP_OFFSET,
  type ProducerRecord,
  PRODUCER_ID_OFFSET,
  PRODUCER_EPOCH_OFFSET,
  BASE_SEQUENCE_OFFSET,
  RECORD_COUNT_OFFSET,
  readBatchHeader,
  TimestampType,
  validateRecordBatches,
  type ValidateRecordsOptions,
  walkRecords,
} from "../../services/shared/record-batch/index.js";
import { writeVarint, writeVarlong } from "../../services/shared/record-batch/varint.js";

const T0 = 1_700_000_000_000;
const CODECS = [
  CompressionType.NONE,
  CompressionType.GZIP,
  CompressionType.LZ4,
  CompressionType.ZSTD,
].filter(isCompressionSupported);
const LEADER: ValidateRecordsOptions = { contiguousOffsets: true };

function varint(n: number): Buffer {
  const b = Buffer.alloc(5);
  return b.subarray(0, writeVarint(b, 0, n));
}

function varlong(n: number): Buffer {
  const b = Buffer.alloc(10);
  return b.subarray(0, writeVarlong(b, 0, n));
}

interface RawRecord {
  /** Overrides the computed body length. */
  length?: number;
  timestampDelta?: number;
  offsetDelta: number;
  key?: Buffer | null;
  value?: Buffer | null;
  headers?: Array<{ key: Buffer; value: Buffer | null }>;
  /** Bytes written verbatim after the fields (inside the record's length). */
  extra?: Buffer;
  /** Replaces everything after the offset delta. */
  body?: Buffer;
}

function nullable(b: Buffer | null | undefined): Buffer {
  return b == null ? varint(-1) : Buffer.concat([varint(b.length), b]);
}

/** Encodes one record by hand, so tests can write what buildBatch never would. */
function rawRecord(r: RawRecord): Buffer {
  const fields =
    r.body ??
    Buffer.concat([
      nullable(r.key),
      nullable(r.value === undefined ? Buffer.from("v") : r.value),
      varint(r.headers?.length ?? 0),
      ...(r.headers ?? []).flatMap((h) => [varint(h.key.length), h.key, nullable(h.value)]),
      r.extra ?? Buffer.alloc(0),
    ]);
  const body = Buffer.concat([
    Buffer.from([0]),
    varlong(r.timestampDelta ?? 0),
    varint(r.offsetDelta),
    fields,
  ]);
  return Buffer.concat([varint(r.length ?? body.length), body]);
}

interface RawHeader {
  recordCount: number;
  lastOffsetDelta?: number;
  baseTimestamp?: number;
  maxTimestamp?: number;
  attributes?: number;
}

/** A batch around a hand-made records region, with a correct CRC. */
function rawBatch(records: Buffer, h: RawHeader): Buffer {
  const batch = Buffer.alloc(BATCH_HEADER_BYTES + records.length);
  batch.writeInt32BE(batch.length - LOG_OVERHEAD_BYTES, BATCH_LENGTH_OFFSET);
  batch.writeInt8(CURRENT_MAGIC, MAGIC_OFFSET);
  batch.writeInt16BE(h.attributes ?? 0, ATTRIBUTES_OFFSET);
  batch.writeInt32BE(h.lastOffsetDelta ?? h.recordCount - 1, LAST_OFFSET_DELTA_OFFSET);
  batch.writeBigInt64BE(BigInt(h.baseTimestamp ?? T0), BASE_TIMESTAMP_OFFSET);
  batch.writeBigInt64BE(BigInt(h.maxTimestamp ?? T0), MAX_TIMESTAMP_OFFSET);
  batch.writeBigInt64BE(-1n, PRODUCER_ID_OFFSET);
  batch.writeInt16BE(-1, PRODUCER_EPOCH_OFFSET);
  batch.writeInt32BE(-1, BASE_SEQUENCE_OFFSET);
  batch.writeInt32BE(h.recordCount, RECORD_COUNT_OFFSET);
  records.copy(batch, BATCH_HEADER_BYTES);
  batch.writeUInt32BE(computeBatchCrc(batch), CRC_OFFSET);
  return batch;
}

function records(...rs: RawRecord[]): Buffer {
  return Buffer.concat(rs.map(rawRecord));
}

function refused(batch: Buffer, message: RegExp, options: ValidateRecordsOptions = LEADER): void {
  assert.throws(
    () => validateRecordBatches(batch, options),
    (err: unknown) => {
      assert.ok(err instanceof SamsaError, `expected a SamsaError, got ${String(err)}`);
      assert.equal(err.codeName, "CORRUPT_MESSAGE", err.message);
      assert.match(err.message, message);
      return true;
    },
  );
}

function accepted(batch: Buffer, options: ValidateRecordsOptions = LEADER): void {
  const summary = validateRecordBatches(batch, options);
  let count = 0;
  for (const p of summary.positions) count += decodeBatch(batch, p).records.length;
  assert.equal(count, summary.recordCount);
}

describe("record walk: malformed records are refused", () => {
  it("refuses the issue's batch: one record whose length varint says -64", () => {
    // What the third-party client sent: a CRC-correct batch whose record length is 0x7f (-64).
    const good = rawRecord({ offsetDelta: 0, key: Buffer.from("key"), value: Buffer.from("x") });
    const bad = Buffer.concat([varint(-64), good.subarray(1)]);
    refused(rawBatch(bad, { recordCount: 1 }), /record 0: length -64 invalid/);
    refused(rawBatch(bad, { recordCount: 1 }), /record 0: length -64/, {});
  });

  it("refuses a record length below the smallest body and one past the region", () => {
    refused(rawBatch(records({ offsetDelta: 0, length: 5 }), { recordCount: 1 }), /length 5/);
    refused(rawBatch(records({ offsetDelta: 0, length: 40 }), { recordCount: 1 }), /length 40/);
  });

  it("refuses a record count that does not match the records present", () => {
    const two = records({ offsetDelta: 0 }, { offsetDelta: 1 });
    refused(rawBatch(two, { recordCount: 3 }), /record 2: (truncated|length)|cannot hold/);
    refused(rawBatch(two, { recordCount: 1 }), /bytes after the batch's 1 records/);
    // Enough bytes for the count's minimum, but the records run out.
    const big = records({ offsetDelta: 0, value: Buffer.alloc(30) });
    refused(rawBatch(big, { recordCount: 3 }), /record 1: truncated varint/);
  });

  it("refuses trailing bytes after the last record", () => {
    const withTail = Buffer.concat([records({ offsetDelta: 0 }), Buffer.from([0, 0, 0])]);
    refused(rawBatch(withTail, { recordCount: 1 }), /3 bytes after/);
  });

  it("refuses key and value lengths past the record or below -1", () => {
    const keyPast = { offsetDelta: 0, body: Buffer.concat([varint(50), Buffer.from("abc")]) };
    refused(rawBatch(records(keyPast), { recordCount: 1 }), /record 0: key length 50/);
    const keyNeg = { offsetDelta: 0, body: Buffer.concat([varint(-2), varint(-1), varint(0)]) };
    refused(rawBatch(records(keyNeg), { recordCount: 1 }), /key length -2/);
    const valuePast = {
      offsetDelta: 0,
      body: Buffer.concat([varint(-1), varint(9), Buffer.from("abc"), varint(0)]),
    };
    refused(rawBatch(records(valuePast), { recordCount: 1 }), /value length 9/);
    // A key that fits the region but not its record (the next record's bytes are not its own).
    const spill = {
      offsetDelta: 0,
      body: Buffer.concat([varint(12), Buffer.from("ab"), varint(-1), varint(0)]),
    };
    refused(rawBatch(records(spill, { offsetDelta: 1 }), { recordCount: 2 }), /key length 12/);
  });

  it("refuses header counts and header lengths that overflow the record", () => {
    const countPast = { offsetDelta: 0, body: Buffer.concat([varint(-1), varint(-1), varint(9)]) };
    refused(rawBatch(records(countPast), { recordCount: 1 }), /header count 9/);
    const countNeg = { offsetDelta: 0, body: Buffer.concat([varint(-1), varint(-1), varint(-3)]) };
    refused(rawBatch(records(countNeg), { recordCount: 1 }), /header count -3/);
    const keyNeg = {
      offsetDelta: 0,
      body: Buffer.concat([varint(-1), varint(-1), varint(1), varint(-1), varint(-1)]),
    };
    refused(rawBatch(records(keyNeg), { recordCount: 1 }), /header key length -1/);
    const keyPast = {
      offsetDelta: 0,
      body: Buffer.concat([varint(-1), varint(-1), varint(1), varint(20), Buffer.from("h")]),
    };
    refused(rawBatch(records(keyPast), { recordCount: 1 }), /header key length 20/);
    const valuePast = {
      offsetDelta: 0,
      body: Buffer.concat([
        varint(-1),
        varint(-1),
        varint(1),
        varint(1),
        Buffer.from("h"),
        varint(30),
        Buffer.from("x"),
      ]),
    };
    refused(rawBatch(records(valuePast), { recordCount: 1 }), /header value length 30/);
  });

  it("refuses a record whose fields end before its length", () => {
    const padded = { offsetDelta: 0, extra: Buffer.from([0, 0]) };
    refused(rawBatch(records(padded), { recordCount: 1 }), /record 0: 2 bytes past its fields/);
  });

  it("refuses bad offset deltas", () => {
    const back = records({ offsetDelta: 0 }, { offsetDelta: 0 });
    refused(rawBatch(back, { recordCount: 2 }), /record 1: offset delta 0/);
    refused(rawBatch(back, { recordCount: 2 }), /record 1: offset delta 0/, {});
    const negative = records({ offsetDelta: -1 });
    refused(rawBatch(negative, { recordCount: 1 }), /record 0: offset delta -1/, {});
    const past = records({ offsetDelta: 0 }, { offsetDelta: 5 });
    refused(rawBatch(past, { recordCount: 2, lastOffsetDelta: 3 }), /offset delta 5/, {});
    // A gap (what compaction would leave) is refused from a client, as in Kafka...
    const gap = records({ offsetDelta: 0 }, { offsetDelta: 2 });
    refused(rawBatch(gap, { recordCount: 2, lastOffsetDelta: 2 }), /last offset delta 2/);
    refused(rawBatch(gap, { recordCount: 2, lastOffsetDelta: 1 }), /record 1: offset delta 2/);
    // ...but readable when not asked for contiguous offsets.
    accepted(rawBatch(gap, { recordCount: 2, lastOffsetDelta: 2 }), {});
    // The header's last offset delta must be the last record's.
    const short = records({ offsetDelta: 0 }, { offsetDelta: 1 });
    refused(
      rawBatch(short, { recordCount: 2, lastOffsetDelta: 4 }),
      /record 1: offset delta 1 of the last/,
      {},
    );
  });

  it("refuses truncated and overlong varints", () => {
    // The record's length covers a key length varint whose continuation bit runs off its end.
    const cut = { offsetDelta: 0, body: Buffer.from([0x80, 0x80, 0x80]) };
    refused(rawBatch(records(cut), { recordCount: 1 }), /record 0: truncated varint/);
    // The region ends inside the first record's length varint.
    refused(
      rawBatch(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]), { recordCount: 1 }),
      /record 0: varint overflows 32 bits/,
    );
    const overflow = { offsetDelta: 0, body: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0]) };
    refused(rawBatch(records(overflow), { recordCount: 1 }), /record 0: varint overflows/);
    // An empty varlong timestamp delta: the record is only its attributes byte long... padded.
    const tsCut = Buffer.concat([varint(6), Buffer.from([0, 0x80, 0x80, 0x80, 0x80, 0x80])]);
    refused(rawBatch(tsCut, { recordCount: 1 }), /record 0: truncated varlong/);
  });

  it("refuses a max timestamp that is not the largest record timestamp (create time)", () => {
    const two = records(
      { offsetDelta: 0, timestampDelta: 0 },
      { offsetDelta: 1, timestampDelta: 7 },
    );
    refused(rawBatch(two, { recordCount: 2, maxTimestamp: T0 }), /max timestamp/);
    refused(rawBatch(two, { recordCount: 2, maxTimestamp: T0 + 9 }), /max timestamp/);
    accepted(rawBatch(two, { recordCount: 2, maxTimestamp: T0 + 7 }));
    // Log-append time: the records' deltas are not used, the header's max timestamp is.
    const logAppend = TimestampType.LOG_APPEND_TIME << 3;
    accepted(rawBatch(two, { recordCount: 2, maxTimestamp: T0 + 999, attributes: logAppend }));
  });

  it("refuses an empty batch from a client, and accepts it otherwise", () => {
    refused(
      rawBatch(Buffer.alloc(0), { recordCount: 0, lastOffsetDelta: 0 }),
      /at least one record/,
    );
    accepted(rawBatch(Buffer.alloc(0), { recordCount: 0, lastOffsetDelta: 0 }), {});
  });

  it("names the batch when several are sent together", () => {
    const good = buildBatch([{ value: Buffer.from("a") }]);
    const bad = rawBatch(Buffer.concat([varint(-64), Buffer.alloc(22)]), { recordCount: 1 });
    refused(Buffer.concat([good, bad]), /^batch 1, record 0: length -64/);
  });

  it("refuses malformed records inside a compressed batch", () => {
    for (const codec of CODECS.filter((c) => c !== CompressionType.NONE)) {
      const bad = Buffer.concat([varint(-64), Buffer.alloc(22)]);
      refused(
        rawBatch(compressRecords(codec, bad), { recordCount: 1, attributes: codec }),
        /record 0: length -64/,
      );
      const tail = Buffer.concat([records({ offsetDelta: 0 }), Buffer.from([1])]);
      refused(
        rawBatch(compressRecords(codec, tail), { recordCount: 1, attributes: codec }),
        /1 bytes after/,
      );
    }
  });
});

describe("record walk: decompression bombs", () => {
  const MiB = 1024 * 1024;
  /** 1 GiB of zeros as 64 concatenated members/frames of 16 MiB each: small to build and send. */
  function bomb(codec: CompressionType): Buffer {
    const member = compressRecords(codec, Buffer.alloc(16 * MiB));
    return Buffer.concat(Array.from({ length: 64 }, () => member));
  }

  for (const codec of CODECS.filter((c) => c !== CompressionType.NONE)) {
    it(`refuses a ${CompressionType[codec]} batch that inflates to 1 GiB, at the bound`, () => {
      const region = bomb(codec);
      assert.ok(region.length < 8 * MiB, `${region.length} bytes compressed`);
      const batch = rawBatch(region, { recordCount: 1, attributes: codec });
      const before = process.memoryUsage().rss;
      refused(batch, /exceed the limit of 134217728 bytes/);
      // Far less than the gigabyte: the codec stopped at (or before) the 128 MiB bound.
      const grown = process.memoryUsage().rss - before;
      assert.ok(grown < 512 * MiB, `rss grew by ${Math.round(grown / MiB)} MiB`);
    });
  }

  it("applies a smaller bound when asked", () => {
    const data = records({ offsetDelta: 0, value: Buffer.alloc(10_000) });
    const batch = rawBatch(gzipSync(data), { recordCount: 1, attributes: CompressionType.GZIP });
    accepted(batch);
    refused(batch, /exceed the limit of 1000 bytes/, { ...LEADER, decompressedBytesMax: 1000 });
  });
});

describe("record walk: good batches are accepted", () => {
  const recordsOf = (n: number): ProducerRecord[] =>
    Array.from({ length: n }, (_, i) => ({
      key: i % 3 === 0 ? null : Buffer.from(`key-${i}`),
      value: i % 5 === 0 ? null : Buffer.alloc(i * 37, i),
      headers:
        i % 2 === 0
          ? [
              { key: "trace", value: Buffer.from(`t${i}`) },
              { key: "", value: null },
            ]
          : undefined,
      // Out of order, so some deltas are negative; far apart, so the varlongs are long.
      timestamp: T0 + ((i * 7919) % 100) * 1_000_000 - 50_000_000,
    }));

  for (const codec of CODECS) {
    it(`accepts buildBatch batches with headers and null keys/values (${CompressionType[codec]})`, () => {
      for (const n of [1, 2, 17, 300])
        accepted(buildBatch(recordsOf(n), { compression: codec, now: T0 }));
      const logAppend = buildBatch(recordsOf(5), {
        compression: codec,
        timestampType: TimestampType.LOG_APPEND_TIME,
      });
      accepted(logAppend);
    });

    it(`accepts BatchBuilder batches (${CompressionType[codec]})`, () => {
      const b = new BatchBuilder(1024 * 1024);
      for (const r of recordsOf(200)) {
        assert.ok(b.tryAppend(r.key ?? null, r.value, r.headers, r.timestamp!));
      }
      b.tryAppend("a string key", "a string value", [{ key: "k", value: "v" }], T0);
      accepted(b.close({ compression: codec }));
    });
  }

  it("accepts large records (multi-byte length varints) and several batches back to back", () => {
    const big = buildBatch([
      { value: Buffer.alloc(300_000) },
      { key: Buffer.alloc(20_000), value: null },
    ]);
    const small = buildBatch([{ value: Buffer.from("x") }]);
    accepted(Buffer.concat([big, small, big]));
  });

  it("walks a region directly", () => {
    const batch = buildBatch(recordsOf(10), { now: T0 });
    walkRecords(batch.subarray(BATCH_HEADER_BYTES), readBatchHeader(batch), LEADER);
  });
});

describe("record walk: properties", () => {
  const recordArb: fc.Arbitrary<ProducerRecord> = fc.record(
    {
      key: fc.option(fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a))),
      value: fc.option(
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
        { freq: 8 },
      ),
      headers: fc.array(
        fc.record({
          key: fc.string({ maxLength: 6 }),
          value: fc.option(fc.uint8Array({ maxLength: 10 }).map((a) => Buffer.from(a))),
        }),
        { maxLength: 3 },
      ),
      timestamp: fc.integer({ min: 0, max: 2 ** 45 }),
    },
    { requiredKeys: ["value"] },
  );

  type Mutation =
    | { kind: "set"; at: number; byte: number }
    | { kind: "insert"; at: number; bytes: Uint8Array }
    | { kind: "delete"; at: number; count: number }
    | { kind: "field"; field: "count" | "lastDelta" | "maxTs"; delta: number };

  const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({
      kind: fc.constant("set" as const),
      at: fc.nat(),
      byte: fc.integer({ min: 0, max: 255 }),
    }),
    fc.record({
      kind: fc.constant("insert" as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }),
    }),
    fc.record({
      kind: fc.constant("delete" as const),
      at: fc.nat(),
      count: fc.integer({ min: 1, max: 4 }),
    }),
    fc.record({
      kind: fc.constant("field" as const),
      field: fc.constantFrom("count" as const, "lastDelta" as const, "maxTs" as const),
      delta: fc.integer({ min: -2, max: 2 }),
    }),
  );

  /** Applies mutations to the records region (and header fields), then re-frames the batch. */
  function mutate(batch: Buffer, mutations: Mutation[], codec: CompressionType): Buffer {
    const h = readBatchHeader(batch);
    let region = Buffer.from(decodeRegion(batch, codec));
    let count = h.recordCount;
    let lastDelta = h.lastOffsetDelta;
    let maxTs = h.maxTimestamp;
    for (const m of mutations) {
      if (m.kind === "set" && region.length > 0) region[m.at % region.length] = m.byte;
      else if (m.kind === "insert") {
        const at = m.at % (region.length + 1);
        region = Buffer.concat([region.subarray(0, at), Buffer.from(m.bytes), region.subarray(at)]);
      } else if (m.kind === "delete" && region.length > 0) {
        const at = m.at % region.length;
        region = Buffer.concat([region.subarray(0, at), region.subarray(at + m.count)]);
      } else if (m.kind === "field") {
        if (m.field === "count") count = Math.max(0, count + m.delta);
        else if (m.field === "lastDelta") lastDelta = Math.max(0, lastDelta + m.delta);
        else maxTs += m.delta;
      }
    }
    const stored = codec === CompressionType.NONE ? region : compressRecords(codec, region);
    return rawBatch(stored, {
      recordCount: count,
      lastOffsetDelta: Math.max(lastDelta, count - 1),
      baseTimestamp: h.baseTimestamp,
      maxTimestamp: maxTs,
      attributes: h.attributes,
    });
  }

  function decodeRegion(batch: Buffer, codec: CompressionType): Buffer {
    return decompressRecords(codec, batch.subarray(BATCH_HEADER_BYTES));
  }

  it("a mutated batch (CRC recomputed) is refused, or accepted and decodable", () => {
    let acceptedRuns = 0;
    let refusedRuns = 0;
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 1, maxLength: 12 }),
        fc.constantFrom(...CODECS),
        fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        (recs, codec, mutations, contiguous) => {
          const batch = mutate(buildBatch(recs, { compression: codec }), mutations, codec);
          let walked = false;
          try {
            validateRecordBatches(batch, { contiguousOffsets: contiguous });
            walked = true;
            acceptedRuns++;
          } catch (err) {
            refusedRuns++;
            assert.ok(err instanceof SamsaError, `walk threw ${String(err)}`);
            assert.equal(err.code, ErrorCode.CORRUPT_MESSAGE, err.message);
          }
          if (walked) {
            const decoded = decodeBatch(batch);
            assert.equal(decoded.records.length, decoded.header.recordCount);
          }
        },
      ),
      { numRuns: 3000 },
    );
    // Not vacuous: some mutations keep the batch valid (a changed value byte), most do not.
    assert.ok(
      acceptedRuns > 100 && refusedRuns > 100,
      `${acceptedRuns} accepted, ${refusedRuns} refused`,
    );
  });
});

/**
 * Per-batch codecs: round trips, Kafka-style framing variants, and the decompressed-size bound
 * that keeps a small hostile batch from claiming unbounded memory.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { compressFrameSync } from "lz4-napi";
import type * as ZstdBinding from "zstd-napi/binding.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import {
  buildBatch,
  CompressionType,
  compressRecords,
  DECOMPRESSED_BATCH_BYTES_MAX,
  decodeBatch,
  decompressRecords,
  isCompressionSupported,
  lz4FramesOutputBound,
} from "../../services/shared/record-batch/index.js";

const COMPRESSED = [CompressionType.GZIP, CompressionType.LZ4, CompressionType.ZSTD].filter(
  isCompressionSupported,
);
const HAS_ZSTD = isCompressionSupported(CompressionType.ZSTD);
const MiB = 1024 * 1024;

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

describe("codecs", () => {
  it("ZSTD is available in this build (zstd-napi installed)", () => {
    assert.ok(HAS_ZSTD);
  });

  it("NONE passes data through and the bound is 128 MiB", () => {
    const data = Buffer.from("abc");
    assert.equal(compressRecords(CompressionType.NONE, data), data);
    assert.equal(decompressRecords(CompressionType.NONE, data), data);
    assert.equal(DECOMPRESSED_BATCH_BYTES_MAX, 128 * MiB);
  });

  for (const codec of COMPRESSED) {
    const name = CompressionType[codec];
    it(`${name} round-trips random, repetitive and empty data`, () => {
      for (const data of [randomBytes(100_000), Buffer.alloc(3 * MiB, 7), Buffer.alloc(0)]) {
        const packed = compressRecords(codec, data);
        assert.ok(decompressRecords(codec, packed).equals(data));
      }
    });

    it(`${name}: output past the bound is CORRUPT_MESSAGE, output at the bound is fine`, () => {
      const data = Buffer.alloc(2 * MiB, 1);
      const packed = compressRecords(codec, data);
      assert.ok(packed.length < 64 * 1024, "a highly compressible payload");
      // LZ4's bound is computed from block headers, so it may sit a little above the real size.
      const fits = codec === CompressionType.LZ4 ? lz4FramesOutputBound(packed) : data.length;
      assert.equal(decompressRecords(codec, packed, fits).length, data.length);
      assertCode(
        () => decompressRecords(codec, packed, MiB),
        ErrorCode.CORRUPT_MESSAGE,
        /exceed the limit/,
      );
    });

    it(`${name}: garbage and truncated input are CORRUPT_MESSAGE`, () => {
      const packed = compressRecords(codec, Buffer.from("some records ".repeat(100)));
      for (const bad of [
        Buffer.alloc(0),
        randomBytes(64),
        packed.subarray(0, packed.length - 1),
        packed.subarray(0, 4),
        packed.subarray(1),
      ]) {
        assertCode(() => decompressRecords(codec, bad), ErrorCode.CORRUPT_MESSAGE);
      }
    });

    it(`${name}: decodeBatch applies decompressedBytesMax`, () => {
      const value = Buffer.alloc(1000, 3);
      const batch = buildBatch(
        Array.from({ length: 1000 }, () => ({ value })),
        { compression: codec },
      );
      assert.equal(decodeBatch(batch).records.length, 1000);
      assertCode(
        () => decodeBatch(batch, 0, { decompressedBytesMax: 100_000 }),
        ErrorCode.CORRUPT_MESSAGE,
      );
    });
  }

  it("SNAPPY and unknown codec ids are UNSUPPORTED_COMPRESSION_TYPE", () => {
    for (const codec of [CompressionType.SNAPPY, 5, 6, 7]) {
      assert.equal(isCompressionSupported(codec), false);
      assertCode(
        () => decompressRecords(codec, Buffer.from("x")),
        ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
      );
      assertCode(
        () => compressRecords(codec, Buffer.from("x")),
        ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
      );
    }
  });
});

describe("LZ4 frames", () => {
  it("decodes frames with block and content checksums", () => {
    const data = Buffer.from("kafka lz4 frame ".repeat(10_000));
    const packed = compressFrameSync(data, { blockChecksums: true, contentChecksum: true });
    assert.ok(decompressRecords(CompressionType.LZ4, packed).equals(data));
  });

  it("bounds the output by walking block headers before decompressing", () => {
    const data = Buffer.alloc(MiB, 9);
    const packed = compressRecords(CompressionType.LZ4, data);
    const bound = lz4FramesOutputBound(packed);
    assert.ok(bound >= data.length && bound <= data.length + 4 * MiB, `bound ${bound}`);
  });

  it("skips a skippable frame before the data frame", () => {
    const data = Buffer.from("after the skippable frame");
    const skippable = Buffer.from("502a4d1804000000deadbeef", "hex");
    const packed = Buffer.concat([skippable, compressRecords(CompressionType.LZ4, data)]);
    assert.equal(lz4FramesOutputBound(packed) >= data.length, true);
  });

  it("rejects broken frame headers", () => {
    const packed = compressRecords(CompressionType.LZ4, Buffer.from("x".repeat(1000)));
    const badVersion = Buffer.from(packed);
    badVersion[4] = 0x00; // FLG version bits 00
    assertCode(() => lz4FramesOutputBound(badVersion), ErrorCode.CORRUPT_MESSAGE, /flags/);
    const badBlockSize = Buffer.from(packed);
    badBlockSize[5] = 0x10; // BD block max size id 1
    assertCode(() => lz4FramesOutputBound(badBlockSize), ErrorCode.CORRUPT_MESSAGE, /descriptor/);
    assertCode(() => lz4FramesOutputBound(packed.subarray(0, 9)), ErrorCode.CORRUPT_MESSAGE);
  });
});

describe("ZSTD frames", { skip: !HAS_ZSTD }, () => {
  const zstd = () => createRequire(import.meta.url)("zstd-napi/binding.js") as typeof ZstdBinding;

  /** A frame without a content size, as streaming producers (zstd-jni) write. */
  function streamingFrame(data: Buffer): Buffer {
    const z = zstd();
    const cctx = new z.CCtx();
    cctx.setParameter(z.CParameter.contentSizeFlag, 0);
    const out = Buffer.alloc(z.compressBound(data.length));
    const n = cctx.compress2(out, data);
    assert.equal(z.getFrameContentSize(out.subarray(0, n)), null);
    return out.subarray(0, n);
  }

  it("decodes frames without a content size, bounded", () => {
    const data = Buffer.alloc(3 * MiB, 5);
    const packed = streamingFrame(data);
    assert.ok(decompressRecords(CompressionType.ZSTD, packed).equals(data));
    assertCode(
      () => decompressRecords(CompressionType.ZSTD, packed, 2 * MiB),
      ErrorCode.CORRUPT_MESSAGE,
      /exceed the limit/,
    );
    assertCode(
      () => decompressRecords(CompressionType.ZSTD, packed.subarray(0, packed.length - 2)),
      ErrorCode.CORRUPT_MESSAGE,
    );
  });

  it("decodes concatenated frames", () => {
    const a = Buffer.from("first frame ".repeat(100));
    const b = Buffer.from("second frame ".repeat(100));
    const packed = Buffer.concat([
      compressRecords(CompressionType.ZSTD, a),
      streamingFrame(b),
      compressRecords(CompressionType.ZSTD, b),
    ]);
    assert.ok(decompressRecords(CompressionType.ZSTD, packed).equals(Buffer.concat([a, b, b])));
  });

  it("rejects a frame whose header claims more than the bound", () => {
    const packed = compressRecords(CompressionType.ZSTD, Buffer.alloc(MiB));
    assertCode(
      () => decompressRecords(CompressionType.ZSTD, packed, MiB - 1),
      ErrorCode.CORRUPT_MESSAGE,
      /exceed the limit/,
    );
  });
});

/**
 * Per-batch compression of the records region (everything after the 61-byte batch header), with
 * Kafka's framing for each codec so the bytes interoperate with Kafka clients:
 *
 * - GZIP: one gzip stream (RFC 1952), node's zlib.
 * - LZ4: the LZ4 *frame* format (magic 0x184D2204), `lz4-napi`.
 * - ZSTD: standard zstd frames, `zstd-napi` (optional dependency, loaded on first use).
 * - SNAPPY: not supported (Kafka's xerial framing has no well-kept native package here).
 *
 * Decompression is bounded: output past `decompressedBytesMax` and any decoder failure become
 * `SamsaError(CORRUPT_MESSAGE)`, so a hostile batch cannot blow up memory or crash the reader.
 */
import { createRequire } from "node:module";
import { gunzipSync, gzipSync } from "node:zlib";
import { compressFrameSync, decompressFrameSync } from "lz4-napi";
import type * as ZstdBinding from "zstd-napi/binding.js";
import { ErrorCode, SamsaError } from "../errors.js";
import { BATCH_BYTES_MAX, CompressionType } from "./layout.js";

/**
 * Largest decompressed records region accepted: 2 × {@link BATCH_BYTES_MAX} = 128 MiB. Bounds
 * the memory one batch can claim on decode, whatever its compression ratio.
 */
export const DECOMPRESSED_BATCH_BYTES_MAX = 2 * BATCH_BYTES_MAX;
/** zstd level used when compressing (Kafka's default). */
export const ZSTD_LEVEL_DEFAULT = 3;
/** gzip level used when compressing (zlib's and Kafka's default). */
export const GZIP_LEVEL_DEFAULT = 6;
/** Output chunk for streaming zstd decompression of frames without a content size: 1 MiB. */
const ZSTD_CHUNK_BYTES = 1024 * 1024;

function corrupt(message: string, cause?: unknown): SamsaError {
  return new SamsaError(ErrorCode.CORRUPT_MESSAGE, message, { cause });
}

function unsupported(type: number): SamsaError {
  const name = CompressionType[type] ?? `codec ${type}`;
  return new SamsaError(
    ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
    `compression type ${name} is not supported`,
  );
}

// ---------------------------------------------------------------------------------------------
// zstd: optional native module, loaded lazily so a machine without it still reads other codecs.

interface Zstd {
  binding: typeof ZstdBinding;
  cctx: ZstdBinding.CCtx;
  dctx: ZstdBinding.DCtx;
}

let zstd: Zstd | null | undefined;

function loadZstd(): Zstd | null {
  if (zstd !== undefined) return zstd;
  try {
    const binding = createRequire(import.meta.url)("zstd-napi/binding.js") as typeof ZstdBinding;
    zstd = { binding, cctx: new binding.CCtx(), dctx: new binding.DCtx() };
  } catch {
    zstd = null;
  }
  return zstd;
}

/** Whether this process can compress and decompress batches with `type`. */
export function isCompressionSupported(type: CompressionType): boolean {
  switch (type) {
    case CompressionType.NONE:
    case CompressionType.GZIP:
    case CompressionType.LZ4:
      return true;
    case CompressionType.ZSTD:
      return loadZstd() !== null;
    default:
      return false;
  }
}

/**
 * Compresses a batch's records region with `type`. `NONE` returns `data` itself.
 * Throws `SamsaError(UNSUPPORTED_COMPRESSION_TYPE)` for codecs this process lacks.
 */
export function compressRecords(type: CompressionType, data: Buffer): Buffer {
  switch (type) {
    case CompressionType.NONE:
      return data;
    case CompressionType.GZIP:
      return gzipSync(data, { level: GZIP_LEVEL_DEFAULT });
    case CompressionType.LZ4:
      return compressFrameSync(data);
    case CompressionType.ZSTD: {
      const z = loadZstd();
      if (z === null) throw unsupported(type);
      const out = Buffer.allocUnsafe(z.binding.compressBound(data.length));
      const n = z.cctx.compress(out, data, ZSTD_LEVEL_DEFAULT);
      return out.subarray(0, n);
    }
    default:
      throw unsupported(type);
  }
}

/**
 * Decompresses a batch's records region. `NONE` returns `data` itself.
 * @param decompressedBytesMax Largest output accepted; default {@link DECOMPRESSED_BATCH_BYTES_MAX}.
 * @throws SamsaError CORRUPT_MESSAGE on malformed input or output past the bound;
 *   UNSUPPORTED_COMPRESSION_TYPE for SNAPPY, codec ids 5–7, or ZSTD without `zstd-napi`.
 */
export function decompressRecords(
  type: number,
  data: Buffer,
  decompressedBytesMax = DECOMPRESSED_BATCH_BYTES_MAX,
): Buffer {
  if (type === CompressionType.NONE) return data;
  if (!isCompressionSupported(type)) throw unsupported(type);
  let out: Buffer;
  try {
    if (type === CompressionType.GZIP) out = gunzipBounded(data, decompressedBytesMax);
    else if (type === CompressionType.LZ4) out = lz4FrameDecompress(data, decompressedBytesMax);
    else out = zstdDecompress(loadZstd()!, data, decompressedBytesMax);
  } catch (err) {
    if (err instanceof SamsaError) throw err;
    const name = CompressionType[type];
    throw corrupt(`${name} decompression failed: ${(err as Error)?.message ?? err}`, err);
  }
  if (out.length > decompressedBytesMax) throw tooBig(out.length, decompressedBytesMax);
  return out;
}

function tooBig(size: number | string, max: number): SamsaError {
  return corrupt(`decompressed records of ${size} bytes exceed the limit of ${max} bytes`);
}

function gunzipBounded(data: Buffer, max: number): Buffer {
  try {
    // maxOutputLength makes zlib stop (with a RangeError) instead of growing past the bound.
    return gunzipSync(data, { maxOutputLength: Math.max(max, 1) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === "ERR_BUFFER_TOO_LARGE") {
      throw tooBig(`more than ${max}`, max);
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// LZ4 frames. lz4-napi decompresses a whole frame with no output bound, so the frame's block
// headers are walked first: a compressed block expands to at most the frame's block maximum
// size, and to at most 255 times its own size (LZ4's largest expansion: one extension byte adds
// at most 255 bytes of match length). That bounds the output before any of it is produced.

const LZ4_FRAME_MAGIC = 0x184d2204;
const LZ4_SKIPPABLE_MAGIC_BASE = 0x184d2a50;
const LZ4_SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const LZ4_FLG_VERSION_MASK = 0xc0;
const LZ4_FLG_VERSION_01 = 0x40;
const LZ4_FLG_BLOCK_CHECKSUM = 0x10;
const LZ4_FLG_CONTENT_SIZE = 0x08;
const LZ4_FLG_CONTENT_CHECKSUM = 0x04;
const LZ4_FLG_RESERVED = 0x02;
const LZ4_FLG_DICT_ID = 0x01;
const LZ4_BLOCK_UNCOMPRESSED = 0x8000_0000;
/** Largest ratio of decompressed to compressed size for one LZ4 block. */
const LZ4_BLOCK_EXPANSION_MAX = 255;
/** Block maximum sizes by the BD byte's bits 6–4 (4 → 64 KiB … 7 → 4 MiB). */
const LZ4_BLOCK_MAX_BYTES: Readonly<Record<number, number>> = {
  4: 64 * 1024,
  5: 256 * 1024,
  6: 1024 * 1024,
  7: 4 * 1024 * 1024,
};

function lz4FrameDecompress(data: Buffer, max: number): Buffer {
  const bound = lz4FramesOutputBound(data);
  if (bound > max) throw tooBig(`up to ${bound}`, max);
  return decompressFrameSync(data);
}

/**
 * Walks the LZ4 frames in `data` without decompressing and returns an upper bound on their
 * decompressed size (at most one block maximum, 64 KiB–4 MiB, above the real size).
 * Throws CORRUPT_MESSAGE on a structurally broken frame.
 */
export function lz4FramesOutputBound(data: Buffer): number {
  let pos = 0;
  let bound = 0;
  if (data.length === 0) throw corrupt("empty LZ4 data");
  while (pos < data.length) {
    need(data, pos, 4);
    const magic = data.readUInt32LE(pos);
    if ((magic & LZ4_SKIPPABLE_MAGIC_MASK) >>> 0 === LZ4_SKIPPABLE_MAGIC_BASE) {
      need(data, pos, 8);
      pos += 8 + data.readUInt32LE(pos + 4);
      if (pos > data.length) throw corrupt("LZ4 skippable frame truncated");
      continue;
    }
    if (magic !== LZ4_FRAME_MAGIC) throw corrupt(`bad LZ4 frame magic ${magic.toString(16)}`);
    const frame = lz4FrameBound(data, pos + 4);
    bound += frame.bound;
    pos = frame.end;
  }
  return bound;
}

function need(data: Buffer, pos: number, n: number): void {
  if (data.length - pos < n) throw corrupt("LZ4 frame truncated");
}

function lz4FrameBound(data: Buffer, start: number): { bound: number; end: number } {
  need(data, start, 2);
  const flg = data[start]!;
  const bd = data[start + 1]!;
  if ((flg & LZ4_FLG_VERSION_MASK) !== LZ4_FLG_VERSION_01 || flg & LZ4_FLG_RESERVED) {
    throw corrupt(`bad LZ4 frame flags ${flg.toString(16)}`);
  }
  const blockMax = LZ4_BLOCK_MAX_BYTES[(bd >> 4) & 0x07];
  if (blockMax === undefined || bd & 0x8f) throw corrupt(`bad LZ4 block descriptor ${bd}`);
  let pos = start + 2;
  if (flg & LZ4_FLG_CONTENT_SIZE) pos += 8;
  if (flg & LZ4_FLG_DICT_ID) pos += 4;
  pos += 1; // header checksum
  const blockChecksumBytes = flg & LZ4_FLG_BLOCK_CHECKSUM ? 4 : 0;
  let bound = 0;
  for (;;) {
    need(data, pos, 4);
    const word = data.readUInt32LE(pos);
    pos += 4;
    if (word === 0) break; // end mark
    const size = (word & ~LZ4_BLOCK_UNCOMPRESSED) >>> 0;
    if (size > blockMax) throw corrupt(`LZ4 block of ${size} bytes exceeds ${blockMax}`);
    bound +=
      word & LZ4_BLOCK_UNCOMPRESSED ? size : Math.min(blockMax, size * LZ4_BLOCK_EXPANSION_MAX);
    pos += size + blockChecksumBytes;
    if (pos > data.length) throw corrupt("LZ4 block truncated");
  }
  if (flg & LZ4_FLG_CONTENT_CHECKSUM) pos += 4;
  if (pos > data.length) throw corrupt("LZ4 frame truncated");
  return { bound, end: pos };
}

// ---------------------------------------------------------------------------------------------

function zstdDecompress(z: Zstd, data: Buffer, max: number): Buffer {
  let size: number | null = null;
  try {
    size = z.binding.getFrameContentSize(data);
  } catch {
    size = null; // not a frame header we can read up front: let the streaming decoder judge.
  }
  z.dctx.reset(z.binding.ResetDirective.sessionOnly);
  if (size !== null) {
    if (size > max) throw tooBig(size, max);
    // Only a single frame whose header states its size may take the one-shot path.
    if (z.binding.findFrameCompressedSize(data) === data.length) {
      const out = Buffer.allocUnsafe(size);
      const n = z.dctx.decompress(out, data);
      if (n !== size) throw corrupt(`zstd frame size ${n} differs from its header's ${size}`);
      return out;
    }
  }
  return zstdStream(z.dctx, data, max);
}

function zstdStream(dctx: ZstdBinding.DCtx, data: Buffer, max: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  let src = data;
  let pending = 1; // decompressStream's return: 0 once a frame is complete and flushed
  while (src.length > 0 || pending !== 0) {
    // One byte of room past the bound lets an oversized output show itself.
    const chunk = Buffer.allocUnsafe(Math.min(ZSTD_CHUNK_BYTES, max - total + 1));
    const [ret, produced, consumed] = dctx.decompressStream(chunk, src);
    if (produced === 0 && consumed === 0) throw corrupt("zstd data truncated");
    total += produced;
    if (total > max) throw tooBig(`more than ${max}`, max);
    if (produced > 0) chunks.push(chunk.subarray(0, produced));
    src = src.subarray(consumed);
    pending = ret;
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

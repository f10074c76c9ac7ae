/**
 * The record framing walk: checks that a batch's records region holds exactly the records its
 * header announces, each well framed, without building a single per-record object. The leader
 * runs it on every append (`validateBatches` with `records`), so nothing it stores can fail to
 * decode later (issue 12: one CRC-correct batch with a record length of −64 used to block every
 * consumer of its partition).
 *
 * The walk accepts only what {@link decodeRecords} accepts (the same rules, in the same order),
 * and adds the checks Kafka's broker makes on a client's append (`LogValidator`):
 *
 * - with `contiguousOffsets`: at least one record, `lastOffsetDelta = recordCount − 1` and every
 *   record's offset delta equal to its index (Kafka: "inner record … does not have incremental
 *   offsets");
 * - for CREATE_TIME batches: the header's `maxTimestamp` is the largest record timestamp, which
 *   the time index relies on.
 *
 * Cost: a tight loop over the buffer, one- and two-byte varints decoded inline (longer ones by
 * the bounded `ByteReader`), keys, values and headers skipped by moving the cursor; nothing is
 * allocated per record. About as much CPU as the batch's CRC-32C for 100-byte records
 * (docs/performance.md, "The record walk").
 */
import { ErrorCode, SamsaError } from "../errors.js";
import { DECOMPRESSED_BATCH_BYTES_MAX, decompressRecords } from "./compression.js";
import { type BatchesSummary, type ValidateOptions, validateBatches } from "./header.js";
import {
  BATCH_HEADER_BYTES,
  COMPRESSION_CODEC_MASK,
  CompressionType,
  LOG_OVERHEAD_BYTES,
  TIMESTAMP_TYPE_MASK,
} from "./layout.js";
import {
  NULL_LENGTH,
  RECORD_BODY_BYTES_MIN,
  RECORD_BYTES_MIN,
  type RecordsContext,
} from "./records.js";
import { ByteReader } from "./varint.js";

/** Smallest encoded header: keyLength and valueLength, one byte each. */
const HEADER_BYTES_MIN = 2;
// Imported constants copied into module constants: under tsx (how the services run) an imported
// binding is read through a getter, which in the loop below cost more than the walk itself.
const BODY_BYTES_MIN = RECORD_BODY_BYTES_MIN;
const NULL = NULL_LENGTH;
const TIMESTAMP_TYPE_BIT = TIMESTAMP_TYPE_MASK;

/**
 * Largest decompressed records region the append walk inflates: {@link DECOMPRESSED_BATCH_BYTES_MAX}
 * (128 MiB), the same bound every reader applies, so what the leader accepts every consumer can
 * decompress. Each codec stops at the bound while inflating (see compression.ts), so a small
 * batch that would inflate to gigabytes is refused before more than the bound is allocated.
 */
export const WALK_DECOMPRESSED_BYTES_MAX = DECOMPRESSED_BATCH_BYTES_MAX;

/** Options of {@link walkRecords} and {@link walkBatchRecords}. */
export interface RecordWalkOptions {
  /**
   * Kafka's rules for a client's append: at least one record, `lastOffsetDelta` equal to
   * `recordCount − 1`, and each record's offset delta equal to its index. Default false: offset
   * deltas need only increase strictly within `[0, lastOffsetDelta]`, which is all
   * {@link decodeRecords} requires.
   */
  contiguousOffsets?: boolean;
  /** Largest decompressed records region, bytes. Default {@link WALK_DECOMPRESSED_BYTES_MAX}. */
  decompressedBytesMax?: number;
}

/** The header fields the walk checks the records against. */
export type WalkContext = Pick<
  RecordsContext,
  "baseTimestamp" | "maxTimestamp" | "attributes" | "recordCount" | "lastOffsetDelta"
>;

/** Options of {@link validateRecordBatches}. */
export type ValidateRecordsOptions = ValidateOptions & RecordWalkOptions;

/**
 * `validateBatches` (header, sizes, counts, CRC of every batch), then the framing walk of every
 * batch's records: what the leader runs on each append, so that nothing it stores is unreadable.
 * @throws SamsaError as `validateBatches` and {@link walkBatchRecords}; the message of a walk
 *   failure names the batch (its index in `buf`) and the record.
 */
export function validateRecordBatches(
  buf: Buffer,
  options: ValidateRecordsOptions = {},
): BatchesSummary {
  const summary = validateBatches(buf, options);
  const { headers, positions } = summary;
  for (let b = 0; b < headers.length; b++) {
    try {
      walkBatchRecords(buf, positions[b]!, headers[b]!, options);
    } catch (err) {
      if (err instanceof SamsaError && headers.length > 1) {
        throw new SamsaError(err.code, `batch ${b}, ${err.message}`);
      }
      throw err;
    }
  }
  return summary;
}

function invalid(index: number, message: string): SamsaError {
  return new SamsaError(ErrorCode.CORRUPT_MESSAGE, `record ${index}: ${message}`);
}

/**
 * Walks the batch at `pos` of `buf` (already checked by `validateBatch`: length, counts, CRC),
 * decompressing its records region first when a codec is set.
 * @throws SamsaError CORRUPT_MESSAGE naming the record index for any framing defect, or when
 *   decompression fails or passes the bound; UNSUPPORTED_COMPRESSION_TYPE for a codec this
 *   process lacks.
 */
export function walkBatchRecords(
  buf: Buffer,
  pos: number,
  header: WalkContext & { batchLength: number },
  options: RecordWalkOptions = {},
): void {
  const end = pos + header.batchLength + LOG_OVERHEAD_BYTES;
  const region = buf.subarray(pos + BATCH_HEADER_BYTES, end);
  const codec = header.attributes & COMPRESSION_CODEC_MASK;
  if (codec === CompressionType.NONE || (header.recordCount === 0 && region.length === 0)) {
    walkRecords(region, header, options);
    return;
  }
  const bound = options.decompressedBytesMax ?? WALK_DECOMPRESSED_BYTES_MAX;
  walkRecords(decompressRecords(codec, region, bound), header, options);
}

/**
 * Walks a (decompressed) records region: exactly `recordCount` records filling `data` with no
 * byte left over; each record's length, varints, key, value and headers inside it and ending
 * exactly at its length; offset deltas strictly increasing within `[0, lastOffsetDelta]` (or
 * equal to the index, see {@link RecordWalkOptions.contiguousOffsets}), the last one equal to
 * `lastOffsetDelta`; for CREATE_TIME, the largest record timestamp equal to `maxTimestamp`.
 * @throws SamsaError CORRUPT_MESSAGE naming the record index.
 */
export function walkRecords(
  data: Buffer,
  header: WalkContext,
  options: RecordWalkOptions = {},
): void {
  const { recordCount, lastOffsetDelta } = header;
  if (options.contiguousOffsets) {
    if (recordCount === 0) throw invalid(0, "a batch must hold at least one record");
    if (lastOffsetDelta !== recordCount - 1) {
      throw invalid(
        0,
        `last offset delta ${lastOffsetDelta} does not match the ${recordCount} records`,
      );
    }
  }
  if (recordCount * RECORD_BYTES_MIN > data.length) {
    throw invalid(0, `${data.length} bytes cannot hold ${recordCount} records`);
  }
  let end = 0;
  try {
    end = walkLoop(data, header, options.contiguousOffsets === true);
  } catch (err) {
    // A ByteReader error (truncated or overlong varint) names no record: add the index.
    if (err instanceof SamsaError && !err.message.startsWith("record ")) {
      throw invalid(walkIndex, err.message);
    }
    throw err;
  }
  if (end !== data.length) {
    throw invalid(
      recordCount,
      `${data.length - end} bytes after the batch's ${recordCount} records`,
    );
  }
}

/** Current record of the walk in progress, for error messages (the walk is synchronous). */
let walkIndex = 0;
/** Position after the varint the last {@link varintAt} or {@link varlongAt} read. */
let next = 0;

/**
 * The loop over the records: a cursor over `data` and varint reads whose one-byte case is
 * inlined; nothing is allocated. Bounds: `end` is the current record's end inside it. Returns
 * the position after the last record.
 */
function walkLoop(data: Buffer, header: WalkContext, contiguous: boolean): number {
  const { recordCount, lastOffsetDelta } = header;
  const dataEnd = data.length;
  let pos = 0;
  let previousDelta = -1;
  let maxTimestampDelta = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < recordCount; i++) {
    walkIndex = i;
    const length = varintAt(data, pos, dataEnd);
    pos = next;
    if (length < BODY_BYTES_MIN || length > dataEnd - pos) {
      throw invalid(i, `length ${length} invalid with ${dataEnd - pos} bytes left`);
    }
    const end = pos + length;
    // attributes (unused in v2) at `pos`: length ≥ 6, so the byte is there.
    const timestampDelta = varlongAt(data, pos + 1, end);
    if (timestampDelta > maxTimestampDelta) maxTimestampDelta = timestampDelta;
    const offsetDelta = varintAt(data, next, end);
    if (
      contiguous ? offsetDelta !== i : offsetDelta <= previousDelta || offsetDelta > lastOffsetDelta
    ) {
      throw invalid(i, `offset delta ${offsetDelta} out of order (previous ${previousDelta})`);
    }
    previousDelta = offsetDelta;
    pos = skipNullable(data, next, end, i, "key");
    pos = skipNullable(data, pos, end, i, "value");
    const headerCount = varintAt(data, pos, end);
    pos = next;
    if (headerCount !== 0) pos = skipHeaders(data, pos, end, i, headerCount);
    if (pos !== end) throw invalid(i, `${end - pos} bytes past its fields`);
  }
  walkIndex = recordCount;
  if (recordCount > 0) checkEnd(header, previousDelta, maxTimestampDelta);
  return pos;
}

/** Reads a zigzag varint at `pos` (before `end`); the position after it goes to `next`. */
function varintAt(buf: Buffer, pos: number, end: number): number {
  // One and two bytes (|value| < 8192) inline: record lengths, offset deltas and the lengths
  // of ordinary keys and values.
  if (pos < end) {
    const b0 = buf[pos]!;
    if (b0 < 0x80) {
      next = pos + 1;
      return (b0 >>> 1) ^ -(b0 & 1);
    }
    if (pos + 1 < end) {
      const b1 = buf[pos + 1]!;
      if (b1 < 0x80) {
        const u = (b0 & 0x7f) | (b1 << 7);
        next = pos + 2;
        return (u >>> 1) ^ -(u & 1);
      }
    }
  }
  const r = scratchReader(buf, pos, end);
  const value = r.readVarint();
  next = r.pos;
  return value;
}

/** Reads a zigzag varlong at `pos` (before `end`); the position after it goes to `next`. */
function varlongAt(buf: Buffer, pos: number, end: number): number {
  if (pos < end) {
    const b0 = buf[pos]!;
    if (b0 < 0x80) {
      next = pos + 1;
      return (b0 >>> 1) ^ -(b0 & 1);
    }
    if (pos + 1 < end) {
      const b1 = buf[pos + 1]!;
      if (b1 < 0x80) {
        const u = (b0 & 0x7f) | (b1 << 7);
        next = pos + 2;
        return (u >>> 1) ^ -(u & 1);
      }
    }
  }
  const r = scratchReader(buf, pos, end);
  const value = r.readVarlong();
  next = r.pos;
  return value;
}

/** One reader reused for the multi-byte varints (the bounded, overflow-checked decoder). */
let scratch: ByteReader | undefined;

function scratchReader(buf: Buffer, pos: number, end: number): ByteReader {
  if (scratch === undefined || scratch.buf !== buf) scratch = new ByteReader(buf);
  scratch.pos = pos;
  scratch.end = end;
  return scratch;
}

/** Skips a length-prefixed field (−1: null); returns the position after it. */
function skipNullable(buf: Buffer, pos: number, end: number, i: number, what: string): number {
  const length = varintAt(buf, pos, end);
  pos = next;
  if (length === NULL) return pos;
  if (length < 0 || length > end - pos) {
    throw invalid(i, `${what} length ${length} invalid with ${end - pos} bytes left`);
  }
  return pos + length;
}

/** Skips `count` headers; returns the position after them. */
function skipHeaders(buf: Buffer, pos: number, end: number, i: number, count: number): number {
  if (count < 0 || count > (end - pos) / HEADER_BYTES_MIN) {
    throw invalid(i, `header count ${count} invalid for ${end - pos} bytes left`);
  }
  for (let h = 0; h < count; h++) {
    const keyLength = varintAt(buf, pos, end);
    pos = next;
    if (keyLength < 0 || keyLength > end - pos) {
      throw invalid(i, `header key length ${keyLength} invalid with ${end - pos} bytes left`);
    }
    pos = skipNullable(buf, pos + keyLength, end, i, "header value");
  }
  return pos;
}

function checkEnd(header: WalkContext, lastDelta: number, maxTimestampDelta: number): void {
  const last = header.recordCount - 1;
  if (lastDelta !== header.lastOffsetDelta) {
    throw invalid(
      last,
      `offset delta ${lastDelta} of the last record differs from the header's ${header.lastOffsetDelta}`,
    );
  }
  const createTime = (header.attributes & TIMESTAMP_TYPE_BIT) === 0;
  const maxTimestamp = header.baseTimestamp + maxTimestampDelta;
  if (createTime && maxTimestamp !== header.maxTimestamp) {
    throw invalid(
      last,
      `largest record timestamp ${maxTimestamp} differs from the header's max timestamp ${header.maxTimestamp}`,
    );
  }
}

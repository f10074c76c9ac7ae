/**
 * Reading, validating and stamping record batch headers without decoding records: the broker's
 * hot path. Everything here works on `Buffer` views and never copies batch bytes.
 */
import { crc32c } from "@node-rs/crc32";
import { ErrorCode, SamsaError } from "../errors.js";
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  BATCH_BYTES_MAX,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  BATCH_RECORDS_MAX,
  COMPRESSION_CODEC_MASK,
  CRC_OFFSET,
  CURRENT_MAGIC,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAX_TIMESTAMP_OFFSET,
  PARTITION_LEADER_EPOCH_OFFSET,
  PRODUCER_EPOCH_OFFSET,
  PRODUCER_ID_OFFSET,
  BASE_SEQUENCE_OFFSET,
  RECORD_COUNT_OFFSET,
  TIMESTAMP_TYPE_MASK,
} from "./layout.js";

/** The fixed-size header of one batch. Offsets and timestamps are JS numbers (< 2^53). */
export interface BatchHeader {
  baseOffset: number;
  /** Bytes after the batchLength field; the batch's total size is `batchLength + 12`. */
  batchLength: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

/** Total size in bytes of a batch with this header. */
export function batchSizeBytes(h: Pick<BatchHeader, "batchLength">): number {
  return h.batchLength + LOG_OVERHEAD_BYTES;
}

/** Offset of the batch's last record. */
export function lastOffsetOf(h: Pick<BatchHeader, "baseOffset" | "lastOffsetDelta">): number {
  return h.baseOffset + h.lastOffsetDelta;
}

/** The compression codec id in the attributes. */
export function compressionOf(attributes: number): number {
  return attributes & COMPRESSION_CODEC_MASK;
}

/** 1 when the batch's timestamps are log-append time, 0 when create time. */
export function timestampTypeOf(attributes: number): number {
  return (attributes & TIMESTAMP_TYPE_MASK) >> 3;
}

function corrupt(message: string): SamsaError {
  return new SamsaError(ErrorCode.CORRUPT_MESSAGE, message);
}

/**
 * Reads the header of the batch at `pos` without checking anything but that the header bytes
 * are present. Use {@link validateBatch} for untrusted bytes.
 */
export function readBatchHeader(buf: Buffer, pos = 0): BatchHeader {
  if (buf.length - pos < BATCH_HEADER_BYTES) {
    throw corrupt(`batch header truncated: ${buf.length - pos} bytes, need ${BATCH_HEADER_BYTES}`);
  }
  return {
    baseOffset: Number(buf.readBigInt64BE(pos + BASE_OFFSET_OFFSET)),
    batchLength: buf.readInt32BE(pos + BATCH_LENGTH_OFFSET),
    partitionLeaderEpoch: buf.readInt32BE(pos + PARTITION_LEADER_EPOCH_OFFSET),
    magic: buf.readInt8(pos + MAGIC_OFFSET),
    crc: buf.readUInt32BE(pos + CRC_OFFSET),
    attributes: buf.readInt16BE(pos + ATTRIBUTES_OFFSET),
    lastOffsetDelta: buf.readInt32BE(pos + LAST_OFFSET_DELTA_OFFSET),
    baseTimestamp: Number(buf.readBigInt64BE(pos + BASE_TIMESTAMP_OFFSET)),
    maxTimestamp: Number(buf.readBigInt64BE(pos + MAX_TIMESTAMP_OFFSET)),
    producerId: buf.readBigInt64BE(pos + PRODUCER_ID_OFFSET),
    producerEpoch: buf.readInt16BE(pos + PRODUCER_EPOCH_OFFSET),
    baseSequence: buf.readInt32BE(pos + BASE_SEQUENCE_OFFSET),
    recordCount: buf.readInt32BE(pos + RECORD_COUNT_OFFSET),
  };
}

/** CRC-32C of the batch's CRC'd region (attributes to end). */
export function computeBatchCrc(batch: Buffer): number {
  return crc32c(batch.subarray(ATTRIBUTES_OFFSET)) >>> 0;
}

/** Options for {@link validateBatch}. */
export interface ValidateOptions {
  /** Largest batch accepted, in bytes (the topic's `message.max.bytes`). */
  maxBatchBytes?: number;
  /** Skip the CRC check (only for bytes whose CRC was just checked). Default false. */
  skipCrc?: boolean;
}

/**
 * Validates the single batch that starts at `pos` of `buf`: header present, length consistent
 * and within limits, magic, record count and offset delta sane, CRC correct. Returns the header.
 * Throws a `SamsaError` with CORRUPT_MESSAGE (or MESSAGE_TOO_LARGE) — never anything else.
 */
export function validateBatch(buf: Buffer, pos = 0, options: ValidateOptions = {}): BatchHeader {
  const h = readBatchHeader(buf, pos);
  const maxBytes = Math.min(options.maxBatchBytes ?? BATCH_BYTES_MAX, BATCH_BYTES_MAX);
  const size = h.batchLength + LOG_OVERHEAD_BYTES;
  if (h.batchLength < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) {
    throw corrupt(`batch length ${h.batchLength} is smaller than the header`);
  }
  // Truncation first: a length field larger than the bytes present is a malformed batch (say,
  // garbage read as a header), not an oversized one that a client should split and resend.
  if (size > buf.length - pos) {
    throw corrupt(`batch truncated: header says ${size} bytes, ${buf.length - pos} present`);
  }
  if (size > maxBytes) {
    throw new SamsaError(
      ErrorCode.MESSAGE_TOO_LARGE,
      `batch of ${size} bytes exceeds the limit of ${maxBytes} bytes`,
    );
  }
  if (h.magic !== CURRENT_MAGIC) throw corrupt(`unsupported magic ${h.magic}`);
  if (h.recordCount < 0 || h.recordCount > BATCH_RECORDS_MAX) {
    throw corrupt(`record count ${h.recordCount} out of range [0, ${BATCH_RECORDS_MAX}]`);
  }
  if (h.lastOffsetDelta < 0 || (h.recordCount > 0 && h.lastOffsetDelta < h.recordCount - 1)) {
    throw corrupt(
      `last offset delta ${h.lastOffsetDelta} inconsistent with ${h.recordCount} records`,
    );
  }
  if (!options.skipCrc) {
    const actual = crc32c(buf.subarray(pos + ATTRIBUTES_OFFSET, pos + size)) >>> 0;
    if (actual !== h.crc) {
      throw corrupt(`CRC mismatch: stored ${h.crc.toString(16)}, computed ${actual.toString(16)}`);
    }
  }
  return h;
}

/**
 * Stamps the base offset and leader epoch into the batch at `pos` in place. Both fields lie
 * outside the CRC'd region, so the CRC stays valid.
 */
export function stampBatch(
  buf: Buffer,
  pos: number,
  baseOffset: number,
  leaderEpoch: number,
): void {
  buf.writeBigInt64BE(BigInt(baseOffset), pos + BASE_OFFSET_OFFSET);
  buf.writeInt32BE(leaderEpoch, pos + PARTITION_LEADER_EPOCH_OFFSET);
}

/** Summary of a run of concatenated batches, as returned by {@link validateBatches}. */
export interface BatchesSummary {
  /** Headers of the batches, in order. */
  headers: BatchHeader[];
  /** Start position of each batch in the buffer. */
  positions: number[];
  /** Sum of record counts. */
  recordCount: number;
  /** Sum of `lastOffsetDelta + 1`: the number of offsets the batches occupy. */
  offsetCount: number;
}

/**
 * Validates a buffer that must hold one or more whole batches back to back (a produce request's
 * payload). Every byte must belong to a valid batch.
 */
export function validateBatches(buf: Buffer, options: ValidateOptions = {}): BatchesSummary {
  if (buf.length === 0) throw corrupt("no record batch");
  const summary: BatchesSummary = { headers: [], positions: [], recordCount: 0, offsetCount: 0 };
  let pos = 0;
  while (pos < buf.length) {
    const h = validateBatch(buf, pos, options);
    summary.headers.push(h);
    summary.positions.push(pos);
    summary.recordCount += h.recordCount;
    summary.offsetCount += h.lastOffsetDelta + 1;
    pos += h.batchLength + LOG_OVERHEAD_BYTES;
  }
  return summary;
}

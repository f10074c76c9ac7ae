/**
 * Building record batches from producer records and decoding them back. Building sizes every
 * record first, then writes the whole batch into one buffer (plus one more for the compressed
 * form), so a batch of a thousand records costs two allocations, not thousands.
 */
import { crc32c } from "@node-rs/crc32";
import { assert, ErrorCode, SamsaError } from "../errors.js";
import {
  compressRecords,
  DECOMPRESSED_BATCH_BYTES_MAX,
  decompressRecords,
  isCompressionSupported,
} from "./compression.js";
import {
  type BatchHeader,
  batchSizeBytes,
  compressionOf,
  type ValidateOptions,
  validateBatch,
} from "./header.js";
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BASE_SEQUENCE_OFFSET,
  BASE_TIMESTAMP_OFFSET,
  BATCH_BYTES_MAX,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  BATCH_RECORDS_MAX,
  CompressionType,
  CRC_OFFSET,
  CURRENT_MAGIC,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAX_TIMESTAMP_OFFSET,
  NO_PARTITION_LEADER_EPOCH,
  NO_PRODUCER_EPOCH,
  NO_PRODUCER_ID,
  NO_SEQUENCE,
  PARTITION_LEADER_EPOCH_OFFSET,
  PRODUCER_EPOCH_OFFSET,
  PRODUCER_ID_OFFSET,
  RECORD_COUNT_OFFSET,
  TimestampType,
} from "./layout.js";
import {
  type DecodedRecord,
  decodeRecords,
  decodeRecordsWith,
  type ProducerRecord,
  type RecordFactory,
  recordBodyBytes,
  recordBytes,
  writeRecord,
} from "./records.js";

/** Options for {@link buildBatch}. Every field is optional. */
export interface BuildBatchOptions {
  /** Codec for the records region. Default NONE. */
  compression?: CompressionType;
  /** Offset of the first record. Default 0 (the broker stamps the real one). */
  baseOffset?: number;
  /** Default -1 (not yet stamped by a leader). */
  partitionLeaderEpoch?: number;
  /** Default CREATE_TIME. */
  timestampType?: TimestampType;
  /** Default -1n (no idempotent producer). */
  producerId?: bigint;
  /** Default -1. */
  producerEpoch?: number;
  /** Default -1. */
  baseSequence?: number;
  /** Timestamp in ms for records without one. Default `Date.now()`. */
  now?: number;
}

/** Options for {@link decodeBatch} and {@link decodeBatches}. */
export interface DecodeBatchOptions extends ValidateOptions {
  /** Largest decompressed records region accepted. Default DECOMPRESSED_BATCH_BYTES_MAX. */
  decompressedBytesMax?: number;
}

/** A batch decoded down to its records. */
export interface DecodedBatch {
  header: BatchHeader;
  records: DecodedRecord[];
}

const INT16_MIN = -0x8000;
const INT16_MAX = 0x7fff;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function invalid(message: string): SamsaError {
  return new SamsaError(ErrorCode.INVALID_REQUEST, message);
}

function checkIntRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${name} ${value} is not an integer in [${min}, ${max}]`);
  }
}

function checkTimestamp(ts: number): void {
  if (!Number.isSafeInteger(ts) || ts < 0) {
    throw new SamsaError(ErrorCode.INVALID_TIMESTAMP, `timestamp ${ts} is not a safe ms value`);
  }
}

/** Every header field of a batch being built, defaults applied and checked. */
export interface ResolvedOptions {
  compression: CompressionType;
  baseOffset: number;
  partitionLeaderEpoch: number;
  timestampType: TimestampType;
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
}

/**
 * The options with their defaults, checked.
 * @throws SamsaError UNSUPPORTED_COMPRESSION_TYPE or INVALID_REQUEST (see {@link buildBatch}).
 */
export function resolveOptions(options: BuildBatchOptions): ResolvedOptions {
  const o: ResolvedOptions = {
    compression: options.compression ?? CompressionType.NONE,
    baseOffset: options.baseOffset ?? 0,
    partitionLeaderEpoch: options.partitionLeaderEpoch ?? NO_PARTITION_LEADER_EPOCH,
    timestampType: options.timestampType ?? TimestampType.CREATE_TIME,
    producerId: options.producerId ?? NO_PRODUCER_ID,
    producerEpoch: options.producerEpoch ?? NO_PRODUCER_EPOCH,
    baseSequence: options.baseSequence ?? NO_SEQUENCE,
  };
  if (!isCompressionSupported(o.compression)) {
    throw new SamsaError(
      ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
      `compression type ${CompressionType[o.compression] ?? o.compression} is not supported`,
    );
  }
  checkIntRange("baseOffset", o.baseOffset, 0, Number.MAX_SAFE_INTEGER);
  checkIntRange("partitionLeaderEpoch", o.partitionLeaderEpoch, INT32_MIN, INT32_MAX);
  checkIntRange("timestampType", o.timestampType, 0, 1);
  checkIntRange("producerEpoch", o.producerEpoch, INT16_MIN, INT16_MAX);
  checkIntRange("baseSequence", o.baseSequence, INT32_MIN, INT32_MAX);
  if (o.producerId < INT64_MIN || o.producerId > INT64_MAX) {
    throw invalid(`producerId ${o.producerId} is not an int64`);
  }
  return o;
}

/**
 * Builds one record batch (magic 2, CRC set) holding `records` with offset deltas 0..n-1.
 * `baseTimestamp` is the first record's timestamp, `maxTimestamp` the largest.
 * @throws SamsaError INVALID_REQUEST for no records, more than BATCH_RECORDS_MAX or bad options;
 *   INVALID_TIMESTAMP for a timestamp that is not a non-negative safe integer;
 *   MESSAGE_TOO_LARGE when the batch would exceed BATCH_BYTES_MAX (or its records
 *   DECOMPRESSED_BATCH_BYTES_MAX); UNSUPPORTED_COMPRESSION_TYPE for a codec this process lacks.
 */
export function buildBatch(records: ProducerRecord[], options: BuildBatchOptions = {}): Buffer {
  const n = records.length;
  if (n === 0) throw invalid("a record batch needs at least one record");
  if (n > BATCH_RECORDS_MAX) throw invalid(`${n} records exceed the limit of ${BATCH_RECORDS_MAX}`);
  const o = resolveOptions(options);
  const now = options.now ?? Date.now();

  const timestamps = new Float64Array(n);
  let maxTimestamp = -1;
  for (let i = 0; i < n; i++) {
    const ts = records[i]!.timestamp ?? now;
    checkTimestamp(ts);
    timestamps[i] = ts;
    if (ts > maxTimestamp) maxTimestamp = ts;
  }
  const baseTimestamp = timestamps[0]!;

  const bodySizes = new Int32Array(n);
  let recordsBytes = 0;
  for (let i = 0; i < n; i++) {
    const body = recordBodyBytes(records[i]!, timestamps[i]! - baseTimestamp, i);
    bodySizes[i] = body;
    recordsBytes += recordBytes(body);
  }
  const recordsBytesMax =
    o.compression === CompressionType.NONE
      ? BATCH_BYTES_MAX - BATCH_HEADER_BYTES
      : DECOMPRESSED_BATCH_BYTES_MAX;
  if (recordsBytes > recordsBytesMax) throw tooLarge(recordsBytes, recordsBytesMax);

  let batch: Buffer;
  if (o.compression === CompressionType.NONE) {
    batch = Buffer.allocUnsafe(BATCH_HEADER_BYTES + recordsBytes);
    writeRecords(batch, BATCH_HEADER_BYTES, records, bodySizes, timestamps, baseTimestamp);
  } else {
    const plain = Buffer.allocUnsafe(recordsBytes);
    writeRecords(plain, 0, records, bodySizes, timestamps, baseTimestamp);
    const compressed = compressRecords(o.compression, plain);
    if (BATCH_HEADER_BYTES + compressed.length > BATCH_BYTES_MAX) {
      throw tooLarge(compressed.length, BATCH_BYTES_MAX - BATCH_HEADER_BYTES);
    }
    batch = Buffer.allocUnsafe(BATCH_HEADER_BYTES + compressed.length);
    compressed.copy(batch, BATCH_HEADER_BYTES);
  }
  writeHeader(batch, o, n, baseTimestamp, maxTimestamp);
  return batch;
}

function tooLarge(bytes: number, max: number): SamsaError {
  return new SamsaError(
    ErrorCode.MESSAGE_TOO_LARGE,
    `records of ${bytes} bytes exceed the limit of ${max} bytes`,
  );
}

function writeRecords(
  buf: Buffer,
  start: number,
  records: ProducerRecord[],
  bodySizes: Int32Array,
  timestamps: Float64Array,
  baseTimestamp: number,
): void {
  let pos = start;
  for (let i = 0; i < records.length; i++) {
    pos = writeRecord(buf, pos, records[i]!, bodySizes[i]!, timestamps[i]! - baseTimestamp, i);
  }
  assert(pos === buf.length, `records written (${pos}) must fill the buffer (${buf.length})`);
}

/**
 * Writes the header of `batch` (its whole length, magic, attributes, deltas, timestamps,
 * producer fields, count) and then the CRC over attributes to the end.
 */
export function writeHeader(
  batch: Buffer,
  o: ResolvedOptions,
  count: number,
  baseTimestamp: number,
  maxTimestamp: number,
): void {
  batch.writeBigInt64BE(BigInt(o.baseOffset), BASE_OFFSET_OFFSET);
  batch.writeInt32BE(batch.length - LOG_OVERHEAD_BYTES, BATCH_LENGTH_OFFSET);
  batch.writeInt32BE(o.partitionLeaderEpoch, PARTITION_LEADER_EPOCH_OFFSET);
  batch.writeInt8(CURRENT_MAGIC, MAGIC_OFFSET);
  batch.writeInt16BE(o.compression | (o.timestampType << 3), ATTRIBUTES_OFFSET);
  batch.writeInt32BE(count - 1, LAST_OFFSET_DELTA_OFFSET);
  batch.writeBigInt64BE(BigInt(baseTimestamp), BASE_TIMESTAMP_OFFSET);
  batch.writeBigInt64BE(BigInt(maxTimestamp), MAX_TIMESTAMP_OFFSET);
  batch.writeBigInt64BE(o.producerId, PRODUCER_ID_OFFSET);
  batch.writeInt16BE(o.producerEpoch, PRODUCER_EPOCH_OFFSET);
  batch.writeInt32BE(o.baseSequence, BASE_SEQUENCE_OFFSET);
  batch.writeInt32BE(count, RECORD_COUNT_OFFSET);
  // The CRC covers attributes to the end, so it is computed last.
  batch.writeUInt32BE(crc32c(batch.subarray(ATTRIBUTES_OFFSET)) >>> 0, CRC_OFFSET);
}

/**
 * Validates (length, magic, counts, CRC: see `validateBatch`), decompresses and decodes the
 * batch at `pos`. Record offsets are `baseOffset + offsetDelta`; timestamps are
 * `baseTimestamp + timestampDelta`, or `maxTimestamp` for LOG_APPEND_TIME batches.
 * @throws SamsaError CORRUPT_MESSAGE for any malformed batch, MESSAGE_TOO_LARGE past
 *   `maxBatchBytes`, UNSUPPORTED_COMPRESSION_TYPE for a codec this process lacks.
 */
export function decodeBatch(buf: Buffer, pos = 0, options: DecodeBatchOptions = {}): DecodedBatch {
  const header = validateBatch(buf, pos, options);
  const region = buf.subarray(pos + BATCH_HEADER_BYTES, pos + batchSizeBytes(header));
  if (header.recordCount === 0 && region.length === 0) return { header, records: [] };
  const data = decompressRecords(
    compressionOf(header.attributes),
    region,
    options.decompressedBytesMax,
  );
  return { header, records: decodeRecords(data, header) };
}

/**
 * {@link decodeBatch} with each record built by `make` (see `decodeRecordsWith`), only those
 * at or after `fromOffset`: the same checks, the same errors, one object per record kept.
 */
export function decodeBatchWith<T>(
  buf: Buffer,
  pos: number,
  make: RecordFactory<T>,
  fromOffset = 0,
  options: DecodeBatchOptions = {},
): { header: BatchHeader; records: T[] } {
  const header = validateBatch(buf, pos, options);
  const region = buf.subarray(pos + BATCH_HEADER_BYTES, pos + batchSizeBytes(header));
  if (header.recordCount === 0 && region.length === 0) return { header, records: [] };
  const data = decompressRecords(
    compressionOf(header.attributes),
    region,
    options.decompressedBytesMax,
  );
  return { header, records: decodeRecordsWith(data, header, make, fromOffset) };
}

/**
 * Decodes a buffer of whole batches back to back (a fetch response's records), one batch per
 * step: each batch is validated and decoded only when the loop reaches it. Prefer it to
 * {@link decodeBatches} for large fetch answers: only one batch's records are alive at a time,
 * so they die young and cost the garbage collector little, where a whole 8 MiB answer decoded
 * up front keeps some 80,000 records alive long enough to be copied and promoted, about three
 * times the decoding cost. An empty buffer gives no batches; a trailing partial batch is
 * CORRUPT_MESSAGE like any other defect, thrown when the loop reaches it.
 */
export function* iterateBatches(
  buf: Buffer,
  options: DecodeBatchOptions = {},
): Generator<DecodedBatch, void, undefined> {
  let pos = 0;
  while (pos < buf.length) {
    const batch = decodeBatch(buf, pos, options);
    pos += batchSizeBytes(batch.header);
    yield batch;
  }
}

/**
 * Decodes a buffer of whole batches back to back (a fetch response's records) into an array,
 * checking every batch before returning any. An empty buffer gives no batches; a trailing
 * partial batch is CORRUPT_MESSAGE like any other defect. See {@link iterateBatches} for
 * large buffers.
 */
export function decodeBatches(buf: Buffer, options: DecodeBatchOptions = {}): DecodedBatch[] {
  return Array.from(iterateBatches(buf, options));
}

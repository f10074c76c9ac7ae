/**
 * An open record batch that records are appended to one at a time, each encoded into the batch's
 * buffer at once (Kafka's `MemoryRecordsBuilder`): the producer's accumulator and the gateway's
 * coalescing keep no per-record objects, only bytes. {@link BatchBuilder.close} writes the header
 * and the CRC (compressing the records region first when asked) and gives the batch's bytes.
 *
 * Keys, values and header values may be Buffers or strings; strings are written as UTF-8 straight
 * into the batch (no intermediate Buffer).
 */
import { assert } from "../errors.js";
import { type BuildBatchOptions, resolveOptions, writeHeader } from "./builder.js";
import { compressRecords } from "./compression.js";
import { computeBatchCrc } from "./header.js";
import {
  BASE_SEQUENCE_OFFSET,
  BATCH_BYTES_MAX,
  BATCH_HEADER_BYTES,
  CRC_OFFSET,
  PRODUCER_EPOCH_OFFSET,
  PRODUCER_ID_OFFSET,
  BATCH_RECORDS_MAX,
  CompressionType,
} from "./layout.js";
import { RECORD_OVERHEAD_BYTES_MAX } from "./records.js";
import { varintSize, varlongSize, writeVarint, writeVarlong } from "./varint.js";

/** Bytes, or a string written as its UTF-8 bytes; null for none. */
export type RecordBytes = Buffer | string | null;

/** A header of a record being appended. */
export interface AppendHeader {
  readonly key: string;
  readonly value: RecordBytes;
}

/** Options of {@link BatchBuilder.close}: the codec and the producer fields of the header. */
export type CloseOptions = Pick<
  BuildBatchOptions,
  "compression" | "producerId" | "producerEpoch" | "baseSequence"
>;

function bytesLength(b: RecordBytes): number {
  if (b === null) return -1;
  return typeof b === "string" ? Buffer.byteLength(b, "utf8") : b.length;
}

/** Bytes of a length varint plus the content (1 byte for null). */
function fieldBytes(length: number): number {
  return length < 0 ? 1 : varintSize(length) + length;
}

/**
 * An upper bound of a record's encoded size in any batch (its deltas at their largest), so a
 * caller can size a batch before knowing where the record goes.
 */
export function appendBytesMax(
  key: RecordBytes,
  value: RecordBytes,
  headers: readonly AppendHeader[] | undefined,
): number {
  return RECORD_OVERHEAD_BYTES_MAX + contentBytes(bytesLength(key), bytesLength(value), headers);
}

function contentBytes(
  keyLength: number,
  valueLength: number,
  headers: readonly AppendHeader[] | undefined,
): number {
  let n = fieldBytes(keyLength) + fieldBytes(valueLength);
  if (headers === undefined || headers.length === 0) return n + 1;
  n += varintSize(headers.length);
  for (const h of headers) {
    n += fieldBytes(Buffer.byteLength(h.key, "utf8")) + fieldBytes(bytesLength(h.value));
  }
  return n;
}

function writeField(buf: Buffer, pos: number, b: RecordBytes, length: number): number {
  if (b === null) {
    buf[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  pos = writeVarint(buf, pos, length);
  if (typeof b === "string") buf.write(b, pos, length, "utf8");
  else buf.set(b, pos);
  return pos + length;
}

/** One open batch; append records, then close it once. */
export class BatchBuilder {
  private readonly buf: Buffer;
  private pos = BATCH_HEADER_BYTES;
  private count = 0;
  private baseTimestamp = 0;
  private maxTimestamp = -1;
  private closedBytes: Buffer | undefined;

  /**
   * @param capacityBytes The batch's size, header included (at most BATCH_BYTES_MAX): records
   *   that would not fit are refused by {@link tryAppend}, except the first.
   */
  constructor(readonly capacityBytes: number) {
    assert(
      capacityBytes > BATCH_HEADER_BYTES && capacityBytes <= BATCH_BYTES_MAX,
      "batch capacity within (header, BATCH_BYTES_MAX]",
    );
    this.buf = Buffer.allocUnsafe(capacityBytes);
  }

  /** Records appended so far. */
  get recordCount(): number {
    return this.count;
  }

  /** Bytes of the batch so far, header included (uncompressed). */
  get sizeBytes(): number {
    return this.pos;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.closedBytes !== undefined;
  }

  /**
   * Appends one record (timestamp: ms since the epoch, a safe non-negative integer) unless it
   * does not fit in the capacity or the batch holds BATCH_RECORDS_MAX records: then returns
   * false and changes nothing. The first record must fit (size the batch with
   * {@link appendBytesMax}).
   */
  tryAppend(
    key: RecordBytes,
    value: RecordBytes,
    headers: readonly AppendHeader[] | undefined,
    timestamp: number,
  ): boolean {
    assert(this.closedBytes === undefined, "append to an open batch");
    if (this.count === BATCH_RECORDS_MAX) return false;
    if (this.count === 0) this.baseTimestamp = timestamp;
    const timestampDelta = timestamp - this.baseTimestamp;
    const keyLength = bytesLength(key);
    const valueLength = bytesLength(value);
    const body =
      1 +
      varlongSize(timestampDelta) +
      varintSize(this.count) +
      contentBytes(keyLength, valueLength, headers);
    const total = varintSize(body) + body;
    if (this.pos + total > this.capacityBytes) {
      assert(this.count > 0, "the first record of a batch fits its capacity");
      return false;
    }
    const buf = this.buf;
    let pos = writeVarint(buf, this.pos, body);
    buf[pos++] = 0; // attributes
    pos = writeVarlong(buf, pos, timestampDelta);
    pos = writeVarint(buf, pos, this.count);
    pos = writeField(buf, pos, key, keyLength);
    pos = writeField(buf, pos, value, valueLength);
    if (headers === undefined || headers.length === 0) buf[pos++] = 0;
    else {
      pos = writeVarint(buf, pos, headers.length);
      for (const h of headers) {
        pos = writeField(buf, pos, h.key, Buffer.byteLength(h.key, "utf8"));
        pos = writeField(buf, pos, h.value, bytesLength(h.value));
      }
    }
    this.pos = pos;
    this.count++;
    if (timestamp > this.maxTimestamp) this.maxTimestamp = timestamp;
    return true;
  }

  /**
   * Closes the batch: compresses the records when asked, writes the header and CRC, and returns
   * the batch's bytes (base offset 0: the broker stamps the real one). Later calls return the
   * same bytes.
   * @throws SamsaError UNSUPPORTED_COMPRESSION_TYPE for a codec this process lacks.
   */
  close(options: CloseOptions = {}): Buffer {
    if (this.closedBytes !== undefined) return this.closedBytes;
    assert(this.count > 0, "a batch holds at least one record");
    const o = resolveOptions(options);
    const compression = o.compression;
    let batch: Buffer;
    if (compression === CompressionType.NONE) batch = this.buf.subarray(0, this.pos);
    else {
      const compressed = compressRecords(
        compression,
        this.buf.subarray(BATCH_HEADER_BYTES, this.pos),
      );
      if (BATCH_HEADER_BYTES + compressed.length <= this.pos) {
        compressed.copy(this.buf, BATCH_HEADER_BYTES);
        batch = this.buf.subarray(0, BATCH_HEADER_BYTES + compressed.length);
      } else {
        batch = Buffer.allocUnsafe(BATCH_HEADER_BYTES + compressed.length);
        compressed.copy(batch, BATCH_HEADER_BYTES);
      }
    }
    writeHeader(batch, o, this.count, this.baseTimestamp, this.maxTimestamp);
    this.closedBytes = batch;
    return batch;
  }

  /**
   * Rewrites the producer fields of the closed batch in place and its CRC (they lie inside the
   * CRC'd region): an idempotent producer's batch restarting its sequence under a new epoch
   * (KIP-360). Returns the bytes.
   */
  restampProducer(
    fields: Pick<CloseOptions, "producerId" | "producerEpoch" | "baseSequence">,
  ): Buffer {
    const batch = this.closedBytes;
    assert(batch !== undefined, "only a closed batch is restamped");
    const o = resolveOptions(fields);
    batch.writeBigInt64BE(o.producerId, PRODUCER_ID_OFFSET);
    batch.writeInt16BE(o.producerEpoch, PRODUCER_EPOCH_OFFSET);
    batch.writeInt32BE(o.baseSequence, BASE_SEQUENCE_OFFSET);
    batch.writeUInt32BE(computeBatchCrc(batch), CRC_OFFSET);
    return batch;
  }
}

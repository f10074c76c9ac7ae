/**
 * Records inside a batch (Kafka's v2 record layout), after decompression:
 *
 * ```
 * length          varint   bytes of the record after this field
 * attributes      int8     unused, 0
 * timestampDelta  varlong  timestamp - batch baseTimestamp
 * offsetDelta     varint   offset - batch baseOffset
 * keyLength       varint   -1 = null key
 * key             bytes
 * valueLength     varint   -1 = null value
 * value           bytes
 * headerCount     varint
 * headers         per header: keyLength varint (>= 0), key utf8, valueLength varint (-1 = null), value
 * ```
 *
 * Encoding writes into a buffer pre-sized by {@link recordBodyBytes}; decoding is bounds-checked
 * everywhere and throws `SamsaError(CORRUPT_MESSAGE)` on malformed input, never anything else.
 */
import { ErrorCode, SamsaError } from "../errors.js";
import { type BatchHeader, timestampTypeOf } from "./header.js";
import { TimestampType } from "./layout.js";
import {
  ByteReader,
  VARINT_BYTES_MAX,
  VARLONG_BYTES_MAX,
  varintSize,
  varlongSize,
  writeVarint,
  writeVarlong,
} from "./varint.js";

/** One record header: a UTF-8 key and an optional value. */
export interface RecordHeader {
  key: string;
  value: Buffer | null;
}

/** A record as handed to the batch builder. */
export interface ProducerRecord {
  /** Key; `null` or absent for none. */
  key?: Buffer | null;
  /** Value; `null` for a tombstone. */
  value: Buffer | null;
  /** Headers, in order; absent for none. */
  headers?: RecordHeader[];
  /** Create time in ms since the epoch; absent to use the builder's `now`. */
  timestamp?: number;
}

/**
 * A record decoded from a batch. `key`, `value` and header values are views into the batch
 * buffer (or into the decompressed records for compressed batches): copy them to keep them
 * beyond the buffer's lifetime.
 */
export interface DecodedRecord {
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeader[];
}

/** Length value that encodes a null key, value or header value. */
export const NULL_LENGTH = -1;
/**
 * Smallest record body (after the length varint): attributes, timestampDelta, offsetDelta,
 * keyLength, valueLength and headerCount, one byte each.
 */
export const RECORD_BODY_BYTES_MIN = 6;
/** Smallest encoded record: the length varint plus the smallest body. */
export const RECORD_BYTES_MIN = 1 + RECORD_BODY_BYTES_MIN;
/** Smallest encoded header: keyLength and valueLength, one byte each. */
const HEADER_BYTES_MIN = 2;

function nullableBytes(b: Buffer | null | undefined): number {
  return b == null ? 1 : varintSize(b.length) + b.length;
}

/**
 * Most bytes a record's fixed fields can take, whatever its place in its batch: the length
 * varint (5), attributes (1), the timestamp delta varlong (10) and the offset delta varint (5),
 * 21 in all, Kafka's `DefaultRecord.MAX_RECORD_OVERHEAD`. The key, the value and the headers,
 * with their length varints and the header count, come on top: see {@link recordBytesMax}.
 */
export const RECORD_OVERHEAD_BYTES_MAX =
  VARINT_BYTES_MAX + 1 + VARLONG_BYTES_MAX + VARINT_BYTES_MAX;

/** Bytes of a record's key, value, header count and headers, with their length varints. */
function recordContentBytes(record: ProducerRecord): number {
  let n = nullableBytes(record.key) + nullableBytes(record.value);
  const headers = record.headers;
  if (headers === undefined || headers.length === 0) return n + 1;
  n += varintSize(headers.length);
  for (const h of headers) {
    const keyBytes = Buffer.byteLength(h.key, "utf8");
    n += varintSize(keyBytes) + keyBytes + nullableBytes(h.value);
  }
  return n;
}

/**
 * An upper bound of a record's encoded size (uncompressed), before its batch is known: the
 * exact size of its contents plus {@link RECORD_OVERHEAD_BYTES_MAX}. Producers (the client and
 * the gateway) build batches to this estimate, so a batch never exceeds the size it aimed at.
 */
export function recordBytesMax(record: ProducerRecord): number {
  return RECORD_OVERHEAD_BYTES_MAX + recordContentBytes(record);
}

/** Bytes of the record body (everything after its length varint). */
export function recordBodyBytes(
  record: ProducerRecord,
  timestampDelta: number,
  offsetDelta: number,
): number {
  return 1 + varlongSize(timestampDelta) + varintSize(offsetDelta) + recordContentBytes(record);
}

/** Bytes of the whole encoded record given its body size. */
export function recordBytes(bodyBytes: number): number {
  return varintSize(bodyBytes) + bodyBytes;
}

function writeNullable(buf: Buffer, pos: number, b: Buffer | null | undefined): number {
  if (b == null) {
    buf[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  pos = writeVarint(buf, pos, b.length);
  buf.set(b, pos);
  return pos + b.length;
}

/**
 * Writes one record at `pos` of a buffer sized for it; returns the position after it.
 * `bodyBytes` must be {@link recordBodyBytes} of the same arguments.
 */
export function writeRecord(
  buf: Buffer,
  pos: number,
  record: ProducerRecord,
  bodyBytes: number,
  timestampDelta: number,
  offsetDelta: number,
): number {
  pos = writeVarint(buf, pos, bodyBytes);
  buf[pos++] = 0; // attributes
  pos = writeVarlong(buf, pos, timestampDelta);
  pos = writeVarint(buf, pos, offsetDelta);
  pos = writeNullable(buf, pos, record.key);
  pos = writeNullable(buf, pos, record.value);
  const headers = record.headers;
  if (headers === undefined || headers.length === 0) {
    buf[pos] = 0;
    return pos + 1;
  }
  pos = writeVarint(buf, pos, headers.length);
  for (const h of headers) {
    const keyBytes = Buffer.byteLength(h.key, "utf8");
    pos = writeVarint(buf, pos, keyBytes);
    pos += buf.write(h.key, pos, keyBytes, "utf8");
    pos = writeNullable(buf, pos, h.value);
  }
  return pos;
}

function corrupt(message: string): SamsaError {
  return new SamsaError(ErrorCode.CORRUPT_MESSAGE, message);
}

function readNullable(r: ByteReader, what: string): Buffer | null {
  const length = r.readVarint();
  if (length === NULL_LENGTH) return null;
  if (length < 0) throw corrupt(`negative ${what} length ${length}`);
  return r.readBytes(length, what);
}

/**
 * The headers of every record without any: one shared, frozen empty list, so that records
 * without headers (most) cost no array each. Frozen: a caller pushing into a record's headers
 * gets a TypeError rather than headers on every other record.
 */
export const NO_HEADERS: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];

function readHeaders(r: ByteReader): RecordHeader[] {
  const count = r.readVarint();
  if (count === 0) return NO_HEADERS;
  if (count < 0 || count > r.remaining / HEADER_BYTES_MIN) {
    throw corrupt(`header count ${count} invalid for ${r.remaining} bytes left in the record`);
  }
  const headers: RecordHeader[] = [];
  for (let i = 0; i < count; i++) {
    const keyLength = r.readVarint();
    if (keyLength < 0) throw corrupt(`header key length ${keyLength} is negative`);
    const key = r.readUtf8(keyLength, "header key");
    headers.push({ key, value: readNullable(r, "header value") });
  }
  return headers;
}

/** The batch header fields that record decoding needs. */
export type RecordsContext = Pick<
  BatchHeader,
  "baseOffset" | "baseTimestamp" | "maxTimestamp" | "attributes" | "recordCount" | "lastOffsetDelta"
>;

/**
 * Makes the object a decoder gives for one record (see {@link decodeRecordsWith}): called once
 * per record with its fields, so a caller builds the one object it hands on (a consumer's record
 * with its topic and partition) instead of a {@link DecodedRecord} copied into another.
 */
export type RecordFactory<T> = (
  offset: number,
  timestamp: number,
  key: Buffer | null,
  value: Buffer | null,
  headers: RecordHeader[],
) => T;

const decodedRecord: RecordFactory<DecodedRecord> = (offset, timestamp, key, value, headers) => ({
  offset,
  timestamp,
  key,
  value,
  headers,
});

/**
 * Decodes the (decompressed) records region of a batch. Requires exactly `recordCount` records
 * that fill `data` with no bytes left over, each record's fields to fill its length exactly,
 * and offset deltas strictly increasing and within `[0, lastOffsetDelta]`. Records without
 * headers share {@link NO_HEADERS}.
 */
export function decodeRecords(data: Buffer, batch: RecordsContext): DecodedRecord[] {
  return decodeRecordsWith(data, batch, decodedRecord);
}

/**
 * {@link decodeRecords} with each record built by `make`, skipping (checked, but not built)
 * the records whose offset is below `fromOffset` (default 0: all): a consumer whose position
 * is inside a batch builds only what it yields.
 */
export function decodeRecordsWith<T>(
  data: Buffer,
  batch: RecordsContext,
  make: RecordFactory<T>,
  fromOffset = 0,
): T[] {
  const { recordCount, lastOffsetDelta, baseOffset, baseTimestamp } = batch;
  if (recordCount * RECORD_BYTES_MIN > data.length) {
    throw corrupt(`${data.length} bytes cannot hold ${recordCount} records`);
  }
  const logAppendTime = timestampTypeOf(batch.attributes) === TimestampType.LOG_APPEND_TIME;
  const r = new ByteReader(data);
  const records: T[] = [];
  let previousDelta = -1;
  for (let i = 0; i < recordCount; i++) {
    const length = r.readVarint();
    if (length < RECORD_BODY_BYTES_MIN || length > r.remaining) {
      throw corrupt(`record ${i} length ${length} invalid with ${r.remaining} bytes left`);
    }
    const recordEnd = r.pos + length;
    r.end = recordEnd;
    r.readInt8(); // attributes: unused in v2
    const timestampDelta = r.readVarlong();
    const offsetDelta = r.readVarint();
    if (offsetDelta <= previousDelta || offsetDelta > lastOffsetDelta) {
      throw corrupt(
        `record ${i} offset delta ${offsetDelta} not in (${previousDelta}, ${lastOffsetDelta}]`,
      );
    }
    previousDelta = offsetDelta;
    const key = readNullable(r, "key");
    const value = readNullable(r, "value");
    const headers = readHeaders(r);
    if (r.pos !== recordEnd) {
      throw corrupt(`record ${i} has ${recordEnd - r.pos} bytes past its fields`);
    }
    r.end = data.length;
    const offset = baseOffset + offsetDelta;
    if (offset < fromOffset) continue;
    records.push(
      make(
        offset,
        logAppendTime ? batch.maxTimestamp : baseTimestamp + timestampDelta,
        key,
        value,
        headers,
      ),
    );
  }
  if (r.pos !== data.length) {
    throw corrupt(`${data.length - r.pos} bytes after the batch's ${recordCount} records`);
  }
  return records;
}

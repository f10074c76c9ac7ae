/**
 * Consume answers with several records per message, written straight from the record batches in
 * their protobuf encoding (`ConsumeResponse` with `records`), without a JavaScript object per
 * record and without protobufjs: profiling row 7 of `bench:clients` (docs/performance.md) put
 * 42% of the gateway's time in protobufjs's `fromObject`/`encode` of those objects and 16% in
 * building them. Each record of a batch is checked and walked once by the batch decoder and
 * written as one `ConsumeRecord` entry (field 8 of `ConsumeResponse`) into a scratch buffer; a
 * message is then the topic and partition fields followed by a run of entries, one copy.
 *
 * Field numbers and wire types follow proto/samsa/v1/gateway.proto; zero-valued scalars are left
 * out as protobuf does, `key` and `value` (explicit presence) are written when not null, also
 * when empty. `test/unit/consume-encoding.test.ts` decodes the output with the .proto's own
 * types and compares every field.
 */
import { decodeBatchWith } from "../shared/record-batch/builder.js";
import { batchSizeBytes } from "../shared/record-batch/header.js";
import type { RecordFactory, RecordHeader } from "../shared/record-batch/records.js";

/** `ConsumeResponse.topic`: field 1, length-delimited. */
const TAG_TOPIC = (1 << 3) | 2;
/** `ConsumeResponse.partition`: field 2, varint. */
const TAG_PARTITION = (2 << 3) | 0;
/** `ConsumeResponse.records`: field 8, length-delimited. */
const TAG_RECORDS = (8 << 3) | 2;
/** `ConsumeRecord.offset`: field 1, varint. */
const TAG_OFFSET = (1 << 3) | 0;
/** `ConsumeRecord.timestamp`: field 2, varint. */
const TAG_TIMESTAMP = (2 << 3) | 0;
/** `ConsumeRecord.key`: field 3, length-delimited. */
const TAG_KEY = (3 << 3) | 2;
/** `ConsumeRecord.value`: field 4, length-delimited. */
const TAG_VALUE = (4 << 3) | 2;
/** `ConsumeRecord.headers`: field 5, length-delimited. */
const TAG_HEADERS = (5 << 3) | 2;
/** `RecordHeader.key`: field 1, length-delimited. */
const TAG_HEADER_KEY = (1 << 3) | 2;
/** `RecordHeader.value`: field 2, length-delimited. */
const TAG_HEADER_VALUE = (2 << 3) | 2;
/** Bytes of a negative int64 as a varint (two's complement, 64 bits). */
const NEGATIVE_VARINT_BYTES = 10;
/** Bytes an entry adds to a record's key and value at most (tags, lengths, offset, timestamp). */
const ENTRY_OVERHEAD_BYTES_MAX = 1 + 5 + 1 + 8 + 1 + NEGATIVE_VARINT_BYTES + 1 + 5 + 1 + 5;

/** Bytes of `n` (0 ≤ n < 2^53) as a varint. */
function varintBytes(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let bytes = 4;
  for (let rest = Math.floor(n / 0x10000000); rest > 0; rest = Math.floor(rest / 0x80)) bytes++;
  return bytes;
}

/** Bytes of an int64 field's value (a negative one takes ten). */
function int64Bytes(n: number): number {
  return n < 0 ? NEGATIVE_VARINT_BYTES : varintBytes(n);
}

/** A growable buffer written front to back. */
class Scratch {
  buf: Buffer;
  pos = 0;

  constructor(bytes: number) {
    this.buf = Buffer.allocUnsafe(bytes);
  }

  /** Room for `bytes` more. */
  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  /** `n` (0 ≤ n < 2^53) as a varint. */
  varint(n: number): void {
    const buf = this.buf;
    while (n >= 0x80) {
      buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[this.pos++] = n;
  }

  /** An int64 value: a varint, a negative one as its 64-bit two's complement. */
  int64(n: number): void {
    if (n >= 0) {
      this.varint(n);
      return;
    }
    let u = BigInt.asUintN(64, BigInt(n));
    for (let i = 1; i < NEGATIVE_VARINT_BYTES; i++) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  bytes(b: Buffer): void {
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }
}

/** Bytes of a `RecordHeader` message's body. */
function headerBodyBytes(key: number, value: number): number {
  return (
    (key > 0 ? 1 + varintBytes(key) + key : 0) + (value > 0 ? 1 + varintBytes(value) + value : 0)
  );
}

/**
 * The `ConsumeRecord` entries of a run of batches (one Subscribe message's `records`) from
 * `fromOffset` on, in one buffer: entry `i` spans `[ends[i-1] (or 0), ends[i])`.
 */
export interface EncodedRecords {
  readonly buf: Buffer;
  readonly ends: number[];
  /** The offset of the last record, -1 when there is none. */
  readonly lastOffset: number;
}

/**
 * Checks and walks every batch of `data` (whole batches back to back, as a Subscribe message
 * carries them; CORRUPT_MESSAGE on any defect) and writes each record at or past `fromOffset` as
 * a `ConsumeRecord` entry.
 */
export function encodeConsumeRecords(data: Buffer, fromOffset: number): EncodedRecords {
  const out = new Scratch(data.length + (data.length >> 1) + 1024);
  const ends: number[] = [];
  let lastOffset = -1;
  const write: RecordFactory<number> = (offset, timestamp, key, value, headers) => {
    const keyBytes = key === null ? 0 : 1 + varintBytes(key.length) + key.length;
    const valueBytes = value === null ? 0 : 1 + varintBytes(value.length) + value.length;
    let headersBytes = 0;
    let headerKeys: Buffer[] | undefined;
    if (headers.length > 0) {
      headerKeys = headers.map((h) => Buffer.from(h.key, "utf8"));
      headersBytes = headersBytesOf(headers, headerKeys);
    }
    const body =
      (offset === 0 ? 0 : 1 + varintBytes(offset)) +
      (timestamp === 0 ? 0 : 1 + int64Bytes(timestamp)) +
      keyBytes +
      valueBytes +
      headersBytes;
    out.ensure(ENTRY_OVERHEAD_BYTES_MAX + body);
    out.byte(TAG_RECORDS);
    out.varint(body);
    if (offset !== 0) {
      out.byte(TAG_OFFSET);
      out.varint(offset);
    }
    if (timestamp !== 0) {
      out.byte(TAG_TIMESTAMP);
      out.int64(timestamp);
    }
    if (key !== null) {
      out.byte(TAG_KEY);
      out.varint(key.length);
      out.bytes(key);
    }
    if (value !== null) {
      out.byte(TAG_VALUE);
      out.varint(value.length);
      out.bytes(value);
    }
    if (headerKeys !== undefined) writeHeaders(out, headers, headerKeys);
    lastOffset = offset;
    ends.push(out.pos);
    return out.pos;
  };
  for (let pos = 0; pos < data.length; ) {
    const batch = decodeBatchWith(data, pos, write, fromOffset);
    pos += batchSizeBytes(batch.header);
  }
  return { buf: out.buf, ends, lastOffset };
}

function headersBytesOf(headers: readonly RecordHeader[], keys: readonly Buffer[]): number {
  let bytes = 0;
  for (let i = 0; i < headers.length; i++) {
    const body = headerBodyBytes(keys[i]!.length, headers[i]!.value?.length ?? 0);
    bytes += 1 + varintBytes(body) + body;
  }
  return bytes;
}

function writeHeaders(out: Scratch, headers: readonly RecordHeader[], keys: readonly Buffer[]) {
  for (let i = 0; i < headers.length; i++) {
    const key = keys[i]!;
    const value = headers[i]!.value;
    const valueLength = value?.length ?? 0;
    out.ensure(1 + 5 + 1 + 5 + 1 + 5 + key.length + valueLength);
    out.byte(TAG_HEADERS);
    out.varint(headerBodyBytes(key.length, valueLength));
    if (key.length > 0) {
      out.byte(TAG_HEADER_KEY);
      out.varint(key.length);
      out.bytes(key);
    }
    if (value !== null && valueLength > 0) {
      out.byte(TAG_HEADER_VALUE);
      out.varint(valueLength);
      out.bytes(value);
    }
  }
}

/** The `topic` and `partition` fields of a partition's messages, encoded once per stream. */
export function encodeConsumePrefix(topic: string, partition: number): Buffer {
  const name = Buffer.from(topic, "utf8");
  const out = new Scratch(1 + 5 + name.length + 1 + 5);
  out.byte(TAG_TOPIC);
  out.varint(name.length);
  out.bytes(name);
  if (partition !== 0) {
    out.byte(TAG_PARTITION);
    out.varint(partition);
  }
  return out.buf.subarray(0, out.pos);
}

/** A `ConsumeResponse`: `prefix` followed by the entries `[from, to)` of `records`. */
export function encodeConsumeMessage(
  prefix: Buffer,
  records: EncodedRecords,
  from: number,
  to: number,
): Buffer {
  const start = from === 0 ? 0 : records.ends[from - 1]!;
  const end = records.ends[to - 1]!;
  const message = Buffer.allocUnsafe(prefix.length + end - start);
  prefix.copy(message, 0);
  records.buf.copy(message, prefix.length, start, end);
  return message;
}

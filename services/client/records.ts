/**
 * The records the client library takes and gives: what a producer sends (keys, values and
 * header values as Buffers or strings), normalised once into the record batch builder's form,
 * and what a consumer yields.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import {
  type ProducerRecord as BatchRecord,
  type RecordHeader,
  recordBytesMax,
} from "../shared/record-batch/index.js";

export type { RecordHeader } from "../shared/record-batch/index.js";

/** Bytes, or a string sent as its UTF-8 bytes. */
export type Bytes = Buffer | Uint8Array | string;

/** A record to produce. */
export interface ProducerRecord {
  /** Key; null/absent = none (then the partition is chosen round robin). */
  key?: Bytes | null;
  /** Value; null = a tombstone. */
  value: Bytes | null;
  /** Headers, as a list (repeated keys allowed) or an object. */
  headers?:
    | readonly { key: string; value: Bytes | null }[]
    | Readonly<Record<string, Bytes | null>>;
  /** Partition; absent = chosen by key (murmur2) or round robin. */
  partition?: number;
  /** Create time, ms since the epoch; absent = when the producer takes the record. */
  timestamp?: number;
}

/** Where a produced record was written. */
export interface RecordMetadata {
  readonly topic: string;
  readonly partition: number;
  /** The record's offset; -1 with acks=0 (the broker answers before appending). */
  readonly offset: number;
  /** The create time the record was sent with, ms since the epoch. */
  readonly timestamp: number;
}

/** A consumed record. Offsets and timestamps are JS numbers (safe integers). */
export interface ConsumerRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** ms since the epoch (create time, or log append time for such topics). */
  readonly timestamp: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: readonly RecordHeader[];
}

/** A record in the builder's form, with its partition chosen later and its size estimated. */
export interface NormalizedRecord extends BatchRecord {
  key: Buffer | null;
  timestamp: number;
  partition: number | undefined;
  /** Upper bound of the encoded size, bytes (uncompressed; `recordBytesMax`). */
  sizeBytes: number;
}

function toBuffer(b: Bytes | null | undefined): Buffer | null {
  if (b === null || b === undefined) return null;
  if (typeof b === "string") return Buffer.from(b, "utf8");
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function toHeaders(headers: ProducerRecord["headers"]): RecordHeader[] {
  if (headers === undefined) return [];
  const list = Array.isArray(headers)
    ? (headers as readonly { key: string; value: Bytes | null }[])
    : Object.entries(headers as Readonly<Record<string, Bytes | null>>).map(([key, value]) => ({
        key,
        value,
      }));
  return list.map((h) => ({ key: h.key, value: toBuffer(h.value) }));
}

/**
 * Normalises a record: Buffers for key, value and headers, `now` as timestamp when it has none
 * (fixed here, so a retried batch carries the same timestamps), and its estimated size.
 * @throws SamsaError INVALID_REQUEST for a partition that is not a non-negative integer.
 */
export function normalizeRecord(record: ProducerRecord, now: number): NormalizedRecord {
  const p = record.partition;
  if (p !== undefined && (!Number.isSafeInteger(p) || p < 0)) {
    throw new SamsaError(ErrorCode.INVALID_REQUEST, `partition ${p} is not a partition number`);
  }
  const key = toBuffer(record.key);
  const value = toBuffer(record.value);
  const headers = toHeaders(record.headers);
  const sizeBytes = recordBytesMax({ key, value, headers });
  return {
    key,
    value,
    headers,
    timestamp: record.timestamp ?? now,
    partition: p,
    sizeBytes,
  };
}

/**
 * The records of one stored batch, as {@link Consumer.consumeBatches} yields them: those at or
 * after the consumer's position (never none), in offset order.
 */
export interface ConsumerBatch {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly ConsumerRecord[];
  /** The offset after the batch: the partition's position once the batch is consumed. */
  readonly nextOffset: number;
}

/**
 * Byte layout of a record batch (magic 2). The layout is Kafka's v2 record batch, byte for byte:
 * all integers big-endian, the CRC is CRC-32C over everything from `attributes` to the end of the
 * batch. `baseOffset`, `batchLength` and `partitionLeaderEpoch` sit before the CRC'd region, so
 * the broker can stamp the base offset and leader epoch without recomputing the CRC.
 *
 * ```
 * offset size field
 *      0    8 baseOffset            int64
 *      8    4 batchLength           int32  bytes after this field (= total size - 12)
 *     12    4 partitionLeaderEpoch  int32
 *     16    1 magic                 int8   = 2
 *     17    4 crc                   uint32 CRC-32C of bytes [21, end)
 *     21    2 attributes            int16  bits 0-2 compression, bit 3 timestamp type
 *     23    4 lastOffsetDelta       int32
 *     27    8 baseTimestamp         int64
 *     35    8 maxTimestamp          int64
 *     43    8 producerId            int64
 *     51    2 producerEpoch         int16
 *     53    4 baseSequence          int32
 *     57    4 recordCount           int32
 *     61    . records
 * ```
 * See docs/format.md for the record layout.
 */
export const BASE_OFFSET_OFFSET = 0;
export const BATCH_LENGTH_OFFSET = 8;
export const PARTITION_LEADER_EPOCH_OFFSET = 12;
export const MAGIC_OFFSET = 16;
export const CRC_OFFSET = 17;
export const ATTRIBUTES_OFFSET = 21;
export const LAST_OFFSET_DELTA_OFFSET = 23;
export const BASE_TIMESTAMP_OFFSET = 27;
export const MAX_TIMESTAMP_OFFSET = 35;
export const PRODUCER_ID_OFFSET = 43;
export const PRODUCER_EPOCH_OFFSET = 51;
export const BASE_SEQUENCE_OFFSET = 53;
export const RECORD_COUNT_OFFSET = 57;
export const RECORDS_OFFSET = 61;

/** Size of the batch header in bytes (everything before the first record). */
export const BATCH_HEADER_BYTES = 61;
/** Bytes before the `batchLength` count starts: baseOffset (8) + batchLength (4). */
export const LOG_OVERHEAD_BYTES = 12;
/** The only magic value this version reads and writes. */
export const CURRENT_MAGIC = 2;

/** Attribute bits. */
export const COMPRESSION_CODEC_MASK = 0x07;
export const TIMESTAMP_TYPE_MASK = 0x08;

/** Compression codecs (Kafka's numbering). */
export enum CompressionType {
  NONE = 0,
  GZIP = 1,
  SNAPPY = 2,
  LZ4 = 3,
  ZSTD = 4,
}

/** Timestamp type: set by the producer or by the broker on append. */
export enum TimestampType {
  CREATE_TIME = 0,
  LOG_APPEND_TIME = 1,
}

/** Absolute upper bound on one batch, whatever `message.max.bytes` says: 64 MiB. */
export const BATCH_BYTES_MAX = 64 * 1024 * 1024;
/** Upper bound on records in one batch (bounds the decoder's work). */
export const BATCH_RECORDS_MAX = 1_000_000;
/** No producer id (idempotence is not used). */
export const NO_PRODUCER_ID = -1n;
/** No producer epoch / sequence. */
export const NO_PRODUCER_EPOCH = -1;
export const NO_SEQUENCE = -1;
/** Leader epoch of a batch not yet stamped by a leader. */
export const NO_PARTITION_LEADER_EPOCH = -1;

/**
 * Damaged batches as the consumer meets them: a leader that finds a stored batch failing its CRC
 * answers CORRUPT_MESSAGE with the offset where the next batch starts (the partition's
 * `next_offset`), and a batch that arrives CRC-correct but does not decode (stored before the
 * broker walked records on append, issue 12) fails here. Either way the error names the
 * partition and the offset; a consumer given `onCorruptBatch` moves past the batch instead, on
 * purpose, and is told exactly what it skipped.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import {
  BATCH_HEADER_BYTES,
  type DecodedBatch,
  decodeBatch,
  LOG_OVERHEAD_BYTES,
  lastOffsetOf,
  readBatchHeader,
} from "../shared/record-batch/index.js";

/** Bytes of a batch's base offset field (int64, the batch's first bytes). */
const BASE_OFFSET_BYTES = 8;

/** A damaged batch a consumer skipped (see `ConsumeOptions.onCorruptBatch`). */
export interface SkippedBatch {
  topic: string;
  partition: number;
  /** First offset skipped: the consumer's position when it met the batch. */
  offset: number;
  /** Where the consumer resumes; offsets in `[offset, nextOffset)` are not delivered. */
  nextOffset: number;
  /** What was wrong, as the broker or the decoder said it. */
  reason: string;
}

/** Called for each damaged batch skipped; without it, a damaged batch is thrown. */
export type OnCorruptBatch = (skipped: SkippedBatch) => void;

/**
 * A leader's CORRUPT_MESSAGE answer for a partition at `position`: with `onCorrupt`, reports
 * the skip and returns the position to resume at; without it (or without a usable next offset),
 * returns the error to throw.
 */
export function skipCorruptAnswer(
  where: { topic: string; partition: number; position: number },
  nextOffset: number,
  reason: string,
  onCorrupt: OnCorruptBatch | undefined,
): number | SamsaError {
  const { topic, partition, position } = where;
  if (onCorrupt === undefined || !Number.isSafeInteger(nextOffset) || nextOffset <= position) {
    return new SamsaError(
      ErrorCode.CORRUPT_MESSAGE,
      `${topic}-${partition} at offset ${position}: ${reason}`,
    );
  }
  onCorrupt({ topic, partition, offset: position, nextOffset, reason });
  return nextOffset;
}

/** A batch of a fetch answer: decoded, or skipped (then `batch` is undefined). */
export interface BatchAt {
  batch: DecodedBatch | undefined;
  /** Bytes the batch takes in the answer. */
  size: number;
  /** Offset after the batch. */
  nextOffset: number;
}

/**
 * Decodes the batch at `pos` of a fetch answer. A batch that fails (CRC, framing, records) is
 * skipped with `onCorrupt` when its header still says where it ends; otherwise a
 * CORRUPT_MESSAGE naming the partition and offset is thrown.
 */
export function decodeBatchAt(
  data: Buffer,
  pos: number,
  where: { topic: string; partition: number; position: number },
  onCorrupt: OnCorruptBatch | undefined,
): BatchAt {
  try {
    const batch = decodeBatch(data, pos);
    const size = batch.header.batchLength + LOG_OVERHEAD_BYTES;
    return { batch, size, nextOffset: lastOffsetOf(batch.header) + 1 };
  } catch (err) {
    if (!(err instanceof SamsaError) || err.code !== ErrorCode.CORRUPT_MESSAGE) throw err;
    const header = data.length - pos >= BATCH_HEADER_BYTES ? readBatchHeader(data, pos) : undefined;
    const offset = Math.max(where.position, header?.baseOffset ?? where.position);
    const size = header === undefined ? 0 : header.batchLength + LOG_OVERHEAD_BYTES;
    const fits = size > BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES && pos + size <= data.length;
    // The next batch's base offset (outside the CRC) when it is there, else the header's own.
    const following = pos + size + BASE_OFFSET_BYTES <= data.length;
    const nextOffset =
      header === undefined
        ? Number.NaN
        : following
          ? Number(data.readBigInt64BE(pos + size))
          : lastOffsetOf(header) + 1;
    const reason = `corrupt batch at offset ${header?.baseOffset ?? offset}: ${err.message}`;
    if (onCorrupt === undefined || !fits || !(nextOffset > offset)) {
      throw new SamsaError(
        ErrorCode.CORRUPT_MESSAGE,
        `${where.topic}-${where.partition} at offset ${offset}: ${reason}`,
        { cause: err },
      );
    }
    onCorrupt({ topic: where.topic, partition: where.partition, offset, nextOffset, reason });
    return { batch: undefined, size, nextOffset };
  }
}

/**
 * Walks the record batches stored in a segment file, reading it in windows so that neither a
 * huge segment nor a huge batch is ever loaded whole. Used by recovery (full validation) and by
 * reads that must locate the batch holding an offset (headers only).
 */
import type { FileHandle } from "node:fs/promises";
import { isSamsaError } from "../../shared/errors.js";
import {
  type BatchHeader,
  readBatchHeader,
  validateBatch,
} from "../../shared/record-batch/header.js";
import { BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES } from "../../shared/record-batch/layout.js";

/** Bytes read per window while scanning a segment. */
export const SCAN_WINDOW_BYTES = 1024 * 1024;

/** One batch found by the scanner. `bytes` is set only when the scan validates. */
export interface ScannedBatch {
  position: number;
  header: BatchHeader;
  size: number;
  bytes?: Buffer;
}

/** Where and why a validating scan stopped early. */
export interface ScanStop {
  position: number;
  reason: string;
}

/** Reads exactly `length` bytes at `position`, or fewer at end of file. */
export async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buf : buf.subarray(0, filled);
}

/** Options of {@link scanBatches}. */
export interface ScanOptions {
  /** First byte to scan. */
  start: number;
  /** End of the scanned range (the segment size). */
  end: number;
  /** Check every batch fully (length, magic, counts, CRC) and hand out its bytes. */
  validate: boolean;
  /** Largest batch considered valid, in bytes. */
  maxBatchBytes: number;
  /** Bytes per read. Default {@link SCAN_WINDOW_BYTES}. */
  windowBytes?: number;
}

/**
 * Yields batches from `start` until `end`. A validating scan stops at the first torn or corrupt
 * batch and reports it through `onStop`; a header-only scan stops at the first header that does
 * not fit in the range.
 */
export async function* scanBatches(
  fh: FileHandle,
  options: ScanOptions,
  onStop?: (stop: ScanStop) => void,
): AsyncGenerator<ScannedBatch> {
  const windowBytes = options.windowBytes ?? SCAN_WINDOW_BYTES;
  let pos = options.start;
  let window: Buffer = Buffer.alloc(0);
  let windowStart = pos;
  const stop = (reason: string) => onStop?.({ position: pos, reason });
  while (pos < options.end) {
    const remaining = options.end - pos;
    if (remaining < LOG_OVERHEAD_BYTES + 4 + 1) {
      stop(`${remaining} trailing bytes, too few for a batch header`);
      return;
    }
    let off = pos - windowStart;
    if (window.length - off < BATCH_HEADER_BYTES) {
      window = await readAt(fh, pos, Math.min(windowBytes, remaining));
      windowStart = pos;
      off = 0;
    }
    if (window.length < BATCH_HEADER_BYTES) {
      stop(`${window.length} trailing bytes, too few for a batch header`);
      return;
    }
    const length = window.readInt32BE(off + 8);
    const size = length + LOG_OVERHEAD_BYTES;
    if (length < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES || size > options.maxBatchBytes) {
      stop(`implausible batch length ${length}`);
      return;
    }
    if (size > remaining) {
      stop(`torn batch: ${size} bytes declared, ${remaining} present`);
      return;
    }
    if (!options.validate) {
      yield { position: pos, header: readBatchHeader(window, off), size };
      pos += size;
      continue;
    }
    if (window.length - off < size) {
      window = await readAt(fh, pos, Math.max(size, Math.min(windowBytes, remaining)));
      windowStart = pos;
      off = 0;
    }
    let header: BatchHeader;
    try {
      header = validateBatch(window, off, { maxBatchBytes: options.maxBatchBytes });
    } catch (err) {
      if (!isSamsaError(err)) throw err;
      stop(err.message);
      return;
    }
    yield { position: pos, header, size, bytes: window.subarray(off, off + size) };
    pos += size;
  }
}

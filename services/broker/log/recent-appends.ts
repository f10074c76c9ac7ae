/**
 * The tail of one partition log kept in memory: the chunks the append pipeline just wrote
 * (exactly the bytes that went to the segment file, offsets and epochs stamped), so that the
 * reads at the log end — followers' ReplicaFetch and tailing consumers, nearly every read under
 * load — are served without a file read, a new buffer and a CRC check per batch.
 *
 * Why it pays (docs/performance.md#the-log-tail-in-memory): a follower fetch read from the
 * segment allocates a buffer as large as the answer (up to 1 MiB), and at replication rates
 * those allocations are a large part of what starts the brokers' garbage collections. The
 * bytes here are held anyway until the write finishes; keeping them a little longer costs at
 * most {@link RECENT_APPENDS_BYTES_MAX} per partition.
 *
 * Trust: every chunk was validated before it was written (CRC and record framing for a leader
 * append, CRC for a follower append), and these are the same Buffers, so a read from here
 * checks nothing again. A read that starts below the oldest chunk kept goes to the segments.
 * Truncation drops everything (`clear`): after it the file is the only truth.
 *
 * Only the write queue calls `add` and `clear`; `read` is synchronous, so it never sees a
 * half-made change.
 */
import type { AppendedBatch } from "./segment.js";

/** Bytes one partition's tail may hold (the Buffers kept alive, counted by what backs them). */
export const RECENT_APPENDS_BYTES_MAX = 8 * 1024 * 1024;
/** Chunks one partition's tail may hold (bounds the lookup for many small appends). */
export const RECENT_APPENDS_CHUNKS_MAX = 1024;

/** One written chunk: batches back to back, with each batch's offsets and end position. */
interface Chunk {
  readonly bytes: Buffer;
  /** Per batch: base offset, last offset, end position in `bytes` (parallel arrays). */
  readonly baseOffsets: number[];
  readonly lastOffsets: number[];
  readonly ends: number[];
  /** Memory this chunk keeps alive: what backs its Buffer, at least its own length. */
  readonly cost: number;
}

/** A read served from memory: whole batches, and the offset after the last. */
export interface TailRead {
  bytes: Buffer;
  nextOffset: number;
}

const EMPTY = Buffer.alloc(0);

/** The in-memory tail of one partition log (see the file comment). */
export class RecentAppends {
  /** Live chunks are `chunks[head..]`, oldest first. */
  private chunks: Chunk[] = [];
  private head = 0;
  private bytes = 0;

  constructor(
    private readonly bytesMax = RECENT_APPENDS_BYTES_MAX,
    private readonly chunksMax = RECENT_APPENDS_CHUNKS_MAX,
  ) {}

  /** Chunks held now. */
  get size(): number {
    return this.chunks.length - this.head;
  }

  /** Bytes accounted now. */
  get costBytes(): number {
    return this.bytes;
  }

  /**
   * Remembers what one vectored write put at the log end: `buffers` back to back, holding the
   * batches `infos` in order. Drops the oldest chunks beyond the limits.
   */
  add(buffers: readonly Buffer[], infos: readonly AppendedBatch[]): void {
    let b = 0;
    for (const bytes of buffers) {
      const baseOffsets: number[] = [];
      const lastOffsets: number[] = [];
      const ends: number[] = [];
      let pos = 0;
      while (pos < bytes.length && b < infos.length) {
        const info = infos[b++]!;
        pos += info.size;
        baseOffsets.push(info.baseOffset);
        lastOffsets.push(info.lastOffset);
        ends.push(pos);
      }
      const cost = Math.max(bytes.length, bytes.buffer.byteLength);
      if (pos !== bytes.length || baseOffsets.length === 0 || cost > this.bytesMax) {
        // Not lined up with its batches, or too large to keep: the tail would have a hole, so
        // it starts over after this chunk.
        this.clear();
        continue;
      }
      while (this.size > 0 && (this.bytes + cost > this.bytesMax || this.size >= this.chunksMax)) {
        this.bytes -= this.chunks[this.head]!.cost;
        this.head++;
      }
      if (this.head > this.chunksMax) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
      this.chunks.push({ bytes, baseOffsets, lastOffsets, ends, cost });
      this.bytes += cost;
    }
  }

  /** Forgets everything (after a truncation). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
  }

  /**
   * Whole batches from the one holding `offset` (or the first after it), none starting at or
   * after `maxOffset`, up to `maxBytes` but at least one batch (what a segment read answers),
   * or undefined when `offset` is below the oldest batch kept: read the segments then.
   * Synchronous, so it never sees the list change under it.
   */
  read(offset: number, maxBytes: number, maxOffset: number): TailRead | undefined {
    const chunks = this.chunks;
    if (this.size === 0 || offset < chunks[this.head]!.baseOffsets[0]!) return undefined;
    const empty = { bytes: EMPTY, nextOffset: offset };
    if (offset >= maxOffset) return empty;
    let c = this.chunkIndexFor(offset);
    if (c < 0) return empty;
    const parts: Buffer[] = [];
    let total = 0;
    let nextOffset = offset;
    for (; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      let first = 0;
      if (parts.length === 0) while (chunk.lastOffsets[first]! < offset) first++;
      let last = first - 1;
      for (let i = first; i < chunk.baseOffsets.length; i++) {
        if (chunk.baseOffsets[i]! >= maxOffset) break;
        const size = chunk.ends[i]! - (i === 0 ? 0 : chunk.ends[i - 1]!);
        if (total > 0 && total + size > maxBytes) break;
        total += size;
        last = i;
      }
      if (last < first) break;
      parts.push(chunk.bytes.subarray(first === 0 ? 0 : chunk.ends[first - 1]!, chunk.ends[last]!));
      nextOffset = chunk.lastOffsets[last]! + 1;
      if (last < chunk.baseOffsets.length - 1) break;
    }
    if (parts.length === 0) return empty;
    return { bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts, total), nextOffset };
  }

  /** Index of the first live chunk whose last offset is ≥ `offset`, or -1 when none is. */
  private chunkIndexFor(offset: number): number {
    const chunks = this.chunks;
    let lo = this.head;
    let hi = chunks.length - 1;
    if (chunks[hi]!.lastOffsets.at(-1)! < offset) return -1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (chunks[mid]!.lastOffsets.at(-1)! >= offset) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

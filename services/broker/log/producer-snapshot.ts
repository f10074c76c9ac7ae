/**
 * Producer state snapshots (Kafka's `<offset>.snapshot` files beside the segments): the
 * {@link ProducerStateManager}'s entries as of an offset, written atomically at every segment
 * roll and at a clean close. On load, after truncation and after a crash the state is rebuilt
 * from the newest snapshot at or below the log end plus a header walk over the batches after
 * it (`rebuildProducerState`), so recovery reads at most the tail written since the last roll.
 *
 * File layout (big-endian; docs/idempotence.md):
 * ```
 * offset size field
 *      0    2 version         int16 = 1
 *      2    4 crc             uint32 CRC-32C of bytes [6, end)
 *      6    4 entryCount      int32
 *      then per entry:
 *           8 producerId      int64
 *           2 producerEpoch   int16
 *           8 lastTimestamp   int64 (ms)
 *           1 batchCount      int8 (≤ 5)
 *           then per batch: firstSeq int32, lastSeq int32, firstOffset int64, lastOffset int64
 * ```
 */
import { crc32c } from "@node-rs/crc32";
import { readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../shared/logger.js";
import { writeFileAtomic } from "./atomic-file.js";
import {
  PRODUCER_BATCH_WINDOW,
  type ProducerEntry,
  type ProducerStateManager,
} from "./producer-state.js";
import type { LogSegment } from "./segment.js";

/** Suffix of a producer state snapshot file, `<20-digit offset>.snapshot`. */
export const PRODUCER_SNAPSHOT_FILE_SUFFIX = ".snapshot";
/** Format version written and read. */
export const PRODUCER_SNAPSHOT_VERSION = 1;

const HEADER_BYTES = 10;
const ENTRY_BYTES = 19;
const BATCH_BYTES = 24;
const SNAPSHOT_FILE = /^(\d{20})\.snapshot$/;

/** The snapshot file of `offset` in `dir`. */
export function snapshotPath(dir: string, offset: number): string {
  return join(dir, `${String(offset).padStart(20, "0")}${PRODUCER_SNAPSHOT_FILE_SUFFIX}`);
}

/** Encodes entries as a snapshot file's bytes. */
export function encodeProducerSnapshot(entries: Iterable<Readonly<ProducerEntry>>): Buffer {
  const list = [...entries];
  let size = HEADER_BYTES;
  for (const e of list) size += ENTRY_BYTES + e.batches.length * BATCH_BYTES;
  const buf = Buffer.alloc(size);
  buf.writeInt16BE(PRODUCER_SNAPSHOT_VERSION, 0);
  buf.writeInt32BE(list.length, 6);
  let pos = HEADER_BYTES;
  for (const e of list) {
    buf.writeBigInt64BE(e.producerId, pos);
    buf.writeInt16BE(e.epoch, pos + 8);
    buf.writeBigInt64BE(BigInt(e.lastTimestamp), pos + 10);
    buf.writeInt8(e.batches.length, pos + 18);
    pos += ENTRY_BYTES;
    for (const b of e.batches) {
      buf.writeInt32BE(b.firstSeq, pos);
      buf.writeInt32BE(b.lastSeq, pos + 4);
      buf.writeBigInt64BE(BigInt(b.firstOffset), pos + 8);
      buf.writeBigInt64BE(BigInt(b.lastOffset), pos + 16);
      pos += BATCH_BYTES;
    }
  }
  buf.writeUInt32BE(crc32c(buf.subarray(6)) >>> 0, 2);
  return buf;
}

/** Decodes a snapshot file's bytes; throws an Error naming what is wrong. */
export function decodeProducerSnapshot(buf: Buffer): ProducerEntry[] {
  if (buf.length < HEADER_BYTES) throw new Error(`${buf.length} bytes, too short`);
  const version = buf.readInt16BE(0);
  if (version !== PRODUCER_SNAPSHOT_VERSION) throw new Error(`unknown version ${version}`);
  const crc = crc32c(buf.subarray(6)) >>> 0;
  if (crc !== buf.readUInt32BE(2)) throw new Error("CRC mismatch");
  const count = buf.readInt32BE(6);
  const out: ProducerEntry[] = [];
  let pos = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (pos + ENTRY_BYTES > buf.length) throw new Error("truncated entry");
    const n = buf.readInt8(pos + 18);
    if (n < 0 || n > PRODUCER_BATCH_WINDOW) throw new Error(`batch count ${n}`);
    const entry: ProducerEntry = {
      producerId: buf.readBigInt64BE(pos),
      epoch: buf.readInt16BE(pos + 8),
      lastTimestamp: Number(buf.readBigInt64BE(pos + 10)),
      batches: [],
    };
    pos += ENTRY_BYTES;
    if (pos + n * BATCH_BYTES > buf.length) throw new Error("truncated batch list");
    for (let j = 0; j < n; j++) {
      entry.batches.push({
        firstSeq: buf.readInt32BE(pos),
        lastSeq: buf.readInt32BE(pos + 4),
        firstOffset: Number(buf.readBigInt64BE(pos + 8)),
        lastOffset: Number(buf.readBigInt64BE(pos + 16)),
      });
      pos += BATCH_BYTES;
    }
    out.push(entry);
  }
  if (pos !== buf.length) throw new Error(`${buf.length - pos} trailing bytes`);
  return out;
}

/** Offsets of the snapshots in `dir`, ascending. */
export async function listSnapshotOffsets(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir(dir)) {
    const m = SNAPSHOT_FILE.exec(name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

/** Writes the state as of `offset` (atomically, durably). */
export async function writeProducerSnapshot(
  dir: string,
  offset: number,
  state: ProducerStateManager,
): Promise<void> {
  await writeFileAtomic(snapshotPath(dir, offset), encodeProducerSnapshot(state.all()));
}

/** Deletes the snapshots `drop` says to. */
export async function deleteSnapshots(
  dir: string,
  drop: (offset: number) => boolean,
): Promise<void> {
  for (const offset of await listSnapshotOffsets(dir)) {
    if (drop(offset)) await unlink(snapshotPath(dir, offset)).catch(() => undefined);
  }
}

/** What a rebuild reads: the log's directory and segments, and where it ends. */
export interface RebuildSource {
  readonly dir: string;
  readonly segments: readonly LogSegment[];
  readonly endOffset: number;
  readonly logger: Logger;
}

/**
 * Rebuilds `state` as of the log end: snapshots above it go (they describe a log cut since),
 * the newest readable one at or below it is loaded (producers expired at `nowMs` skipped), then
 * every batch after it is recorded. Resolves with the snapshot offset used (-1: none, the whole
 * log was read).
 */
export async function rebuildProducerState(
  source: RebuildSource,
  state: ProducerStateManager,
  nowMs: number,
): Promise<number> {
  const { dir, endOffset } = source;
  state.clear();
  await deleteSnapshots(dir, (o) => o > endOffset);
  let from = -1;
  const offsets = await listSnapshotOffsets(dir);
  for (let i = offsets.length - 1; i >= 0 && from < 0; i--) {
    const offset = offsets[i]!;
    try {
      const entries = decodeProducerSnapshot(await readFile(snapshotPath(dir, offset)));
      for (const e of entries) if (!state.isExpired(e.lastTimestamp, nowMs)) state.load(e);
      from = offset;
    } catch (err) {
      source.logger.warn("unreadable producer snapshot deleted", {
        offset,
        error: (err as Error).message,
      });
      state.clear();
      await unlink(snapshotPath(dir, offset)).catch(() => undefined);
    }
  }
  const start = Math.max(from, 0);
  for (const seg of source.segments) {
    if (seg.nextOffset <= start) continue;
    for await (const h of seg.headersFrom(start)) {
      if (h.baseOffset >= endOffset) break;
      state.record(h, h.baseOffset, h.baseOffset + h.lastOffsetDelta);
    }
  }
  state.removeExpired(nowMs);
  return from;
}

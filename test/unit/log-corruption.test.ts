/**
 * Damaged bytes on disk: recovery after an unclean stop must cut the log at the first torn or
 * corrupt batch (and drop every later segment), say so in a warning, and serve nothing past the
 * cut; damaged index files must be rebuilt from the log; a batch damaged while the log is open
 * must fail its read with CORRUPT_MESSAGE (a damaged length field: KAFKA_STORAGE_ERROR) instead
 * of reaching a consumer.
 *
 * An unclean stop is simulated after a clean close by deleting the `.clean-shutdown` marker
 * (and, where older segments must be re-validated too, lowering the checkpoint's recovery point
 * to 0), so that no file handle of the first log object is left open while bytes are damaged.
 */
import assert from "node:assert/strict";
import {
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DEFAULT_LOG_CONFIG, validateLogConfig } from "../../services/shared/config/log-config.js";
import {
  readPartitionCheckpoint,
  writePartitionCheckpoint,
} from "../../services/broker/log/partition-checkpoint.js";
import { CLEAN_SHUTDOWN_FILE } from "../../services/broker/log/partition-loader.js";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { PartitionLog } from "../../services/broker/log/partition-log.js";
import {
  LOG_FILE_SUFFIX,
  OFFSET_INDEX_FILE_SUFFIX,
  segmentFileName,
  TIME_INDEX_FILE_SUFFIX,
} from "../../services/broker/log/segment.js";
import { ErrorCode, isSamsaError, NEXT_OFFSET_METADATA_KEY } from "../../services/shared/errors.js";
import { type CapturedLine, memoryLogger } from "../../services/shared/logger.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";
import { batchSizeBytes, readBatchHeader } from "../../services/shared/record-batch/header.js";
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
} from "../../services/shared/record-batch/layout.js";
import type { ProducerRecord } from "../../services/shared/record-batch/records.js";

/** Small segments and dense indexes, so that a few dozen batches fill several segments. */
const CONFIG = validateLogConfig({
  ...DEFAULT_LOG_CONFIG,
  segmentBytes: 8 * 1024,
  indexIntervalBytes: 512,
  // The timestamps are fixed in the past: no time-based rolls.
  segmentMs: Number.MAX_SAFE_INTEGER,
});
const BATCH_COUNT = 65;
const T0_MS = 1_700_000_000_000;
/** This batch's records carry a timestamp far above every other one (CreateTime allows it). */
const SPIKE_BATCH = 22;
const SPIKE_TS_MS = T0_MS + 10_000_000;
/** Bytes asked for per read while scanning the whole log. */
const SCAN_READ_BYTES = 64 * 1024;

/** What was appended, record by record. */
interface ExpectedRecord {
  offset: number;
  timestamp: number;
  value: Buffer;
}

/** Where a batch lies on disk, found by walking the segment files (not through the engine). */
interface BatchOnDisk {
  segmentBase: number;
  position: number;
  size: number;
  baseOffset: number;
  lastOffset: number;
}

interface WrittenLog {
  dir: string;
  records: ExpectedRecord[];
  batches: BatchOnDisk[];
  segmentBases: number[];
  logEndOffset: number;
}

let root: string;
let dirSeq = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "samsa-log-corruption-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function recordsOf(batch: number): ProducerRecord[] {
  const count = 1 + ((batch * 7) % 9);
  const records: ProducerRecord[] = [];
  for (let i = 0; i < count; i++) {
    const text = `batch ${batch} record ${i} `.padEnd(40 + ((batch * 13 + i * 31) % 200), "x");
    const timestamp = batch === SPIKE_BATCH ? SPIKE_TS_MS + i : T0_MS + batch * 1000 + i;
    records.push({ value: Buffer.from(text), timestamp });
  }
  return records;
}

function openLog(dir: string, lines: CapturedLine[] = []): Promise<PartitionLog> {
  return FilePartitionLog.open({
    dir,
    topic: "t",
    partition: 0,
    config: CONFIG,
    logger: memoryLogger(lines),
  });
}

/** Opens the log in `dir`, runs `body` on it and closes it, even when `body` fails. */
async function withLog<T>(
  dir: string,
  body: (log: PartitionLog) => Promise<T>,
  lines: CapturedLine[] = [],
): Promise<T> {
  const log = await openLog(dir, lines);
  try {
    return await body(log);
  } finally {
    await log.close();
  }
}

const logPath = (dir: string, base: number) => join(dir, segmentFileName(base, LOG_FILE_SUFFIX));
const indexPath = (dir: string, base: number) =>
  join(dir, segmentFileName(base, OFFSET_INDEX_FILE_SUFFIX));
const timeIndexPath = (dir: string, base: number) =>
  join(dir, segmentFileName(base, TIME_INDEX_FILE_SUFFIX));

/** Base offsets of the `.log` files in `dir`, sorted. */
async function segmentBasesOnDisk(dir: string): Promise<number[]> {
  const names = await readdir(dir);
  return names
    .filter((n) => n.endsWith(LOG_FILE_SUFFIX))
    .map((n) => Number(n.slice(0, 20)))
    .sort((a, b) => a - b);
}

/** Walks every segment file batch by batch. */
async function batchesOnDisk(dir: string): Promise<BatchOnDisk[]> {
  const out: BatchOnDisk[] = [];
  for (const base of await segmentBasesOnDisk(dir)) {
    const buf = await readFile(logPath(dir, base));
    for (let pos = 0; pos < buf.length; ) {
      const h = readBatchHeader(buf, pos);
      const size = batchSizeBytes(h);
      out.push({
        segmentBase: base,
        position: pos,
        size,
        baseOffset: h.baseOffset,
        lastOffset: h.baseOffset + h.lastOffsetDelta,
      });
      pos += size;
    }
  }
  return out;
}

/** Writes {@link BATCH_COUNT} batches (one append each), flushes and closes the log cleanly. */
async function writeLog(): Promise<WrittenLog> {
  const dir = join(root, `p-${dirSeq++}`);
  const log = await openLog(dir);
  const records: ExpectedRecord[] = [];
  for (let b = 0; b < BATCH_COUNT; b++) {
    const recs = recordsOf(b);
    const r = await log.append(buildBatch(recs));
    recs.forEach((rec, i) => {
      records.push({ offset: r.baseOffset + i, timestamp: rec.timestamp!, value: rec.value! });
    });
  }
  log.setHighWatermark(log.logEndOffset);
  const logEndOffset = log.logEndOffset;
  await log.close();
  const batches = await batchesOnDisk(dir);
  const segmentBases = await segmentBasesOnDisk(dir);
  assert.ok(segmentBases.length >= 5, `only ${segmentBases.length} segments`);
  assert.equal(batches.length, BATCH_COUNT);
  assert.equal(batches.at(-1)!.lastOffset + 1, logEndOffset);
  return { dir, records, batches, segmentBases, logEndOffset };
}

/**
 * Makes the next open recover: no clean-shutdown marker, optionally an older recovery point
 * (only what lies past it is re-validated and cut; damage below it is kept and reported on
 * read, see log-recovery-point.test.ts). The cases here lower it to the damaged segment's base,
 * as after a crash before that segment was flushed.
 */
async function simulateUncleanStop(dir: string, recoveryPoint?: number): Promise<void> {
  await unlink(join(dir, CLEAN_SHUTDOWN_FILE));
  if (recoveryPoint !== undefined) {
    const c = await readPartitionCheckpoint(dir);
    await writePartitionCheckpoint(dir, { ...c, recoveryPoint });
  }
}

/** The batch in the middle of segment `segmentBase`. */
function middleBatchOf(w: WrittenLog, segmentBase: number): BatchOnDisk {
  const inSegment = w.batches.filter((b) => b.segmentBase === segmentBase);
  assert.ok(inSegment.length >= 3, `segment ${segmentBase} has ${inSegment.length} batches`);
  return inSegment[Math.floor(inSegment.length / 2)]!;
}

/** Overwrites bytes of a file in place. */
async function patchFile(path: string, position: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, "r+");
  try {
    await fh.write(bytes, 0, bytes.length, position);
  } finally {
    await fh.close();
  }
}

/** Inverts one byte of a file. */
async function flipByte(path: string, position: number): Promise<void> {
  const fh = await open(path, "r+");
  try {
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, position);
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, position);
  } finally {
    await fh.close();
  }
}

/** Reads `[logStartOffset, logEndOffset)` and checks it against what was written. */
async function assertServesExactly(log: PartitionLog, expected: ExpectedRecord[]): Promise<void> {
  const end = log.logEndOffset;
  assert.equal(end, expected.length, "log end offset");
  let offset = log.logStartOffset;
  for (let reads = 0; offset < end; reads++) {
    assert.ok(reads <= end, "scan does not progress");
    const r = await log.read(offset, SCAN_READ_BYTES, { maxOffset: end });
    assert.ok(r.bytes.length > 0, `nothing served at ${offset} below the end ${end}`);
    for (const batch of decodeBatches(r.bytes)) {
      assert.equal(batch.header.baseOffset, offset);
      for (const rec of batch.records) {
        const want = expected[offset]!;
        assert.equal(rec.offset, want.offset);
        assert.equal(rec.timestamp, want.timestamp);
        assert.deepEqual(rec.value, want.value, `value at offset ${offset}`);
        offset++;
      }
    }
    assert.equal(r.nextOffset, offset);
  }
  assert.equal(offset, end);
  // Nothing at or past the end: an empty answer at the end, out of range beyond it.
  const atEnd = await log.read(end, SCAN_READ_BYTES, { maxOffset: end + 1_000 });
  assert.equal(atEnd.bytes.length, 0);
  await assert.rejects(log.read(end + 1, SCAN_READ_BYTES), (err: unknown) =>
    isSamsaError(err, ErrorCode.OFFSET_OUT_OF_RANGE),
  );
}

/**
 * Reopens a damaged log and checks that it was cut exactly at `cut`: end offset, content, files,
 * the warning and its fields; then that the cut log takes appends and reopens cleanly.
 */
async function assertRecoveredAt(
  w: WrittenLog,
  cut: BatchOnDisk,
  reason: RegExp,
  fileSizeBefore: number,
): Promise<void> {
  const lines: CapturedLine[] = [];
  const extra: ProducerRecord = { value: Buffer.from("after recovery"), timestamp: T0_MS };
  await withLog(
    w.dir,
    async (log) => {
      assert.equal(log.logEndOffset, cut.baseOffset, "cut at the first damaged batch");
      await assertServesExactly(log, w.records.slice(0, cut.baseOffset));
      assert.deepEqual(
        log.segmentBaseOffsets(),
        w.segmentBases.filter((b) => b <= cut.segmentBase),
      );
      assert.deepEqual(await segmentBasesOnDisk(w.dir), log.segmentBaseOffsets());
      assert.equal((await stat(logPath(w.dir, cut.segmentBase))).size, cut.position);
      // The cut log is usable: the next append continues at the cut.
      const r = await log.append(buildBatch([extra]));
      assert.equal(r.baseOffset, cut.baseOffset);
    },
    lines,
  );

  const warnings = lines.filter((l) => l.level === "warn" || l.level === "error");
  assert.equal(warnings.length, 1, JSON.stringify(lines));
  const warning = warnings[0]!;
  assert.equal(warning.level, "warn");
  assert.match(warning.message, /truncat/);
  assert.equal(warning.fields.segment, logPath(w.dir, cut.segmentBase));
  assert.equal(warning.fields.position, cut.position);
  assert.match(String(warning.fields.reason), reason);
  assert.equal(warning.fields.bytesTruncated, fileSizeBefore - cut.position);
  const later = w.segmentBases.filter((b) => b > cut.segmentBase);
  assert.equal(warning.fields.laterSegmentsDeleted, later.length);

  // The append after the cut survives a clean close and reopen.
  await withLog(w.dir, async (log) => {
    assert.equal(log.logEndOffset, cut.baseOffset + 1);
    await assertServesExactly(log, [
      ...w.records.slice(0, cut.baseOffset),
      { offset: cut.baseOffset, timestamp: T0_MS, value: extra.value! },
    ]);
  });
}

async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

describe("recovery of a damaged log after an unclean stop", () => {
  it("(a) bits flipped inside a record in the middle of the last segment", async () => {
    const w = await writeLog();
    const cut = middleBatchOf(w, w.segmentBases.at(-1)!);
    const path = logPath(w.dir, cut.segmentBase);
    const size = await fileSize(path);
    await flipByte(
      path,
      cut.position + BATCH_HEADER_BYTES + Math.floor((cut.size - BATCH_HEADER_BYTES) / 2),
    );
    await simulateUncleanStop(w.dir, cut.segmentBase);
    await assertRecoveredAt(w, cut, /CRC mismatch/, size);
  });

  it("(b) the last segment torn in the middle of a batch", async () => {
    const w = await writeLog();
    const cut = middleBatchOf(w, w.segmentBases.at(-1)!);
    const path = logPath(w.dir, cut.segmentBase);
    const tornSize = cut.position + Math.floor(cut.size / 2);
    await truncate(path, tornSize);
    await simulateUncleanStop(w.dir, cut.segmentBase);
    await assertRecoveredAt(w, cut, /torn batch/, tornSize);
  });

  it("(b') the last segment torn inside a batch header", async () => {
    const w = await writeLog();
    const cut = middleBatchOf(w, w.segmentBases.at(-1)!);
    const path = logPath(w.dir, cut.segmentBase);
    const tornSize = cut.position + 30;
    await truncate(path, tornSize);
    await simulateUncleanStop(w.dir, cut.segmentBase);
    await assertRecoveredAt(w, cut, /trailing bytes/, tornSize);
  });

  it("(c) a batch length field overwritten with a huge value", async () => {
    const w = await writeLog();
    const cut = middleBatchOf(w, w.segmentBases.at(-1)!);
    const path = logPath(w.dir, cut.segmentBase);
    const size = await fileSize(path);
    const huge = Buffer.alloc(4);
    huge.writeInt32BE(0x7fff_fff0);
    await patchFile(path, cut.position + BATCH_LENGTH_OFFSET, huge);
    await simulateUncleanStop(w.dir, cut.segmentBase);
    await assertRecoveredAt(w, cut, /implausible batch length/, size);
  });

  it("(d) bits flipped in an earlier segment: cut there, later segments deleted", async () => {
    const w = await writeLog();
    const cut = middleBatchOf(w, w.segmentBases[1]!);
    const path = logPath(w.dir, cut.segmentBase);
    const size = await fileSize(path);
    await flipByte(path, cut.position + cut.size - 3);
    // The checkpoint says everything was flushed; a recovery point of 0 makes recovery
    // re-validate the older segments too (as after a crash before the first flush).
    await simulateUncleanStop(w.dir, 0);
    await assertRecoveredAt(w, cut, /CRC mismatch/, size);
    for (const base of w.segmentBases.filter((b) => b > cut.segmentBase)) {
      for (const p of [logPath(w.dir, base), indexPath(w.dir, base), timeIndexPath(w.dir, base)]) {
        await assert.rejects(stat(p), { code: "ENOENT" }, `${p} was deleted`);
      }
    }
  });
});

/** First offset (and its timestamp) with a timestamp ≥ `ts`, by brute force. */
function expectedOffsetFor(records: ExpectedRecord[], ts: number) {
  const r = records.find((x) => x.timestamp >= ts);
  return r === undefined ? undefined : { offset: r.offset, timestamp: r.timestamp };
}

describe("damaged index files after a clean close", () => {
  it("(e) rebuilds missing and garbage indexes; reads and time lookups still work", async () => {
    const w = await writeLog();
    const bases = w.segmentBases;
    const spikeAt = w.records.find((r) => r.timestamp === SPIKE_TS_MS)!.offset;
    const spikeBatch = w.batches.find((b) => b.baseOffset === spikeAt)!;
    const spikeSegment = spikeBatch.segmentBase;
    const spikeSegmentBatches = w.batches.filter((b) => b.segmentBase === spikeSegment);
    // The spike must lie before the segment's last offset-index entry for the check to bite.
    assert.ok(
      spikeSegmentBatches.indexOf(spikeBatch) < spikeSegmentBatches.length - 3,
      "test setup: the spike batch is early in its segment",
    );
    const deletedBoth = bases[0]!;
    const garbage = bases.find((b) => b !== deletedBoth && b !== spikeSegment)!;
    const active = bases.at(-1)!;
    assert.ok(spikeSegment !== active && garbage !== active, "test setup: distinct segments");
    const originals = new Map<string, Buffer>();
    for (const b of bases) {
      for (const p of [indexPath(w.dir, b), timeIndexPath(w.dir, b)]) {
        originals.set(p, await readFile(p));
      }
    }
    await unlink(indexPath(w.dir, deletedBoth));
    await unlink(timeIndexPath(w.dir, deletedBoth));
    await unlink(timeIndexPath(w.dir, spikeSegment));
    await writeFile(indexPath(w.dir, garbage), Buffer.from("not an index!")); // 13 bytes
    const backwards = Buffer.alloc(24);
    backwards.writeBigInt64BE(BigInt(T0_MS + 5000), 0);
    backwards.writeBigInt64BE(BigInt(T0_MS), 12);
    await writeFile(timeIndexPath(w.dir, garbage), backwards);
    const activeIndex = originals.get(indexPath(w.dir, active))!;
    assert.ok(activeIndex.length >= 8, "test setup: the active segment has index entries");
    await writeFile(indexPath(w.dir, active), activeIndex.subarray(0, activeIndex.length - 3));

    const lines: CapturedLine[] = [];
    await withLog(
      w.dir,
      async (log) => {
        assert.deepEqual(log.segmentBaseOffsets(), bases);
        assert.equal(log.highWatermark, w.logEndOffset);
        await assertServesExactly(log, w.records);
        for (const b of w.batches) {
          for (const offset of [b.baseOffset, b.lastOffset]) {
            const r = await log.read(offset, 1);
            const [first] = decodeBatches(r.bytes);
            assert.equal(first?.header.baseOffset, b.baseOffset, `point read at ${offset}`);
          }
        }
        const targets = [T0_MS - 1, SPIKE_TS_MS, SPIKE_TS_MS + 1, SPIKE_TS_MS + 1_000_000];
        for (const r of w.records) targets.push(r.timestamp);
        for (const ts of targets) {
          assert.deepEqual(
            await log.offsetForTimestamp(ts),
            expectedOffsetFor(w.records, ts),
            `offsetForTimestamp(${ts})`,
          );
        }
      },
      lines,
    );
    assert.deepEqual(
      lines.filter((l) => l.level === "warn" || l.level === "error"),
      [],
      "intact data is not truncated",
    );

    // The rebuilt files are sound and, for the offset index, byte for byte what appends built.
    for (const b of [deletedBoth, garbage, active]) {
      assert.deepEqual(await readFile(indexPath(w.dir, b)), originals.get(indexPath(w.dir, b)));
    }
    for (const b of [deletedBoth, garbage, spikeSegment]) {
      const rebuilt = await readFile(timeIndexPath(w.dir, b));
      assert.ok(rebuilt.length > 0 && rebuilt.length % 12 === 0, `time index of ${b} rebuilt`);
    }
  });
});

/** A timestamp whose offsetForTimestamp answer is the first record of `batch`. */
function timestampIn(w: WrittenLog, batch: BatchOnDisk): number {
  const ts = w.records[batch.baseOffset]!.timestamp;
  assert.equal(expectedOffsetFor(w.records, ts)?.offset, batch.baseOffset, "test setup");
  return ts;
}

describe("a batch damaged while the log is open", () => {
  const storageError = (err: unknown) => isSamsaError(err, ErrorCode.KAFKA_STORAGE_ERROR);

  it("fails its read with CORRUPT_MESSAGE instead of serving bad bytes", async () => {
    const w = await writeLog();
    await withLog(w.dir, async (log) => {
      await log.flush();
      const older = w.segmentBases[1]!;
      const bad = middleBatchOf(w, older);
      const before = w.batches[w.batches.indexOf(bad) - 1]!;
      assert.equal(before.segmentBase, older);
      await flipByte(logPath(w.dir, older), bad.position + BATCH_HEADER_BYTES + 5);

      // CORRUPT_MESSAGE (permanent, unlike KAFKA_STORAGE_ERROR) naming the batch's offset and,
      // for readers that skip it on purpose, where the next batch starts.
      const next = String(bad.lastOffset + 1);
      const corrupt = (err: unknown) =>
        isSamsaError(err, ErrorCode.CORRUPT_MESSAGE) &&
        err.message.includes(`corrupt batch at offset ${bad.baseOffset} `) &&
        err.metadata?.[NEXT_OFFSET_METADATA_KEY] === next;
      await assert.rejects(log.read(bad.baseOffset, SCAN_READ_BYTES), corrupt);
      await assert.rejects(log.read(bad.lastOffset, 1), corrupt);
      // A read from an earlier batch gets the good batches, stops before the bad one, and the
      // next read (where a consumer continues) fails.
      const r = await log.read(before.baseOffset, SCAN_READ_BYTES);
      const served = decodeBatches(r.bytes);
      assert.ok(served.length >= 1, "the good batches before the bad one are served");
      assert.equal(r.nextOffset, bad.baseOffset);
      assert.ok(
        served.every((b) => b.header.baseOffset < bad.baseOffset),
        "nothing from the bad batch on is served",
      );
      await assert.rejects(log.read(r.nextOffset, SCAN_READ_BYTES), corrupt);
      // A time lookup whose answer lies in the bad batch fails too rather than answering.
      await assert.rejects(log.offsetForTimestamp(timestampIn(w, bad)), isSamsaError);
      // Batches elsewhere are still served.
      const fine = await log.read(w.batches.at(-1)!.baseOffset, 1);
      assert.equal(decodeBatches(fine.bytes).length, 1);
    });
  });

  it("fails its read with KAFKA_STORAGE_ERROR when the length field is damaged", async () => {
    const w = await writeLog();
    await withLog(w.dir, async (log) => {
      const older = w.segmentBases[1]!;
      const bad = middleBatchOf(w, older);
      const huge = Buffer.alloc(4);
      huge.writeInt32BE(0x7fff_fff0);
      await patchFile(logPath(w.dir, older), bad.position + BATCH_LENGTH_OFFSET, huge);

      // Answering from the next segment instead would silently skip the rest of this one.
      await assert.rejects(log.read(bad.baseOffset, SCAN_READ_BYTES), storageError);
      await assert.rejects(log.read(bad.lastOffset, 1), storageError);
      await assert.rejects(log.offsetForTimestamp(timestampIn(w, bad)), isSamsaError);
    });
  });
});

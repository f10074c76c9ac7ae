/**
 * Recovery stops at the recovery point: after a clean shutdown nothing on disk is truncated, and
 * after an unclean one only what lies past the recovery point is re-validated and cut at the
 * first bad batch (Kafka's rule). A batch damaged below the recovery point (a bit flip in old,
 * flushed, acknowledged data) stays on disk and is reported on read with CORRUPT_MESSAGE naming
 * its offset, so that readers can skip it on purpose.
 *
 * The bug this pins: a segment whose offset index had no entries (smaller than
 * `index.interval.bytes`) was rebuilt by a full validating recovery even after a clean shutdown,
 * which cut the log at the first batch failing its CRC and silently dropped acknowledged offsets.
 * Every case runs with an empty offset index (the default 4 KiB interval, small batches) and
 * with a dense one (a 256-byte interval).
 */
import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, stat, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import {
  readPartitionCheckpoint,
  writePartitionCheckpoint,
} from "../../services/broker/log/partition-checkpoint.js";
import { CLEAN_SHUTDOWN_FILE } from "../../services/broker/log/partition-loader.js";
import type { PartitionLog } from "../../services/broker/log/partition-log.js";
import {
  LOG_FILE_SUFFIX,
  OFFSET_INDEX_FILE_SUFFIX,
  segmentFileName,
  TIME_INDEX_FILE_SUFFIX,
} from "../../services/broker/log/segment.js";
import {
  DEFAULT_LOG_CONFIG,
  type LogConfig,
  validateLogConfig,
} from "../../services/shared/config/log-config.js";
import { ErrorCode, isSamsaError, NEXT_OFFSET_METADATA_KEY } from "../../services/shared/errors.js";
import { type CapturedLine, memoryLogger } from "../../services/shared/logger.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";
import { batchSizeBytes, readBatchHeader } from "../../services/shared/record-batch/header.js";
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
} from "../../services/shared/record-batch/layout.js";

const BATCH_COUNT = 10;
const T0_MS = 1_700_000_000_000;

/** The two index shapes every case runs with. */
const SHAPES: ReadonlyArray<{ name: string; config: LogConfig; indexEmpty: boolean }> = [
  {
    name: "empty offset index",
    config: validateLogConfig({ ...DEFAULT_LOG_CONFIG, segmentMs: Number.MAX_SAFE_INTEGER }),
    indexEmpty: true,
  },
  {
    name: "dense offset index",
    config: validateLogConfig({
      ...DEFAULT_LOG_CONFIG,
      indexIntervalBytes: 256,
      segmentMs: Number.MAX_SAFE_INTEGER,
    }),
    indexEmpty: false,
  },
];

interface BatchOnDisk {
  position: number;
  size: number;
  baseOffset: number;
}

interface Written {
  dir: string;
  config: LogConfig;
  values: string[];
  batches: BatchOnDisk[];
  fileBytes: number;
}

let root: string;
let seq = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "samsa-recovery-point-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const logPath = (dir: string) => join(dir, segmentFileName(0, LOG_FILE_SUFFIX));

function openLog(w: { dir: string; config: LogConfig }, lines: CapturedLine[] = []) {
  return FilePartitionLog.open({
    dir: w.dir,
    topic: "t",
    partition: 0,
    config: w.config,
    logger: memoryLogger(lines),
  });
}

/** One record per batch; values long enough for the dense index to get entries. */
async function writeLog(config: LogConfig, indexEmpty: boolean): Promise<Written> {
  const dir = join(root, `p-${seq++}`);
  const log = await openLog({ dir, config });
  const values: string[] = [];
  for (let i = 0; i < BATCH_COUNT; i++) {
    const value = `record ${i} `.padEnd(120, "v");
    values.push(value);
    const r = await log.append(buildBatch([{ value: Buffer.from(value), timestamp: T0_MS + i }]));
    assert.equal(r.baseOffset, i);
  }
  log.setHighWatermark(log.logEndOffset);
  await log.close();
  const buf = await readFile(logPath(dir));
  const batches: BatchOnDisk[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const h = readBatchHeader(buf, pos);
    batches.push({ position: pos, size: batchSizeBytes(h), baseOffset: h.baseOffset });
    pos += batchSizeBytes(h);
  }
  assert.equal(batches.length, BATCH_COUNT);
  const index = await readFile(join(dir, segmentFileName(0, OFFSET_INDEX_FILE_SUFFIX)));
  assert.equal(index.length === 0, indexEmpty, "test setup: the offset index's shape");
  return { dir, config, values, batches, fileBytes: buf.length };
}

/** Inverts one byte inside the records of batch `i` (a bit flip its CRC catches). */
async function damageRecords(w: Written, i: number): Promise<void> {
  const b = w.batches[i]!;
  await flip(logPath(w.dir), b.position + BATCH_HEADER_BYTES + 10);
}

async function flip(path: string, position: number): Promise<void> {
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

/** No clean-shutdown marker, and the checkpoint's recovery point at `recoveryPoint`. */
async function simulateUncleanStop(dir: string, recoveryPoint: number): Promise<void> {
  await unlink(join(dir, CLEAN_SHUTDOWN_FILE));
  const c = await readPartitionCheckpoint(dir);
  await writePartitionCheckpoint(dir, { ...c, recoveryPoint });
}

/** Reads every offset below `end` one by one: good ones served, `damaged` ones reported. */
async function assertServes(
  log: PartitionLog,
  w: Written,
  end: number,
  damaged: readonly number[],
): Promise<void> {
  assert.equal(log.logEndOffset, end, "log end offset");
  for (let offset = 0; offset < end; offset++) {
    if (damaged.includes(offset)) {
      await assert.rejects(
        log.read(offset, 64 * 1024),
        (err: unknown) =>
          isSamsaError(err, ErrorCode.CORRUPT_MESSAGE) &&
          err.message.includes(`corrupt batch at offset ${offset} `) &&
          err.metadata?.[NEXT_OFFSET_METADATA_KEY] === String(offset + 1),
        `offset ${offset} is reported as damaged`,
      );
      continue;
    }
    const r = await log.read(offset, 1);
    const [batch] = decodeBatches(r.bytes);
    assert.equal(batch?.header.baseOffset, offset, `offset ${offset} is served`);
    assert.equal(batch.records[0]!.value!.toString(), w.values[offset]);
  }
}

function problems(lines: CapturedLine[]): CapturedLine[] {
  return lines.filter((l) => l.level === "warn" || l.level === "error");
}

for (const shape of SHAPES) {
  describe(`recovery point (${shape.name})`, () => {
    it("clean shutdown: a batch damaged in old data is kept and reported, nothing is cut", async () => {
      const w = await writeLog(shape.config, shape.indexEmpty);
      await damageRecords(w, 1);
      const lines: CapturedLine[] = [];
      const log = await openLog(w, lines);
      try {
        await assertServes(log, w, BATCH_COUNT, [1]);
        // The log keeps taking appends after its (intact) end.
        const r = await log.append(buildBatch([{ value: Buffer.from("more"), timestamp: T0_MS }]));
        assert.equal(r.baseOffset, BATCH_COUNT);
      } finally {
        await log.close();
      }
      assert.deepEqual(problems(lines), [], "nothing was truncated or rebuilt");
      assert.ok((await stat(logPath(w.dir))).size > w.fileBytes, "the damaged bytes stay");
    });

    it("clean shutdown with lost index files: rebuilt without validating, nothing cut", async () => {
      const w = await writeLog(shape.config, shape.indexEmpty);
      await damageRecords(w, 3);
      await unlink(join(w.dir, segmentFileName(0, OFFSET_INDEX_FILE_SUFFIX)));
      await unlink(join(w.dir, segmentFileName(0, TIME_INDEX_FILE_SUFFIX)));
      const log = await openLog(w);
      try {
        await assertServes(log, w, BATCH_COUNT, [3]);
      } finally {
        await log.close();
      }
      assert.equal((await stat(logPath(w.dir))).size, w.fileBytes);
    });

    it("unclean shutdown, everything flushed: damage below the recovery point stays", async () => {
      const w = await writeLog(shape.config, shape.indexEmpty);
      await damageRecords(w, 1);
      await simulateUncleanStop(w.dir, BATCH_COUNT);
      const log = await openLog(w);
      try {
        await assertServes(log, w, BATCH_COUNT, [1]);
      } finally {
        await log.close();
      }
      assert.equal((await stat(logPath(w.dir))).size, w.fileBytes);
    });

    it("unclean shutdown: damage past the recovery point is cut, below it kept", async () => {
      const w = await writeLog(shape.config, shape.indexEmpty);
      const recoveryPoint = 5;
      await damageRecords(w, 2);
      await damageRecords(w, 7);
      await simulateUncleanStop(w.dir, recoveryPoint);
      const lines: CapturedLine[] = [];
      const log = await openLog(w, lines);
      try {
        await assertServes(log, w, 7, [2]);
      } finally {
        await log.close();
      }
      assert.equal((await stat(logPath(w.dir))).size, w.batches[7]!.position);
      const warnings = problems(lines);
      assert.equal(warnings.length, 1, JSON.stringify(lines));
      assert.match(warnings[0]!.message, /truncat/);
      assert.equal(warnings[0]!.fields.position, w.batches[7]!.position);
      assert.match(String(warnings[0]!.fields.reason), /CRC mismatch/);
    });

    it("unclean shutdown: a torn tail past the recovery point is cut", async () => {
      const w = await writeLog(shape.config, shape.indexEmpty);
      const torn = w.batches[8]!;
      const fh = await open(logPath(w.dir), "r+");
      await fh.truncate(torn.position + Math.floor(torn.size / 2));
      await fh.close();
      await simulateUncleanStop(w.dir, 6);
      const log = await openLog(w);
      try {
        await assertServes(log, w, 8, []);
      } finally {
        await log.close();
      }
      assert.equal((await stat(logPath(w.dir))).size, torn.position);
    });

    it("a damaged length field below the recovery point refuses to open, cutting nothing", async () => {
      const w = await writeLog(shape.config, shape.indexEmpty);
      // The last batch: the tail walk from the last index entry meets it with either index.
      const b = w.batches.at(-1)!;
      const fh = await open(logPath(w.dir), "r+");
      const huge = Buffer.alloc(4);
      huge.writeInt32BE(0x7fff_fff0);
      await fh.write(huge, 0, 4, b.position + BATCH_LENGTH_OFFSET);
      await fh.close();
      await assert.rejects(
        openLog(w),
        (err: unknown) =>
          isSamsaError(err, ErrorCode.KAFKA_STORAGE_ERROR) && /recovery point/.test(err.message),
      );
      assert.equal((await stat(logPath(w.dir))).size, w.fileBytes, "nothing was truncated");
    });
  });
}

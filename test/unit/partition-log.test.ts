/**
 * Unit tests of the partition log storage engine (PartitionLog, and LogManager on top of it),
 * against real files in a temporary directory per test. Every expectation is derived from the
 * contract at the top of partition-log.ts, not from the implementation.
 */
import assert from "node:assert/strict";
import { appendFile, type FileHandle, mkdtemp, open, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import {
  DEFAULT_LOG_CONFIG,
  type LogConfig,
  validateLogConfig,
} from "../../services/shared/config/log-config.js";
import { LogManager } from "../../services/broker/log/log-manager.js";
import { readPartitionCheckpoint } from "../../services/broker/log/partition-checkpoint.js";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { PartitionLog } from "../../services/broker/log/partition-log.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { type CapturedLine, memoryLogger, silentLogger } from "../../services/shared/logger.js";
import {
  buildBatch,
  type DecodedBatch,
  decodeBatches,
} from "../../services/shared/record-batch/builder.js";
import type { ProducerRecord } from "../../services/shared/record-batch/records.js";

/** The injected clock starts here (ms); record timestamps default to it. */
const T0_MS = 1_700_000_000_000;
const HOUR_MS = 60 * 60 * 1000;
/** Upper bound on any polled condition in this file. */
const WAIT_FOR_MS_MAX = 10_000;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** A validated config over Kafka's defaults; deleted segment files go at once. */
function logConfig(overrides: Partial<LogConfig> = {}): LogConfig {
  return validateLogConfig({ ...DEFAULT_LOG_CONFIG, fileDeleteDelayMs: 0, ...overrides });
}

interface Harness {
  /** Root temp dir of the test (removed afterwards). */
  root: string;
  /** The partition directory `open` uses by default. */
  dir: string;
  /** The clock every log opened here sees. */
  clock: { ms: number };
  /** Everything the logs opened here logged. */
  lines: CapturedLine[];
  /** Opens the log in `dir` (default: the harness's partition directory). */
  open(overrides?: Partial<LogConfig>, dir?: string): Promise<PartitionLog>;
  /** Leaves `log` open without closing it (an unclean stop); it is only released at cleanup. */
  abandon(log: PartitionLog): void;
}

/** A fresh temp dir with logs that are closed (and the dir removed) after the test. */
async function harness(t: TestContext): Promise<Harness> {
  const root = await mkdtemp(join(tmpdir(), "samsa-partition-log-"));
  const opened: PartitionLog[] = [];
  const abandoned = new Set<PartitionLog>();
  const h: Harness = {
    root,
    dir: join(root, "topic-0"),
    clock: { ms: T0_MS },
    lines: [],
    async open(overrides = {}, dir = h.dir) {
      const log = await FilePartitionLog.open({
        dir,
        topic: "topic",
        partition: 0,
        config: logConfig(overrides),
        logger: memoryLogger(h.lines),
        now: () => h.clock.ms,
      });
      opened.push(log);
      return log;
    },
    abandon(log) {
      abandoned.add(log);
    },
  };
  t.after(async () => {
    for (const log of opened.reverse()) if (!abandoned.has(log)) await log.close();
    // An abandoned log shares its files with its successor, which is closed by now.
    for (const log of abandoned) await log.close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  return h;
}

/** `n` records whose values are `<tag>-<i>` padded with dots to `valueBytes`. */
function records(
  tag: string,
  n: number,
  options: { valueBytes?: number; timestamp?: number } = {},
): ProducerRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    key: Buffer.from(`k-${tag}-${i}`),
    value: Buffer.from(`${tag}-${i}`.padEnd(options.valueBytes ?? 0, ".")),
    timestamp: options.timestamp ?? T0_MS,
  }));
}

/** One batch of `n` records (see {@link records}). */
function batch(
  tag: string,
  n = 1,
  options: { valueBytes?: number; timestamp?: number } = {},
): Buffer {
  return buildBatch(records(tag, n, options));
}

/** Reads `[from, maxOffset)` with as many reads as needed; returns the bytes and the batches. */
async function readRange(
  log: PartitionLog,
  from = log.logStartOffset,
  maxOffset = log.logEndOffset,
): Promise<{ bytes: Buffer; batches: DecodedBatch[] }> {
  const chunks: Buffer[] = [];
  let next = from;
  for (let reads = 0; next < maxOffset; reads++) {
    assert.ok(reads < 100_000, "the read loop must end");
    const r = await log.read(next, 64 * 1024, { maxOffset });
    if (r.bytes.length === 0) break;
    assert.ok(r.nextOffset > next, `a read at ${next} must make progress`);
    chunks.push(Buffer.from(r.bytes));
    next = r.nextOffset;
  }
  const bytes = Buffer.concat(chunks);
  return { bytes, batches: decodeBatches(bytes) };
}

/** `<offset>=<value without its dot padding>` of every record at or after `from`. */
function offsetValues(batches: readonly DecodedBatch[], from = 0): string[] {
  const out: string[] = [];
  for (const b of batches) {
    for (const r of b.records) {
      if (r.offset >= from) {
        out.push(`${r.offset}=${r.value?.toString().replace(/\.+$/, "") ?? "null"}`);
      }
    }
  }
  return out;
}

/** Asserts that `promise` rejects with a SamsaError of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isSamsaError(err), `expected a SamsaError, got ${String(err)}`);
    assert.equal(
      err.code,
      code,
      `expected ${ErrorCode[code]}, got ${ErrorCode[err.code]}: ${err.message}`,
    );
    return true;
  });
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = WAIT_FOR_MS_MAX,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

/** Segment `.log` files in `dir`, sorted, with their sizes. */
async function segmentFiles(dir: string): Promise<Array<{ name: string; size: number }>> {
  const names = (await readdir(dir)).filter((n) => n.endsWith(".log")).sort();
  return Promise.all(
    names.map(async (name) => ({ name, size: (await stat(join(dir, name))).size })),
  );
}

const logFileName = (base: number) => `${String(base).padStart(20, "0")}.log`;

/** Invariant of the contract: logStartOffset ≤ highWatermark ≤ logEndOffset. */
function assertOffsetsOrdered(log: PartitionLog): void {
  const { logStartOffset: s, highWatermark: hw, logEndOffset: leo } = log;
  assert.ok(s <= hw && hw <= leo, `expected start ${s} ≤ HW ${hw} ≤ LEO ${leo}`);
}

/**
 * The FileHandles on which a method (writev, datasync) is called while `body` runs, one entry
 * per call. FileHandle is not exported by node, so its prototype is taken from a handle.
 */
async function fileHandleCalls(
  dir: string,
  method: "writev" | "datasync",
  body: () => Promise<void>,
): Promise<FileHandle[]> {
  const probe = await open(join(dir, "..", "probe"), "w");
  const proto = Object.getPrototypeOf(probe) as Record<string, unknown>;
  await probe.close();
  const original = proto[method] as (...args: unknown[]) => unknown;
  const calls: FileHandle[] = [];
  proto[method] = function (this: FileHandle, ...args: unknown[]) {
    calls.push(this);
    return original.apply(this, args);
  };
  try {
    await body();
  } finally {
    proto[method] = original;
  }
  return calls;
}

/** How many times a FileHandle method is called while `body` runs. */
async function countFileHandleCalls(
  dir: string,
  method: "writev" | "datasync",
  body: () => Promise<void>,
): Promise<number> {
  return (await fileHandleCalls(dir, method, body)).length;
}

// ---------------------------------------------------------------------------------------------
// Appends
// ---------------------------------------------------------------------------------------------

describe("PartitionLog append", () => {
  it("assigns offsets in call order to many concurrent appends, written as one group", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const counts = Array.from({ length: 120 }, (_, i) => 1 + ((i * 7) % 5));
    let results: Array<{ baseOffset: number; lastOffset: number; recordCount: number }> = [];
    const writes = await countFileHandleCalls(h.dir, "writev", async () => {
      results = await Promise.all(
        counts.map((n, i) => log.append(batch(`a${i}`, n, { valueBytes: 400 }))),
      );
    });
    assert.equal(writes, 1, "appends queued together are written with one vectored write");

    let next = 0;
    const expected: string[] = [];
    counts.forEach((n, i) => {
      assert.deepEqual(results[i], { baseOffset: next, lastOffset: next + n - 1, recordCount: n });
      for (let j = 0; j < n; j++) expected.push(`${next + j}=a${i}-${j}`);
      next += n;
    });
    assert.equal(log.logEndOffset, next);
    assert.equal(log.highWatermark, 0, "appends do not move the high watermark");
    assert.deepEqual(offsetValues((await readRange(log)).batches), expected);
  });

  it("resolves a multi-batch append with its whole offset range", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch("first", 2));
    const three = Buffer.concat([batch("x", 1), batch("y", 3), batch("z", 2)]);
    assert.deepEqual(await log.append(three), { baseOffset: 2, lastOffset: 7, recordCount: 6 });
    const { batches } = await readRange(log);
    assert.deepEqual(
      batches.map((b) => [b.header.baseOffset, b.header.lastOffsetDelta]),
      [
        [0, 1],
        [2, 0],
        [3, 2],
        [6, 1],
      ],
    );
  });

  it("stamps base offset and leader epoch, keeping every batch's CRC valid", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch("e0", 2), { leaderEpoch: 0 });
    await log.append(batch("e7", 3), { leaderEpoch: 7 });
    await log.append(batch("e7b", 1)); // default: the log's latest epoch
    const { batches } = await readRange(log); // decodeBatches checks every CRC
    assert.deepEqual(
      batches.map((b) => [b.header.baseOffset, b.header.partitionLeaderEpoch]),
      [
        [0, 0],
        [2, 7],
        [5, 7],
      ],
    );
    assert.equal(log.latestEpoch, 7);
  });
});

// ---------------------------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------------------------

describe("PartitionLog read", () => {
  it("returns whole batches greedily up to maxBytes, at least one", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const sizes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const b = batch(`r${i}`, 3, { valueBytes: 20 + 37 * i });
      sizes.push(b.length);
      await log.append(b);
    }
    log.setHighWatermark(log.logEndOffset);
    // Reading from offset 4 (inside batch 1, offsets 3..5) starts with that whole batch.
    const fromBatch = 1;
    const candidates = [0, 1, sizes[1]! - 1, sizes[1]!, sizes[1]! + sizes[2]! - 1];
    candidates.push(sizes[1]! + sizes[2]!, sizes[1]! + sizes[2]! + sizes[3]! + 5, 1 << 20);
    for (const maxBytes of candidates) {
      const r = await log.read(4, maxBytes);
      const got = decodeBatches(r.bytes); // throws on a split (partial) batch
      let n = 1;
      let total = sizes[fromBatch]!;
      while (fromBatch + n < sizes.length && total + sizes[fromBatch + n]! <= maxBytes) {
        total += sizes[fromBatch + n]!;
        n++;
      }
      assert.equal(got.length, n, `batches for maxBytes ${maxBytes}`);
      assert.equal(r.bytes.length, total, `bytes for maxBytes ${maxBytes}`);
      assert.equal(got[0]!.header.baseOffset, 3, "the batch holding the offset comes first");
      assert.equal(r.nextOffset, 3 + 3 * n);
    }
  });

  it("stops before batches at or past maxOffset, which defaults to the high watermark", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    for (let i = 0; i < 5; i++) await log.append(batch(`hw${i}`, 3)); // offsets 0..14
    const bases = (r: { bytes: Buffer }) => decodeBatches(r.bytes).map((b) => b.header.baseOffset);

    assert.deepEqual(bases(await log.read(0, 1 << 20)), [], "HW 0: nothing visible");
    log.setHighWatermark(9);
    const visible = await log.read(0, 1 << 20);
    assert.deepEqual(bases(visible), [0, 3, 6]);
    assert.equal(visible.nextOffset, 9);
    assert.equal(visible.highWatermark, 9);
    assert.equal(visible.logEndOffset, 15);
    const atHw = await log.read(9, 1 << 20);
    assert.equal(atHw.bytes.length, 0);
    assert.equal(atHw.nextOffset, 9);
    assert.deepEqual(bases(await log.read(9, 1 << 20, { maxOffset: 15 })), [9, 12]);
    assert.deepEqual(bases(await log.read(0, 1 << 20, { maxOffset: 4 })), [0, 3]);
    assert.deepEqual(bases(await log.read(0, 1 << 20, { maxOffset: 1000 })), [0, 3, 6, 9, 12]);
    log.setHighWatermark(7); // inside batch 6..8: that batch starts below it
    assert.deepEqual(bases(await log.read(0, 1 << 20)), [0, 3, 6]);

    log.setHighWatermark(-3);
    assert.equal(log.highWatermark, 0, "clamped up to the log start");
    log.setHighWatermark(1000);
    assert.equal(log.highWatermark, 15, "clamped down to the log end");
  });

  it("answers OFFSET_OUT_OF_RANGE outside [logStart, logEnd] and empty bytes at the end", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    for (let i = 0; i < 6; i++) await log.append(batch(`o${i}`, 2, { valueBytes: 300 }));
    log.setHighWatermark(12);
    await log.deleteRecordsBefore(5);
    assert.equal(log.logStartOffset, 5);

    await rejectsWith(log.read(4, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    await rejectsWith(log.read(0, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    await rejectsWith(log.read(13, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    await rejectsWith(log.read(-1, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    await rejectsWith(log.read(6.5, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    await rejectsWith(log.read(6, -1), ErrorCode.INVALID_REQUEST);

    const first = await log.read(5, 1);
    assert.deepEqual(offsetValues(decodeBatches(first.bytes)), ["4=o2-0", "5=o2-1"]);
    for (const maxOffset of [undefined, 12, 100]) {
      const end = await log.read(12, 1000, { maxOffset });
      assert.equal(end.bytes.length, 0, `read at the log end (maxOffset ${maxOffset})`);
      assert.equal(end.nextOffset, 12);
    }
  });

  it("reads the new batches after a truncation and re-append at the same offsets", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    for (let i = 0; i < 4; i++) await log.append(batch(`old${i}`)); // offsets 0..3
    log.setHighWatermark(4);
    // Sequential reads: each ends at an offset a next read may start from.
    for (let o = 0; o < 4; o++) await log.read(o, 1);
    assert.equal((await log.read(0, 1 << 20)).nextOffset, 4);
    await log.truncateTo(2);
    await log.append(batch("new", 3, { valueBytes: 200 })); // 2..4, one bigger batch
    await log.append(batch("tail")); // 5
    log.setHighWatermark(6);
    for (const o of [2, 3, 4]) {
      const got = offsetValues(decodeBatches((await log.read(o, 1)).bytes));
      assert.deepEqual(got, ["2=new-0", "3=new-1", "4=new-2"], `read at ${o}`);
    }
    assert.deepEqual(offsetValues(decodeBatches((await log.read(5, 1)).bytes)), ["5=tail-0"]);
  });

  it("reads across segment boundaries", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    const expected: string[] = [];
    let offset = 0;
    for (let i = 0; i < 30; i++) {
      const n = 1 + (i % 3);
      await log.append(batch(`s${i}`, n, { valueBytes: 50 + ((i * 31) % 150) }));
      for (let j = 0; j < n; j++) expected.push(`${offset + j}=s${i}-${j}`);
      offset += n;
    }
    log.setHighWatermark(log.logEndOffset);
    assert.ok(log.segmentCount >= 4, `expected several segments, got ${log.segmentCount}`);

    assert.deepEqual(offsetValues((await readRange(log)).batches), expected);
    for (let o = 0; o < log.logEndOffset; o++) {
      const one = decodeBatches((await log.read(o, 1)).bytes);
      assert.equal(one.length, 1, `one batch for maxBytes 1 at ${o}`);
      const b = one[0]!.header;
      assert.ok(b.baseOffset <= o && o <= b.baseOffset + b.lastOffsetDelta, `batch holds ${o}`);
      const all = decodeBatches((await log.read(o, 1 << 20)).bytes);
      const got = offsetValues(all);
      assert.deepEqual(got, expected.slice(b.baseOffset, b.baseOffset + got.length));
    }
    for (const base of log.segmentBaseOffsets()) {
      const r = decodeBatches((await log.read(base, 1)).bytes);
      assert.equal(r[0]!.header.baseOffset, base, `read at segment base ${base}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------------------------

describe("PartitionLog segments", () => {
  it("rolls when the active segment would exceed segment.bytes", async (t) => {
    const h = await harness(t);
    const segmentBytes = 1024;
    const log = await h.open({ segmentBytes });
    const bases = [0];
    let inSegment = 0;
    let offset = 0;
    for (let i = 0; i < 25; i++) {
      const n = 1 + (i % 3);
      const b = batch(`g${i}`, n, { valueBytes: 30 + ((i * 53) % 220) });
      if (inSegment > 0 && inSegment + b.length > segmentBytes) {
        bases.push(offset);
        inSegment = 0;
      }
      inSegment += b.length;
      offset += n;
      await log.append(b);
    }
    assert.deepEqual(log.segmentBaseOffsets(), bases);
    assert.equal(log.segmentCount, bases.length);
    const files = await segmentFiles(h.dir);
    assert.deepEqual(
      files.map((f) => f.name),
      bases.map(logFileName),
    );
    for (const f of files) assert.ok(f.size <= segmentBytes, `${f.name} has ${f.size} bytes`);
    assert.equal(
      files.reduce((n, f) => n + f.size, 0),
      log.sizeBytes,
    );
  });

  it("never accepts a batch larger than segment.bytes that it cannot read back", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    await log.append(batch("small", 2));
    // Kafka rejects such a batch (RecordBatchTooLargeException); accepting it is fine only if
    // it is served and survives a reopen like any other acknowledged batch.
    const big = batch("big", 1, { valueBytes: 1500 });
    const accepted = await log.append(big).then(
      () => true,
      (err: unknown) => {
        assert.ok(isSamsaError(err, ErrorCode.MESSAGE_TOO_LARGE), String(err));
        return false;
      },
    );
    await log.append(batch("last", 1));
    const expected = accepted
      ? ["0=small-0", "1=small-1", "2=big-0", "3=last-0"]
      : ["0=small-0", "1=small-1", "2=last-0"];
    const leo = expected.length;
    assert.equal(log.logEndOffset, leo);
    assert.deepEqual(offsetValues((await readRange(log, 0, leo)).batches), expected);
    await log.close();

    const reopened = await h.open({ segmentBytes: 1024 });
    assert.equal(reopened.logEndOffset, leo, "a clean reopen keeps every acknowledged batch");
    assert.deepEqual(offsetValues((await readRange(reopened, 0, leo)).batches), expected);
    h.abandon(reopened);
    const recovered = await h.open({ segmentBytes: 1024 });
    assert.equal(recovered.logEndOffset, leo, "and so does recovery");
    assert.deepEqual(offsetValues((await readRange(recovered, 0, leo)).batches), expected);
  });

  it("keeps a batch larger than segment.bytes that ends the log across a reopen", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    await log.append(batch("small", 2));
    const accepted = await log.append(batch("big", 1, { valueBytes: 1500 })).then(
      () => true,
      () => false,
    );
    const leo = log.logEndOffset;
    assert.equal(leo, accepted ? 3 : 2);
    await log.close();
    const reopened = await h.open({ segmentBytes: 1024 });
    assert.equal(reopened.logEndOffset, leo, "the log end never goes back after a clean close");
  });

  it("rolls when the first batch of the active segment is older than segment.ms", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentMs: 60_000 });
    const appendNow = () => log.append(batch(`t${h.clock.ms}`, 1, { timestamp: h.clock.ms }));
    await appendNow();
    h.clock.ms += 60_000;
    await appendNow();
    assert.deepEqual(log.segmentBaseOffsets(), [0], "exactly segment.ms old: no roll yet");
    h.clock.ms += 1;
    await appendNow();
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2]);
    await appendNow();
    assert.deepEqual(log.segmentBaseOffsets(), [0, 2], "the new segment is young");
  });

  it("roll() starts a new segment at the log end, and is a no-op on an empty one", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.roll();
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    await log.append(batch("a", 3));
    await log.roll();
    await log.roll();
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3]);
    await log.append(batch("b", 2));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3]);
    assert.deepEqual(
      (await segmentFiles(h.dir)).map((f) => f.name),
      [0, 3].map(logFileName),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Offset for timestamp
// ---------------------------------------------------------------------------------------------

describe("PartitionLog offsetForTimestamp", () => {
  for (const indexIntervalBytes of [0, 4096]) {
    it(`finds the first record at or after a timestamp (index.interval.bytes ${indexIntervalBytes})`, async (t) => {
      const h = await harness(t);
      const log = await h.open({ segmentBytes: 1024, indexIntervalBytes });
      // Record k (offset k) has timestamp T0 + 10k; batches of 3 records.
      for (let i = 0; i < 8; i++) {
        const recs = records(`ts${i}`, 3, { valueBytes: 100 });
        recs.forEach((r, j) => {
          r.timestamp = T0_MS + 10 * (3 * i + j);
        });
        await log.append(buildBatch(recs));
      }
      assert.ok(log.segmentCount > 2);
      log.setHighWatermark(24);
      const at = (k: number) => ({ offset: k, timestamp: T0_MS + 10 * k });

      assert.deepEqual(await log.offsetForTimestamp(T0_MS + 50), at(5), "exact");
      assert.deepEqual(await log.offsetForTimestamp(T0_MS + 55), at(6), "between");
      assert.deepEqual(await log.offsetForTimestamp(T0_MS + 120), at(12), "exact, later segment");
      assert.deepEqual(await log.offsetForTimestamp(T0_MS - HOUR_MS), at(0), "before all");
      assert.deepEqual(await log.offsetForTimestamp(T0_MS + 230), at(23), "the last record");
      assert.equal(await log.offsetForTimestamp(T0_MS + 231), undefined, "after all");

      log.setHighWatermark(13);
      assert.deepEqual(await log.offsetForTimestamp(T0_MS + 115), at(12));
      assert.equal(await log.offsetForTimestamp(T0_MS + 125), undefined, "offset 13 ≥ HW");
      assert.equal(await log.offsetForTimestamp(T0_MS + 200), undefined, "beyond HW");
      assert.deepEqual(await log.offsetForTimestamp(T0_MS + 200, { maxOffset: 24 }), at(20));

      await log.deleteRecordsBefore(4);
      assert.deepEqual(await log.offsetForTimestamp(T0_MS), at(4), "never below the log start");
    });
  }
});

describe("PartitionLog offsetForTimestamp after a reopen", () => {
  it("still finds a record whose batch was written after the time index filled up", async (t) => {
    const h = await harness(t);
    // 48-byte indexes: 4 time-index entries; every batch after the first is indexed.
    const config = { segmentIndexBytes: 48, indexIntervalBytes: 0 };
    const log = await h.open(config);
    h.clock.ms = T0_MS + 1000;
    // One group write; batch 5 carries the largest timestamp, after the time index is full.
    const deltas = [1, 2, 3, 4, 5, 100, 6, 7, 8, 9];
    await Promise.all(
      deltas.map((d, i) => log.append(batch(`ts${i}`, 1, { timestamp: T0_MS + d }))),
    );
    log.setHighWatermark(10);
    const expected = { offset: 5, timestamp: T0_MS + 100 };
    assert.deepEqual(await log.offsetForTimestamp(T0_MS + 50), expected);
    await log.close();
    const reopened = await h.open(config);
    assert.deepEqual(await reopened.offsetForTimestamp(T0_MS + 50), expected, "clean reopen");
  });
});

// ---------------------------------------------------------------------------------------------
// Truncation and leader epochs
// ---------------------------------------------------------------------------------------------

describe("PartitionLog truncateTo", () => {
  /** Batches of 3 records, 400-byte values: two batches per 1 KiB segment. */
  async function threeRecordBatches(h: Harness, count: number): Promise<PartitionLog> {
    const log = await h.open({ segmentBytes: 1024 });
    for (let i = 0; i < count; i++) await log.append(batch(`b${i}`, 3, { valueBytes: 100 }));
    return log;
  }

  it("cuts mid-segment at a batch boundary and continues from there", async (t) => {
    const h = await harness(t);
    const log = await threeRecordBatches(h, 6); // offsets 0..17
    log.setHighWatermark(18);
    const before = await readRange(log, 0, 18);
    await log.truncateTo(12);
    assert.equal(log.logEndOffset, 12);
    assert.equal(log.highWatermark, 12, "HW is clamped to the new log end");
    assertOffsetsOrdered(log);
    assert.deepEqual(
      offsetValues((await readRange(log)).batches),
      offsetValues(before.batches).slice(0, 12),
    );
    await rejectsWith(log.read(13, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    assert.deepEqual(await log.append(batch("new", 2)), {
      baseOffset: 12,
      lastOffset: 13,
      recordCount: 2,
    });
    await log.truncateTo(100);
    assert.equal(log.logEndOffset, 14, "truncating at or past the end changes nothing");
  });

  it("removes a whole batch holding the target offset (the end may land below it)", async (t) => {
    const h = await harness(t);
    const log = await threeRecordBatches(h, 4); // batches 0-2, 3-5, 6-8, 9-11
    await log.truncateTo(7);
    assert.equal(log.logEndOffset, 6, "batch 6..8 holds 7: it goes entirely");
    assert.deepEqual(
      offsetValues((await readRange(log)).batches).map((v) => v.split("=")[0]),
      ["0", "1", "2", "3", "4", "5"],
    );
    assert.equal((await log.append(batch("again"))).baseOffset, 6);
  });

  it("cuts at a segment boundary, dropping the later segments and their files", async (t) => {
    const h = await harness(t);
    const log = await threeRecordBatches(h, 7);
    const bases = log.segmentBaseOffsets();
    assert.ok(bases.length >= 3, `segments ${bases}`);
    const cut = bases[1]!;
    await log.truncateTo(cut);
    assert.equal(log.logEndOffset, cut);
    assert.deepEqual(log.segmentBaseOffsets(), [0]);
    await waitFor("removed segment files to go", async () => {
      const names = await readdir(h.dir);
      return (
        names.every((n) => !n.includes(".deleted")) && (await segmentFiles(h.dir)).length === 1
      );
    });
    assert.deepEqual(
      (await segmentFiles(h.dir)).map((f) => f.name),
      [logFileName(0)],
    );
    assert.equal((await log.append(batch("c"))).baseOffset, cut);

    await log.close();
    const reopened = await h.open({ segmentBytes: 1024 });
    assert.equal(reopened.logEndOffset, cut + 1, "the truncation survives a reopen");
  });

  it("below the log start empties the log and starts it at the target", async (t) => {
    const h = await harness(t);
    const log = await threeRecordBatches(h, 6);
    log.setHighWatermark(18);
    await log.deleteRecordsBefore(9);
    await log.truncateTo(4);
    assert.equal(log.logStartOffset, 4);
    assert.equal(log.logEndOffset, 4);
    assert.equal(log.highWatermark, 4);
    assert.deepEqual(log.epochEntries(), []);
    assert.equal((await readRange(log, 4, 100)).bytes.length, 0);
    assert.equal((await log.append(batch("restart"), { leaderEpoch: 2 })).baseOffset, 4);
    assert.deepEqual(log.epochEntries(), [{ epoch: 2, startOffset: 4 }]);
  });

  it("releases the files of the segments a full truncation replaces", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    // Every flush fsyncs the active segment's log file: that is how its handle is found.
    const handles = await fileHandleCalls(h.dir, "datasync", async () => {
      for (let i = 0; i < 10; i++) {
        await log.append(batch(`cycle${i}`, 2));
        await log.flush();
        await log.truncateTo(0); // empties the log; the new segment has the same base offset
      }
    });
    const segmentHandles = new Set(handles);
    assert.equal(segmentHandles.size, 10, "one log file handle per cycle");
    // Holding the handles here keeps the garbage collector from closing them behind our back.
    const stillOpen = () => [...segmentHandles].filter((fh) => fh.fd !== -1).length;
    await waitFor("the replaced segments' files to be closed", () => stillOpen() === 0, 2000);
  });

  it("truncateFullyAndStartAt above the high watermark keeps start ≤ HW ≤ LEO", async (t) => {
    const h = await harness(t);
    const log = await threeRecordBatches(h, 3);
    log.setHighWatermark(3);
    await log.truncateFullyAndStartAt(100);
    assert.equal(log.logStartOffset, 100);
    assert.equal(log.logEndOffset, 100);
    assert.equal(log.highWatermark, 100, "an empty log's HW is its log end");
    assertOffsetsOrdered(log);
  });

  it("inside the batch that holds the log start keeps start ≤ HW ≤ LEO", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch("ten", 10)); // one batch, offsets 0..9
    log.setHighWatermark(10);
    await log.deleteRecordsBefore(5);
    await log.truncateTo(7); // the batch holds 7, so it goes, and with it the log start
    assertOffsetsOrdered(log);
    assert.ok(log.logEndOffset <= 7, "Kafka's rule: nothing at or past 7 remains");
    const r = await log.append(batch("after", 2));
    assert.ok(r.baseOffset >= log.logStartOffset, `appended at ${r.baseOffset}`);
    log.setHighWatermark(log.logEndOffset);
    assert.deepEqual(offsetValues((await readRange(log)).batches, log.logStartOffset), [
      `${r.baseOffset}=after-0`,
      `${r.baseOffset + 1}=after-1`,
    ]);
  });

  it("truncates the leader-epoch cache with the log", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch("e1a", 3), { leaderEpoch: 1 }); // 0..2
    await log.append(batch("e1b", 3), { leaderEpoch: 1 }); // 3..5
    await log.append(batch("e3", 3), { leaderEpoch: 3 }); // 6..8
    await log.append(batch("e4", 3), { leaderEpoch: 4 }); // 9..11
    assert.deepEqual(log.epochEntries(), [
      { epoch: 1, startOffset: 0 },
      { epoch: 3, startOffset: 6 },
      { epoch: 4, startOffset: 9 },
    ]);
    assert.deepEqual(log.endOffsetForEpoch(1), { epoch: 1, endOffset: 6 });
    assert.deepEqual(log.endOffsetForEpoch(2), { epoch: 1, endOffset: 6 });
    assert.deepEqual(log.endOffsetForEpoch(3), { epoch: 3, endOffset: 9 });
    assert.deepEqual(log.endOffsetForEpoch(4), { epoch: 4, endOffset: 12 });
    assert.deepEqual(log.endOffsetForEpoch(5), { epoch: -1, endOffset: -1 });
    assert.deepEqual(log.endOffsetForEpoch(0), { epoch: 0, endOffset: 0 });

    await log.truncateTo(7);
    assert.equal(log.logEndOffset, 6);
    assert.deepEqual(log.epochEntries(), [{ epoch: 1, startOffset: 0 }]);
    assert.equal(log.latestEpoch, 1);
    assert.deepEqual(log.endOffsetForEpoch(1), { epoch: 1, endOffset: 6 });
    assert.deepEqual(log.endOffsetForEpoch(3), { epoch: -1, endOffset: -1 });

    await rejectsWith(
      log.append(batch("stale"), { leaderEpoch: 0 }),
      ErrorCode.FENCED_LEADER_EPOCH,
    );
    assert.equal(log.logEndOffset, 6, "a fenced append writes nothing");
    await log.append(batch("e2", 2), { leaderEpoch: 2 });
    assert.deepEqual(log.epochEntries(), [
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 6 },
    ]);
    await rejectsWith(
      log.append(batch("stale1"), { leaderEpoch: 1 }),
      ErrorCode.FENCED_LEADER_EPOCH,
    );

    await log.close();
    const reopened = await h.open();
    assert.deepEqual(reopened.epochEntries(), [
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 6 },
    ]);
    assert.deepEqual(reopened.endOffsetForEpoch(1), { epoch: 1, endOffset: 6 });
  });

  it("fences an older epoch even when it is queued behind a newer one", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const [newer, older] = await Promise.allSettled([
      log.append(batch("epoch5", 2), { leaderEpoch: 5 }),
      log.append(batch("epoch3", 2), { leaderEpoch: 3 }),
    ]);
    assert.equal(newer.status, "fulfilled");
    assert.equal(older.status, "rejected", "epoch 3 written after epoch 5 must be fenced");
    assert.ok(isSamsaError(older.reason, ErrorCode.FENCED_LEADER_EPOCH), String(older.reason));
    assert.equal(log.logEndOffset, 2);
    const epochs = (await readRange(log, 0, 100)).batches.map((b) => b.header.partitionLeaderEpoch);
    assert.deepEqual(epochs, [5], "the log's epochs never go backwards");
  });
});

// ---------------------------------------------------------------------------------------------
// Follower appends
// ---------------------------------------------------------------------------------------------

describe("PartitionLog appendAsFollower", () => {
  it("keeps the leader's offsets, epochs and bytes", async (t) => {
    const h = await harness(t);
    const leader = await h.open({ segmentBytes: 1024 });
    await leader.append(batch("l0", 3, { valueBytes: 200 }), { leaderEpoch: 2 });
    await leader.append(batch("l1", 2, { valueBytes: 200 }), { leaderEpoch: 2 });
    await leader.append(batch("l2", 4, { valueBytes: 200 }), { leaderEpoch: 5 });
    await leader.append(batch("l3", 1, { valueBytes: 200 }), { leaderEpoch: 6 });
    const { bytes } = await readRange(leader, 0, leader.logEndOffset);

    const follower = await h.open({ segmentBytes: 1024 }, join(h.root, "follower-0"));
    // Two fetches' worth: the first two batches, then the rest.
    const firstTwo = decodeBatches(bytes).slice(0, 2);
    const split = firstTwo.reduce((n, b) => n + b.header.batchLength + 12, 0);
    assert.deepEqual(await follower.appendAsFollower(Buffer.from(bytes.subarray(0, split))), {
      baseOffset: 0,
      lastOffset: 4,
      recordCount: 5,
    });
    assert.deepEqual(await follower.appendAsFollower(Buffer.from(bytes.subarray(split))), {
      baseOffset: 5,
      lastOffset: 9,
      recordCount: 5,
    });
    assert.equal(follower.logEndOffset, 10);
    assert.deepEqual(follower.epochEntries(), leader.epochEntries());
    assert.ok((await readRange(follower, 0, 10)).bytes.equals(bytes), "bytes kept as sent");

    // A gap forward (e.g. a compacted leader) is accepted; the log end follows the leader.
    const later = buildBatch(records("gap", 2), { baseOffset: 20, partitionLeaderEpoch: 6 });
    assert.deepEqual(await follower.appendAsFollower(later), {
      baseOffset: 20,
      lastOffset: 21,
      recordCount: 2,
    });
    assert.equal(follower.logEndOffset, 22);
  });

  it("rejects offsets behind the log end and leaves the log unchanged", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.appendAsFollower(
      buildBatch(records("f", 5), { baseOffset: 0, partitionLeaderEpoch: 1 }),
    );
    const before = await readRange(log, 0, 5);

    const behind = buildBatch(records("behind", 2), { baseOffset: 4, partitionLeaderEpoch: 1 });
    await rejectsWith(log.appendAsFollower(behind), ErrorCode.OFFSET_OUT_OF_RANGE);
    const backwards = Buffer.concat([
      buildBatch(records("b1", 2), { baseOffset: 10, partitionLeaderEpoch: 1 }),
      buildBatch(records("b2", 2), { baseOffset: 8, partitionLeaderEpoch: 1 }),
    ]);
    await rejectsWith(log.appendAsFollower(backwards), ErrorCode.CORRUPT_MESSAGE);

    assert.equal(log.logEndOffset, 5);
    assert.ok((await readRange(log, 0, 5)).bytes.equals(before.bytes));
    const next = buildBatch(records("next", 1), { baseOffset: 5, partitionLeaderEpoch: 2 });
    assert.equal((await log.appendAsFollower(next)).baseOffset, 5);
    assert.deepEqual(log.epochEntries(), [
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 5 },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// DeleteRecords
// ---------------------------------------------------------------------------------------------

describe("PartitionLog deleteRecordsBefore", () => {
  /** Twelve 1-record batches of ~330 bytes: segments [0-2] [3-5] [6-8] [9-11]. */
  async function twelve(h: Harness): Promise<PartitionLog> {
    const log = await h.open({ segmentBytes: 1024 });
    for (let i = 0; i < 12; i++) await log.append(batch(`d${i}`, 1, { valueBytes: 250 }));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3, 6, 9]);
    return log;
  }

  it("raises the log start, up to the high watermark, removing whole segments below it", async (t) => {
    const h = await harness(t);
    const log = await twelve(h);
    log.setHighWatermark(8);
    await rejectsWith(log.deleteRecordsBefore(9), ErrorCode.OFFSET_OUT_OF_RANGE);
    await rejectsWith(log.deleteRecordsBefore(-1), ErrorCode.OFFSET_OUT_OF_RANGE);
    assert.equal(log.logStartOffset, 0);

    assert.equal(await log.deleteRecordsBefore(4), 4);
    assert.equal(log.logStartOffset, 4);
    assert.deepEqual(log.segmentBaseOffsets(), [3, 6, 9]);
    assert.deepEqual(log.epochEntries(), [{ epoch: 0, startOffset: 4 }]);
    await rejectsWith(log.read(3, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);
    assert.deepEqual(offsetValues((await readRange(log, 4, 8)).batches), [
      "4=d4-0",
      "5=d5-0",
      "6=d6-0",
      "7=d7-0",
    ]);
    assert.equal(await log.deleteRecordsBefore(2), 4, "never lowers the log start");
    assert.equal(await log.deleteRecordsBefore(8), 8);
    assert.deepEqual(log.segmentBaseOffsets(), [6, 9]);
    await waitFor("deleted segment files to go", async () =>
      (await readdir(h.dir)).every((n) => !n.includes(".deleted")),
    );
    assert.deepEqual(
      (await segmentFiles(h.dir)).map((f) => f.name),
      [6, 9].map(logFileName),
    );

    await log.close();
    const reopened = await h.open({ segmentBytes: 1024 });
    assert.equal(reopened.logStartOffset, 8, "the log start survives a clean reopen");
    assert.equal(reopened.highWatermark, 8);
    await rejectsWith(reopened.read(7, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);

    reopened.setHighWatermark(12);
    await reopened.deleteRecordsBefore(10);
    h.abandon(reopened);
    const afterCrash = await h.open({ segmentBytes: 1024 });
    assert.equal(afterCrash.logStartOffset, 10, "and an unclean one");
    assert.deepEqual(afterCrash.segmentBaseOffsets(), [9]);
  });

  it("at the log end rolls and removes every old segment", async (t) => {
    const h = await harness(t);
    const log = await twelve(h);
    log.setHighWatermark(12);
    assert.equal(await log.deleteRecordsBefore(12), 12);
    assert.deepEqual(log.segmentBaseOffsets(), [12]);
    assert.equal((await log.read(12, 1000)).bytes.length, 0);
    assert.equal((await log.append(batch("fresh"))).baseOffset, 12);
  });
});

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

describe("PartitionLog retention", () => {
  it("deletes segments older than retention.ms, never the active one nor any at/above HW", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024, retentionMs: HOUR_MS });
    // Segments [0-2] [3-5] hold old records (T0), [6-8] [9-11] new ones (T0 + 10 h).
    for (let i = 0; i < 12; i++) {
      const timestamp = i < 6 ? T0_MS : T0_MS + 10 * HOUR_MS;
      await log.append(batch(`k${i}`, 1, { valueBytes: 250, timestamp }));
    }
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3, 6, 9]);
    h.clock.ms = T0_MS + 10 * HOUR_MS + 1;

    assert.equal(await log.enforceRetention(), 0, "HW 0: nothing is deletable");
    log.setHighWatermark(4);
    assert.equal(await log.enforceRetention(), 1, "[3-5] reaches past the HW");
    assert.deepEqual(log.segmentBaseOffsets(), [3, 6, 9]);
    assert.equal(log.logStartOffset, 3);

    log.setHighWatermark(12);
    assert.equal(await log.enforceRetention(), 1, "[6-8] is too young");
    assert.deepEqual(log.segmentBaseOffsets(), [6, 9]);
    assert.equal(log.logStartOffset, 6);
    await rejectsWith(log.read(5, 1000), ErrorCode.OFFSET_OUT_OF_RANGE);

    assert.equal(await log.enforceRetention(T0_MS + 100 * HOUR_MS), 1, "all old now");
    assert.deepEqual(log.segmentBaseOffsets(), [9], "the active segment stays");
    assert.equal(log.logStartOffset, 9);
    assert.equal(log.logEndOffset, 12);
    assert.deepEqual(
      offsetValues((await readRange(log)).batches).map((v) => v.split("=")[0]),
      ["9", "10", "11"],
    );
  });

  it("deletes the oldest segments while the log exceeds retention.bytes", async (t) => {
    const h = await harness(t);
    const tag = (i: number) => `z${String(i).padStart(2, "0")}`;
    const one = batch(tag(0), 1, { valueBytes: 250 }).length;
    const log = await h.open({ segmentBytes: 1024, retentionMs: -1, retentionBytes: 7 * one });
    for (let i = 0; i < 13; i++) await log.append(batch(tag(i), 1, { valueBytes: 250 }));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3, 6, 9, 12]);
    assert.equal(log.sizeBytes, 13 * one);

    log.setHighWatermark(5);
    assert.equal(await log.enforceRetention(h.clock.ms + 1000 * HOUR_MS), 1);
    assert.deepEqual(log.segmentBaseOffsets(), [3, 6, 9, 12], "[3-5] reaches past the HW");

    log.setHighWatermark(13);
    assert.equal(await log.enforceRetention(), 1);
    assert.deepEqual(log.segmentBaseOffsets(), [6, 9, 12]);
    assert.equal(log.sizeBytes, 7 * one);
    assert.equal(log.logStartOffset, 6);
    assert.equal(await log.enforceRetention(), 0, "within the limit now");
  });
});

// ---------------------------------------------------------------------------------------------
// Flushing
// ---------------------------------------------------------------------------------------------

describe("PartitionLog flush", () => {
  it("flushes after flush.messages messages, advancing the checkpointed recovery point", async (t) => {
    const h = await harness(t);
    const log = await h.open({ flushMessages: 5 });
    // A no-op truncation runs on the write queue after everything queued before it.
    const recoveryPoint = async () => {
      await log.truncateTo(log.logEndOffset);
      return (await readPartitionCheckpoint(h.dir)).recoveryPoint;
    };
    for (let i = 0; i < 4; i++) await log.append(batch(`f${i}`));
    assert.equal(await recoveryPoint(), 0, "4 messages: not yet");
    await log.append(batch("f4"));
    assert.equal(await recoveryPoint(), 5);
    await log.append(batch("f5", 3));
    assert.equal(await recoveryPoint(), 5);
    await log.append(batch("f6", 2));
    assert.equal(await recoveryPoint(), 10);
  });

  it("acknowledges an append that reaches flush.messages only once it is flushed", async (t) => {
    const h = await harness(t);
    const log = await h.open({ flushMessages: 1 });
    // Kafka flushes inside the append, before the produce response.
    await log.append(batch("durable", 2));
    assert.equal((await readPartitionCheckpoint(h.dir)).recoveryPoint, 2);
  });

  it("flushes on flush.ms by the log's clock", async (t) => {
    const h = await harness(t);
    const log = await h.open({ flushMs: 1000 });
    await log.append(batch("x", 3));
    assert.equal(await log.maybeFlush(T0_MS + 999), false);
    assert.equal((await readPartitionCheckpoint(h.dir)).recoveryPoint, 0);
    assert.equal(await log.maybeFlush(T0_MS + 1000), true);
    assert.equal((await readPartitionCheckpoint(h.dir)).recoveryPoint, 3);
  });

  it("in strict mode fsyncs once per group commit, and not otherwise", async (t) => {
    const h = await harness(t);
    const strict = await h.open({ flushStrict: true });
    const syncs = await countFileHandleCalls(h.dir, "datasync", async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => strict.append(batch(`s${i}`))));
    });
    assert.equal(syncs, 1, "20 concurrent appends, one group, one fsync");
    const oneByOne = await countFileHandleCalls(h.dir, "datasync", async () => {
      for (let i = 0; i < 3; i++) await strict.append(batch(`t${i}`));
    });
    assert.equal(oneByOne, 3);
    await strict.close();

    const lazy = await h.open({ flushStrict: false });
    const none = await countFileHandleCalls(h.dir, "datasync", async () => {
      await Promise.all(Array.from({ length: 5 }, (_, i) => lazy.append(batch(`l${i}`))));
    });
    assert.equal(none, 0);
    assert.equal(lazy.logEndOffset, 28);
  });
});

// ---------------------------------------------------------------------------------------------
// Reopening
// ---------------------------------------------------------------------------------------------

describe("PartitionLog reopen", () => {
  /** A log with several segments, a raised log start, a HW and three epochs. */
  async function populated(h: Harness): Promise<PartitionLog> {
    const log = await h.open({ segmentBytes: 1024 });
    for (let i = 0; i < 20; i++) {
      await log.append(batch(`p${i}`, 1 + (i % 4), { valueBytes: 40 + ((i * 41) % 150) }), {
        leaderEpoch: Math.floor(i / 7) + 1,
      });
    }
    log.setHighWatermark(30);
    await log.deleteRecordsBefore(7);
    log.setHighWatermark(33);
    return log;
  }

  it("close + reopen preserves offsets, epochs and every byte", async (t) => {
    const h = await harness(t);
    const log = await populated(h);
    const state = {
      start: log.logStartOffset,
      hw: log.highWatermark,
      leo: log.logEndOffset,
      epochs: log.epochEntries(),
      bases: log.segmentBaseOffsets(),
    };
    const bytes = (await readRange(log)).bytes;
    await log.close();
    h.lines.length = 0;

    const reopened = await h.open({ segmentBytes: 1024 });
    assert.deepEqual(
      {
        start: reopened.logStartOffset,
        hw: reopened.highWatermark,
        leo: reopened.logEndOffset,
        epochs: reopened.epochEntries(),
        bases: reopened.segmentBaseOffsets(),
      },
      state,
    );
    assert.ok((await readRange(reopened)).bytes.equals(bytes), "data bytes identical");
    const opened = h.lines.find((l) => l.message === "opened partition log");
    assert.equal(opened?.fields.recovered, false, "a clean close skips recovery");
    assert.equal((await reopened.append(batch("more"))).baseOffset, state.leo);
  });

  it("recovers all flushed data after an unclean stop", async (t) => {
    const h = await harness(t);
    const log = await populated(h);
    await log.flush();
    const flushedHw = log.highWatermark;
    await log.append(batch("unflushed", 3), { leaderEpoch: 9 });
    log.setHighWatermark(log.logEndOffset);
    const leo = log.logEndOffset;
    const bytes = (await readRange(log)).bytes;
    const start = log.logStartOffset;
    h.abandon(log);
    h.lines.length = 0;

    const again = await h.open({ segmentBytes: 1024 });
    const opened = h.lines.find((l) => l.message === "opened partition log");
    assert.equal(opened?.fields.recovered, true);
    // Nothing was lost by the OS, so even the unflushed tail is still there.
    assert.equal(again.logEndOffset, leo);
    assert.equal(again.logStartOffset, start);
    assert.ok(again.highWatermark >= flushedHw && again.highWatermark <= leo);
    assert.ok((await readRange(again, start, leo)).bytes.equals(bytes), "data bytes identical");
    assert.equal(again.latestEpoch, 9);
    assert.equal((await again.append(batch("next"), { leaderEpoch: 9 })).baseOffset, leo);
  });

  it("keeps the epoch cache in step with the data after truncate, re-append, unclean stop", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch("e1", 5), { leaderEpoch: 1 }); // 0..4
    await log.append(batch("e5", 5), { leaderEpoch: 5 }); // 5..9, diverged from the new leader
    await log.flush();
    // As a follower: cut the divergent tail, then fetch the new leader's epoch-3 records.
    await log.truncateTo(5);
    const e3 = buildBatch(records("e3", 3), { baseOffset: 5, partitionLeaderEpoch: 3 });
    await log.appendAsFollower(e3);
    const epochs = [
      { epoch: 1, startOffset: 0 },
      { epoch: 3, startOffset: 5 },
    ];
    assert.deepEqual(log.epochEntries(), epochs);
    h.abandon(log);

    const again = await h.open();
    assert.equal(again.logEndOffset, 8);
    assert.deepEqual(again.epochEntries(), epochs, "epoch 5 no longer exists in the log");
    assert.deepEqual(again.endOffsetForEpoch(3), { epoch: 3, endOffset: 8 });
    assert.equal((await again.append(batch("e4"), { leaderEpoch: 4 })).baseOffset, 8);
  });

  it("cuts a torn or corrupt tail after an unclean stop", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    for (let i = 0; i < 6; i++) await log.append(batch(`c${i}`, 2, { valueBytes: 100 }));
    await log.flush();
    const leo = log.logEndOffset;
    const bytes = (await readRange(log, 0, leo)).bytes;
    const activeFile = join(h.dir, logFileName(log.segmentBaseOffsets().at(-1)!));
    const activeSize = (await stat(activeFile)).size;
    h.abandon(log);

    // A torn write: the first 40 bytes of a batch.
    await appendFile(activeFile, batch("torn", 2).subarray(0, 40));
    h.lines.length = 0;
    const afterTear = await h.open({ segmentBytes: 1024 });
    assert.equal(afterTear.logEndOffset, leo);
    assert.ok((await readRange(afterTear, 0, leo)).bytes.equals(bytes));
    assert.equal((await stat(activeFile)).size, activeSize, "the torn bytes are cut");
    const warning = h.lines.find((l) => l.level === "warn");
    assert.equal(warning?.fields.bytesTruncated, 40);
    h.abandon(afterTear);

    // A whole batch whose CRC does not match.
    const bad = batch("bad-crc", 2);
    bad[bad.length - 1] ^= 0xff;
    await appendFile(activeFile, bad);
    h.lines.length = 0;
    const afterCorrupt = await h.open({ segmentBytes: 1024 });
    assert.equal(afterCorrupt.logEndOffset, leo);
    assert.equal((await stat(activeFile)).size, activeSize);
    assert.match(String(h.lines.find((l) => l.level === "warn")?.fields.reason), /CRC/);
    assert.equal((await afterCorrupt.append(batch("ok"))).baseOffset, leo);
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

describe("PartitionLog rejects bad input", () => {
  it("answers CORRUPT_MESSAGE / MESSAGE_TOO_LARGE and leaves the stored data unchanged", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024, maxMessageBytes: 1000 });
    for (let i = 0; i < 5; i++) await log.append(batch(`ok${i}`, 2, { valueBytes: 150 }));
    log.setHighWatermark(log.logEndOffset);
    const snapshot = async () => ({
      leo: log.logEndOffset,
      size: log.sizeBytes,
      bases: log.segmentBaseOffsets(),
      files: await segmentFiles(h.dir),
      bytes: (await readRange(log, 0, 100)).bytes.toString("hex"),
    });
    const before = await snapshot();

    const good = batch("good", 2);
    const badCrc = Buffer.from(good);
    badCrc[badCrc.length - 2] ^= 0x01;
    const badMagic = Buffer.from(good);
    badMagic[16] = 7;
    const cases: Array<[string, Buffer, ErrorCode]> = [
      ["empty buffer", Buffer.alloc(0), ErrorCode.CORRUPT_MESSAGE],
      ["short garbage", Buffer.from("definitely not a record batch"), ErrorCode.CORRUPT_MESSAGE],
      ["wrong magic", badMagic, ErrorCode.CORRUPT_MESSAGE],
      ["wrong CRC", badCrc, ErrorCode.CORRUPT_MESSAGE],
      ["truncated batch", good.subarray(0, good.length - 1), ErrorCode.CORRUPT_MESSAGE],
      [
        "good batch, then garbage",
        Buffer.concat([good, Buffer.from("junk!")]),
        ErrorCode.CORRUPT_MESSAGE,
      ],
      ["good batch, then a bad CRC", Buffer.concat([good, badCrc]), ErrorCode.CORRUPT_MESSAGE],
      ["oversized batch", batch("huge", 1, { valueBytes: 1500 }), ErrorCode.MESSAGE_TOO_LARGE],
      [
        "good batch, then an oversized one",
        Buffer.concat([good, batch("huge2", 1, { valueBytes: 1500 })]),
        ErrorCode.MESSAGE_TOO_LARGE,
      ],
    ];
    for (const [what, buf, code] of cases) {
      await t.test(what, async () => {
        await rejectsWith(log.append(Buffer.from(buf)), code);
        await rejectsWith(log.appendAsFollower(Buffer.from(buf)), code);
        assert.deepEqual(await snapshot(), before);
      });
    }
    assert.equal((await log.append(good)).baseOffset, before.leo, "the log is still usable");
  });
});

// ---------------------------------------------------------------------------------------------
// LogManager
// ---------------------------------------------------------------------------------------------

describe("LogManager", () => {
  async function managerHarness(t: TestContext) {
    const root = await mkdtemp(join(tmpdir(), "samsa-log-manager-"));
    const logDirs = [join(root, "d1"), join(root, "d2")];
    const managers: LogManager[] = [];
    t.after(async () => {
      for (const m of managers) await m.stop();
      await rm(root, { recursive: true, force: true });
    });
    const start = async (options: { retentionCheckIntervalMs?: number } = {}) => {
      const m = new LogManager({
        logDirs,
        defaultConfig: logConfig({ segmentBytes: 1024, retentionMs: 60_000 }),
        logger: silentLogger(),
        ...options,
      });
      managers.push(m);
      await m.start();
      return m;
    };
    return { logDirs, start };
  }

  const dirOf = (log: PartitionLog) => join(log.dir, "..");

  it("spreads partitions over both dirs and finds them all after a restart", async (t) => {
    const { logDirs, start } = await managerHarness(t);
    const m = await start();
    const placed = new Map<string, string>();
    for (let p = 0; p < 4; p++) {
      const log = await m.getOrCreateLog("my-topic", p);
      await log.append(batch(`m${p}`, p + 1));
      placed.set(`my-topic-${p}`, dirOf(log));
    }
    const perDir = logDirs.map((d) => [...placed.values()].filter((x) => x === d).length);
    assert.deepEqual(perDir, [2, 2]);
    assert.equal(
      await m.getOrCreateLog("my-topic", 0),
      m.getLog("my-topic", 0),
      "an existing log is returned",
    );
    await m.stop();

    const again = await start();
    assert.equal(again.allLogs().length, 4);
    for (let p = 0; p < 4; p++) {
      const log = again.getLog("my-topic", p);
      assert.ok(log, `my-topic-${p} found after restart`);
      assert.equal(dirOf(log), placed.get(`my-topic-${p}`));
      assert.equal(log.logEndOffset, p + 1);
      assert.deepEqual(offsetValues((await readRange(log, 0, p + 1)).batches), [
        ...Array.from({ length: p + 1 }, (_, i) => `${i}=m${p}-${i}`),
      ]);
    }
  });

  it("spreads partitions created concurrently over both dirs", async (t) => {
    const { logDirs, start } = await managerHarness(t);
    const m = await start();
    const logs = await Promise.all([0, 1, 2, 3].map((p) => m.getOrCreateLog("burst", p)));
    const perDir = logDirs.map((d) => logs.filter((l) => dirOf(l) === d).length);
    assert.deepEqual(perDir, [2, 2], `placed in ${logs.map((l) => l.dir).join(", ")}`);
    const same = await Promise.all([m.getOrCreateLog("one", 0), m.getOrCreateLog("one", 0)]);
    assert.equal(same[0], same[1], "one log per partition even when asked twice at once");
  });

  it("deleteLog removes the partition's data for good", async (t) => {
    const { start } = await managerHarness(t);
    const m = await start();
    const doomed = await m.getOrCreateLog("gone", 1);
    await doomed.append(batch("bye", 3));
    const kept = await m.getOrCreateLog("gone", 2);
    await kept.append(batch("stay", 2));
    const doomedDir = doomed.dir;

    await m.deleteLog("gone", 1);
    assert.equal(m.getLog("gone", 1), undefined);
    await assert.rejects(stat(doomedDir), { code: "ENOENT" });
    await m.stop();

    const again = await start();
    assert.equal(again.getLog("gone", 1), undefined, "not resurrected by a restart");
    assert.equal(again.getLog("gone", 2)?.logEndOffset, 2);
    const fresh = await again.getOrCreateLog("gone", 1);
    assert.equal(fresh.logEndOffset, 0, "re-created empty");
  });

  it("runs retention on its interval", async (t) => {
    const { start } = await managerHarness(t);
    const m = await start({ retentionCheckIntervalMs: 20 });
    const log = await m.getOrCreateLog("old", 0);
    const timestamp = Date.now() - HOUR_MS; // older than retention.ms (60 s)
    for (let i = 0; i < 9; i++) await log.append(batch(`o${i}`, 1, { valueBytes: 250, timestamp }));
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3, 6]);
    // Nothing below the high watermark (0) may go, however often retention runs.
    let passes = 0;
    const enforce = log.enforceRetention.bind(log);
    log.enforceRetention = (nowMs?: number) => {
      passes++;
      return enforce(nowMs);
    };
    await waitFor("three retention passes", () => passes >= 3);
    assert.deepEqual(log.segmentBaseOffsets(), [0, 3, 6]);

    log.setHighWatermark(9);
    await waitFor("retention to delete the old segments", () => log.segmentCount === 1);
    assert.deepEqual(log.segmentBaseOffsets(), [6]);
    assert.equal(log.logStartOffset, 6);
  });
});

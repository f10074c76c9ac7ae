/**
 * Benchmark of the partition log storage engine (not a test): how fast one `PartitionLog`
 * appends and reads, against plain file writes of the same bytes on the same filesystem.
 *
 *   npm run bench:log                     # defaults below
 *   npm run bench:log -- --records=5m --inflight=32 --segment-bytes=256Mi
 *   BENCH_RECORDS=500000 npm run bench:log
 *
 * Phases (each bounded by a record count and a time limit, data in a temp dir removed at the end):
 *   A  appends of 1000-record batches (100-byte random values, null keys), N appends in flight;
 *   B  appends of 1-record batches, N in flight;
 *   C  sequential reads of everything phase A wrote, 1 MiB per read, verified batch by batch;
 *   D  the raw baseline: phase A's bytes written to a fresh file with plain positional writes.
 * Each timed phase runs REPEAT times (default 3) and the figures are medians; before each timed
 * write phase the page cache is pre-touched (see PRETOUCH). Every batch is built before timing
 * starts, from a pool of distinct buffers reused once the log no longer holds them (the log stamps
 * base offset and leader epoch in place, outside the CRC, and keeps the last
 * RECENT_APPENDS_CHUNKS_MAX appended buffers as its in-memory tail), so the figures are the log's own
 * cost: validation (CRC), queueing, offset stamping, vectored writes, indexing, and the
 * interval flush that production runs.
 *
 * The last line printed is machine-readable:
 *   bench:log append_mb_s=<n> append_records_s=<n> raw_write_mb_s=<n> ratio=<n> read_mb_s=<n>
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { FilePartitionLog } from "../services/broker/log/file-partition-log.js";
import type { PartitionLog } from "../services/broker/log/partition-log.js";
import { RECENT_APPENDS_CHUNKS_MAX } from "../services/broker/log/recent-appends.js";
import {
  DEFAULT_LOG_CONFIG,
  FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT,
  type LogConfig,
  SEGMENT_BYTES_DEFAULT,
  validateLogConfig,
} from "../services/shared/config/log-config.js";
import { silentLogger } from "../services/shared/logger.js";
import { buildBatch } from "../services/shared/record-batch/builder.js";
import { readBatchHeader } from "../services/shared/record-batch/header.js";
import { LOG_OVERHEAD_BYTES } from "../services/shared/record-batch/layout.js";
import type { ProducerRecord } from "../services/shared/record-batch/records.js";
import {
  cpuMeter,
  cpuSummary,
  describeFilesystem,
  fixed,
  human,
  humanBytes,
  intOption,
  latencySummary,
  MiB,
  machineLines,
  mbPerSec,
  otherLoadMeter,
  perSec,
  stringOption,
} from "./bench-util.js";

// ---------------------------------------------------------------------------------------------
// Parameters

/** Records appended in phase A (batches of BATCH_RECORDS). */
const RECORDS = intOption("records", "BENCH_RECORDS", 10_000_000, 1);
/** Records per batch in phase A. */
const BATCH_RECORDS = intOption("batch-records", "BENCH_BATCH_RECORDS", 1000, 1);
/** Records (= batches) appended in phase B. */
const SINGLE_RECORDS = intOption("single-records", "BENCH_SINGLE_RECORDS", 200_000, 1);
/** Value bytes per record. */
const VALUE_BYTES = intOption("record-bytes", "BENCH_RECORD_BYTES", 100, 0);
/**
 * Appends kept in flight. A broker leading a busy partition serves several producers, each with
 * up to 5 requests in flight (Kafka's max.in.flight.requests.per.connection), plus followers'
 * fetches: 16 is "three or four producers at full pipeline".
 */
const IN_FLIGHT = intOption("inflight", "BENCH_INFLIGHT", 16, 1);
/** `segment.bytes`: 1 GiB (Kafka's default) unless overridden, e.g. 256Mi. */
const SEGMENT_BYTES = intOption(
  "segment-bytes",
  "BENCH_SEGMENT_BYTES",
  SEGMENT_BYTES_DEFAULT,
  1024,
);
/** `flush.ms`: production's 1000 (fsync by interval, not strict); -1 disables it. */
const FLUSH_MS = Number(stringOption("flush-ms", "BENCH_FLUSH_MS", "1000"));
/** Wall-clock limit per timed phase, seconds: a phase stops issuing appends past it. */
const PHASE_SECONDS = intOption("phase-seconds", "BENCH_PHASE_SECONDS", 60, 1);
/**
 * Repetitions of each timed phase (the reference raw modes run once). Figures are the median
 * over repetitions: on a VM, interference only ever slows a run down, and one short phase can
 * lose half its speed to it.
 */
const REPEAT = intOption("repeat", "BENCH_REPEAT", 3, 1);
/** Records written (in big batches) to a throw-away log first, so the JIT is warm. 0 = none. */
const WARMUP_RECORDS = intOption("warmup-records", "BENCH_WARMUP_RECORDS", 200_000, 0);
/**
 * Page-cache pre-touch before every timed write phase (1 = on, 0 = off). On a VM that returns
 * freed guest memory to the host (free page reporting, e.g. Firecracker with virtio-balloon),
 * page-cache pages landing in returned memory cost a hypervisor fault each on first touch:
 * measured here ~400 MB/s into such memory vs 2-5 GB/s into backed memory, and memory freed
 * for ~2 s is returned again. Whichever writer met returned memory would lose by a factor of
 * several, at random. So right before each timed write phase the benchmark writes and deletes
 * a scratch file as large as the phase's volume: the log and the raw baseline alike then write
 * into backed memory, as on a long-running broker host.
 */
const PRETOUCH = intOption("pretouch", "BENCH_PRETOUCH", 1, 0) > 0;
/** Where the temp dir goes. */
const BASE_DIR = stringOption("dir", "BENCH_DIR", tmpdir());
/** Bytes asked per read in phase C. */
const READ_BYTES = MiB;

if (!Number.isSafeInteger(FLUSH_MS) || FLUSH_MS < -1) {
  throw new Error(`--flush-ms / BENCH_FLUSH_MS must be -1 or a non-negative integer`);
}

const config: LogConfig = validateLogConfig({
  ...DEFAULT_LOG_CONFIG,
  segmentBytes: SEGMENT_BYTES,
  flushMs: FLUSH_MS,
  flushStrict: false,
});

// ---------------------------------------------------------------------------------------------
// Batches

/** Random bytes the record values are cut from: distinct values without a random call each. */
const entropy = randomBytes(1 << 20);

/** One batch of `count` records with null keys and VALUE_BYTES-byte values. */
function makeBatch(count: number, seed: number): Buffer {
  const records: ProducerRecord[] = new Array(count);
  let at = (seed * 7919) % (entropy.length - VALUE_BYTES);
  for (let i = 0; i < count; i++) {
    records[i] = { key: null, value: entropy.subarray(at, at + VALUE_BYTES) };
    at = (at + 977) % (entropy.length - VALUE_BYTES);
  }
  return buildBatch(records);
}

/**
 * A pool of distinct pre-built batches. A buffer is taken for an append and given back when the
 * append resolves, so no buffer is ever in flight twice; it is taken again only after all the
 * others (first in, first out).
 */
class BatchPool {
  private readonly free: Buffer[];
  readonly batchBytes: number;

  constructor(
    readonly size: number,
    readonly recordsPerBatch: number,
  ) {
    this.free = Array.from({ length: size }, (_, i) => makeBatch(recordsPerBatch, i + 1));
    this.batchBytes = this.free[0]!.length;
    for (const b of this.free) {
      if (b.length !== this.batchBytes) throw new Error("pool batches differ in size");
    }
  }

  take(): Buffer {
    // Oldest given back first (FIFO): a buffer is reused only after every other one was.
    const b = this.free.shift();
    if (!b) throw new Error("batch pool exhausted: more appends in flight than buffers");
    return b;
  }

  give(b: Buffer): void {
    this.free.push(b);
  }

  /** All buffers (for the raw baseline, when none is in flight). */
  all(): readonly Buffer[] {
    return this.free;
  }
}

// ---------------------------------------------------------------------------------------------
// Running appends

/** A scheduled flush that ran: when it was asked for and when it finished, ms from phase start. */
interface FlushEvent {
  requestedMs: number;
  doneMs: number;
}

/** What one timed append phase did. */
interface AppendRun {
  appends: number;
  records: number;
  bytes: number;
  ms: number;
  latenciesMs: Float64Array;
  cpu: string;
  timedOut: boolean;
  /** Scheduled flushes that ran (asked for during the phase; some may finish after it). */
  flushes: FlushEvent[];
}

/**
 * The broker's flush scheduler, as LogManager runs it: `maybeFlush()` every
 * FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT ms, not waiting for the previous one. Records when each
 * flush that ran was asked for and when it finished, relative to `t0`.
 */
function startFlushScheduler(log: PartitionLog, t0: number): { stop: () => Promise<FlushEvent[]> } {
  const events: FlushEvent[] = [];
  const running: Array<Promise<void>> = [];
  const timer = setInterval(() => {
    const requested = performance.now();
    running.push(
      log.maybeFlush().then(
        (ran) => {
          if (ran) events.push({ requestedMs: requested - t0, doneMs: performance.now() - t0 });
        },
        (err: unknown) => console.error(`scheduled flush failed: ${(err as Error).message}`),
      ),
    );
  }, FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT);
  return {
    stop: async () => {
      clearInterval(timer);
      await Promise.all(running);
      return events.sort((a, b) => a.requestedMs - b.requestedMs);
    },
  };
}

/**
 * Appends `appends` batches from `pool` with IN_FLIGHT appends outstanding at all times: one
 * worker per slot, each starting its next append when its previous one resolves. Stops
 * issuing once `deadline` (performance.now() ms) passes.
 */
async function runAppends(
  log: PartitionLog,
  pool: BatchPool,
  appends: number,
  deadlineMs: number,
): Promise<AppendRun> {
  const latencies = new Float64Array(appends);
  let issued = 0;
  let done = 0;
  let records = 0;
  let bytes = 0;
  let timedOut = false;
  let expectedNext = log.logEndOffset;
  const cpu = cpuMeter();
  const t0 = performance.now();
  const scheduler = startFlushScheduler(log, t0);
  let failed = false;
  const worker = async () => {
    while (issued < appends && !failed) {
      if (performance.now() > deadlineMs) {
        timedOut = true;
        return;
      }
      issued++;
      const buf = pool.take();
      const size = buf.length;
      const start = performance.now();
      const r = await log.append(buf);
      latencies[done++] = performance.now() - start;
      pool.give(buf);
      if (r.baseOffset !== expectedNext) {
        failed = true;
        throw new Error(`append got base offset ${r.baseOffset}, expected ${expectedNext}`);
      }
      expectedNext = r.lastOffset + 1;
      records += r.recordCount;
      bytes += size;
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, appends) }, worker));
  const ms = performance.now() - t0;
  const cpuShare = cpuSummary(cpu(ms));
  const flushes = await scheduler.stop();
  return {
    appends: done,
    records,
    bytes,
    ms,
    latenciesMs: latencies,
    cpu: cpuShare,
    timedOut,
    flushes,
  };
}

async function openLog(dir: string): Promise<PartitionLog> {
  await mkdir(dir, { recursive: true });
  return FilePartitionLog.open({
    dir,
    topic: "bench",
    partition: 0,
    config,
    logger: silentLogger(),
  });
}

function printAppendRun(label: string, run: AppendRun): void {
  const mbs = mbPerSec(run.bytes, run.ms);
  const rps = perSec(run.records, run.ms);
  console.log(
    `${label}: ${humanBytes(run.bytes)} in ${human(run.ms, 1)} ms: ${human(mbs, 1)} MB/s, ` +
      `${human(rps)} records/s${run.timedOut ? " (TIME LIMIT HIT)" : ""}`,
  );
  console.log(
    `    ${human(run.records)} records in ${human(run.appends)} appends ` +
      `(${human(perSec(run.appends, run.ms))} appends/s); latency ${latencySummary(run.latenciesMs, run.appends)}; ${run.cpu}`,
  );
  // A flush asked for well before the phase ended that finished only after its last append
  // waited for the write queue to go idle: under sustained appends `flush.ms` is not honoured.
  const late = run.flushes.filter((f) => f.doneMs > run.ms && f.requestedMs < run.ms - 100);
  const shown = run.flushes
    .slice(0, 4)
    .map((f) => `+${human(f.requestedMs)}→+${human(f.doneMs)}`)
    .join(", ");
  console.log(
    `    scheduled flushes (asked→done, ms from phase start): ${run.flushes.length}` +
      `${shown ? ` [${shown}${run.flushes.length > 4 ? ", …" : ""}]` : ""}` +
      (late.length > 0
        ? `; ${late.length} asked ≥100 ms before the end ran only after the last append (starved behind the write queue)`
        : ""),
  );
}

/** Median of `values` (mean of the middle two for an even count). */
function median(values: readonly number[]): number {
  const v = [...values].sort((x, y) => x - y);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** `median X (min–max over N runs)` of MB/s figures. */
function spread(label: string, values: readonly number[], unit: string, digits: number): string {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return (
    `${label ? `${label}: ` : ""}median ${human(median(values), digits)} ${unit}` +
    (values.length > 1
      ? ` (${human(lo, digits)}–${human(hi, digits)} over ${values.length} runs)`
      : "")
  );
}

// ---------------------------------------------------------------------------------------------
// Phases

/** Phase C: reads [0, log end) sequentially and checks it against what was appended. */
async function readAll(
  log: PartitionLog,
  expected: { records: number; bytes: number },
): Promise<{ bytes: number; records: number; reads: number; ms: number; cpu: string }> {
  const end = log.logEndOffset;
  log.setHighWatermark(end);
  let offset = log.logStartOffset;
  let bytes = 0;
  let records = 0;
  let reads = 0;
  let nextBase = offset;
  const cpu = cpuMeter();
  const t0 = performance.now();
  while (offset < end) {
    const r = await log.read(offset, READ_BYTES, { maxOffset: end });
    reads++;
    if (r.bytes.length === 0 || r.nextOffset <= offset) {
      throw new Error(`read at ${offset} made no progress (log end ${end})`);
    }
    // Walk the batch headers: contiguous offsets, whole batches, record counts.
    let pos = 0;
    while (pos < r.bytes.length) {
      const h = readBatchHeader(r.bytes, pos);
      if (h.baseOffset !== nextBase) {
        throw new Error(
          `batch at read offset ${offset} has base ${h.baseOffset}, expected ${nextBase}`,
        );
      }
      nextBase = h.baseOffset + h.lastOffsetDelta + 1;
      records += h.recordCount;
      pos += h.batchLength + LOG_OVERHEAD_BYTES;
    }
    if (pos !== r.bytes.length) throw new Error(`read at ${offset} returned a partial batch`);
    if (r.nextOffset !== nextBase) {
      throw new Error(`read at ${offset}: nextOffset ${r.nextOffset}, batches end at ${nextBase}`);
    }
    bytes += r.bytes.length;
    offset = r.nextOffset;
  }
  const ms = performance.now() - t0;
  const cpuShare = cpuSummary(cpu(ms));
  if (records !== expected.records || bytes !== expected.bytes || nextBase !== end) {
    throw new Error(
      `VERIFICATION FAILED: read ${records} records / ${bytes} bytes up to offset ${nextBase}, ` +
        `wrote ${expected.records} records / ${expected.bytes} bytes up to offset ${end}`,
    );
  }
  return { bytes, records, reads, ms, cpu: cpuShare };
}

/** How the raw baseline issues its writes. */
type RawMode = "sequential" | "inflight" | "writev";
const RAW_MODES: readonly RawMode[] = ["sequential", "inflight", "writev"];
const RAW_MODE_TEXT: Record<RawMode, string> = {
  sequential: "FileHandle.write per batch, each awaited",
  inflight: `FileHandle.write per batch, ${IN_FLIGHT} in flight at reserved positions`,
  writev: `FileHandle.writev of ${IN_FLIGHT} batches, each awaited`,
};
/** The baseline the ratio uses; the other modes are printed for reference. */
const RAW_MODE = stringOption("raw-mode", "BENCH_RAW_MODE", "inflight") as RawMode;
if (!RAW_MODES.includes(RAW_MODE))
  throw new Error(`--raw-mode must be one of ${RAW_MODES.join(", ")}`);

/**
 * Phase D, the raw baseline: the same batch buffers, in the same count, written to a fresh file
 * in the same directory with plain positional writes: no validation, no queue, no offsets, no
 * index, no fsync. The baseline for the ratio ("inflight", the default) uses the benchmark's own
 * concurrency model: IN_FLIGHT writers, each reserving the next file position and issuing one
 * `FileHandle.write` per batch, as a broker would if each of its IN_FLIGHT produce requests wrote
 * its bytes straight to the file. That is the fair comparison for a log that has the same
 * IN_FLIGHT appends outstanding. Two reference modes are printed too: "sequential" (one awaited
 * write per batch: the simplest writer) and "writev" (one awaited writev of IN_FLIGHT batches:
 * the log's own coalescing strategy at zero cost, i.e. its ceiling).
 */
async function rawWrite(
  dir: string,
  name: string,
  buffers: readonly Buffer[],
  count: number,
  mode: RawMode,
): Promise<{ bytes: number; ms: number; syncMs: number; cpu: string }> {
  const fh = await open(join(dir, name), "w");
  try {
    let position = 0;
    const cpu = cpuMeter();
    const t0 = performance.now();
    if (mode === "sequential") {
      for (let i = 0; i < count; i++) {
        const b = buffers[i % buffers.length]!;
        const { bytesWritten } = await fh.write(b, 0, b.length, position);
        if (bytesWritten !== b.length) throw new Error("short raw write");
        position += bytesWritten;
      }
    } else if (mode === "inflight") {
      // IN_FLIGHT writers; each reserves the next position, then writes there.
      let next = 0;
      const writer = async () => {
        while (next < count) {
          const b = buffers[next++ % buffers.length]!;
          const at = position;
          position += b.length;
          const { bytesWritten } = await fh.write(b, 0, b.length, at);
          if (bytesWritten !== b.length) throw new Error("short raw write");
        }
      };
      await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, writer));
    } else {
      for (let i = 0; i < count; i += IN_FLIGHT) {
        const group: Buffer[] = [];
        let total = 0;
        for (let j = i; j < Math.min(count, i + IN_FLIGHT); j++) {
          const b = buffers[j % buffers.length]!;
          group.push(b);
          total += b.length;
        }
        const { bytesWritten } = await fh.writev(group, position);
        if (bytesWritten !== total) throw new Error("short raw writev");
        position += bytesWritten;
      }
    }
    const ms = performance.now() - t0;
    const cpuShare = cpuSummary(cpu(ms));
    const s0 = performance.now();
    await fh.datasync();
    return { bytes: position, ms, syncMs: performance.now() - s0, cpu: cpuShare };
  } finally {
    await fh.close();
  }
}

/** Writes `bytes` of `buffer` copies to a scratch file in `dir` and deletes it; returns ms. */
async function pretouchPageCache(dir: string, buffer: Buffer, bytes: number): Promise<number> {
  const t0 = performance.now();
  const path = join(dir, "pretouch.tmp");
  const fh = await open(path, "w");
  try {
    const group = Array.from(
      { length: Math.max(1, Math.floor((16 * MiB) / buffer.length)) },
      () => buffer,
    );
    const groupBytes = group.length * buffer.length;
    for (let position = 0; position < bytes; position += groupBytes) {
      await fh.writev(group, position);
    }
  } finally {
    await fh.close();
  }
  await rm(path);
  return performance.now() - t0;
}

// ---------------------------------------------------------------------------------------------
// Main

/** Page reporting on the kernel command line: freed guest memory goes back to the host. */
function pageReportingNote(): string {
  try {
    const m = /page_reporting\.page_reporting_order=(\d+)/.exec(
      readFileSync("/proc/cmdline", "utf8"),
    );
    return m ? ` (this VM returns freed memory to the host: page_reporting_order=${m[1]})` : "";
  } catch {
    return "";
  }
}

async function main(): Promise<void> {
  const otherLoad = otherLoadMeter();
  const root = await mkdtemp(join(BASE_DIR, "samsa-bench-log-"));
  const logs: PartitionLog[] = [];
  try {
    const appendsA = Math.ceil(RECORDS / BATCH_RECORDS);
    // A buffer is given back when its append resolves, but the log's tail still holds it until
    // RECENT_APPENDS_CHUNKS_MAX later appends (each append is one chunk here): the pools are
    // larger than that, so no buffer is changed while the log may still serve it.
    const poolSize = Math.max(2 * IN_FLIGHT, RECENT_APPENDS_CHUNKS_MAX + IN_FLIGHT + 1);
    const t0 = performance.now();
    const bigPool = new BatchPool(poolSize, BATCH_RECORDS);
    const smallPool = new BatchPool(poolSize, 1);
    const buildMs = performance.now() - t0;
    const far = () => performance.now() + PHASE_SECONDS * 1000;
    /** Pre-touches memory for a phase about to write `bytes`; returns a note for its output. */
    const prepare = async (bytes: number): Promise<string> => {
      if (!PRETOUCH) return "";
      const total = bytes + 64 * MiB;
      const ms = await pretouchPageCache(root, bigPool.all()[0]!, total);
      return ` [pre-touch ${humanBytes(total)}: ${human(ms)} ms]`;
    };

    console.log("== samsa partition log benchmark ==");
    for (const line of machineLines()) console.log(line);
    console.log(`temp dir: ${root}`);
    console.log(`filesystem: ${await describeFilesystem(root)}`);
    console.log(
      `records: ${VALUE_BYTES}-byte random values, null keys, no headers, uncompressed; ` +
        `batch of ${BATCH_RECORDS} = ${human(bigPool.batchBytes)} bytes, batch of 1 = ${smallPool.batchBytes} bytes`,
    );
    console.log(
      `volume: A ${human(appendsA * BATCH_RECORDS)} records in ${human(appendsA)} batches of ${BATCH_RECORDS} ` +
        `(${humanBytes(appendsA * bigPool.batchBytes)}); B ${human(SINGLE_RECORDS)} batches of 1; ` +
        `each phase stops issuing after ${PHASE_SECONDS} s`,
    );
    console.log(
      `config: segment.bytes=${humanBytes(config.segmentBytes)}, flush.ms=${config.flushMs} ` +
        `(LogManager's scheduler: maybeFlush every ${FLUSH_SCHEDULER_INTERVAL_MS_DEFAULT} ms), ` +
        `flush.strict=${config.flushStrict}, index.interval.bytes=${config.indexIntervalBytes}`,
    );
    console.log(
      `appends in flight: ${IN_FLIGHT} (pools of ${bigPool.size} + ${smallPool.size} distinct batches ` +
        `built before timing in ${human(buildMs)} ms; a buffer is reused only after its append resolved)`,
    );
    console.log(`reads: ${humanBytes(READ_BYTES)} per read, maxOffset = log end, one at a time`);
    console.log(
      `raw baseline (ratio): ${RAW_MODE_TEXT[RAW_MODE]}, fresh file in the same dir, no fsync; ` +
        "the other raw modes are printed for reference",
    );
    console.log(
      `page cache: ${PRETOUCH ? "pre-touched before each timed write phase" : "NOT pre-touched"}` +
        pageReportingNote(),
    );
    console.log(
      `runs: each timed phase ${REPEAT} times (reference raw modes once), figures are medians; ` +
        "MB = 10^6 bytes; write phases exclude the final fsync (printed separately)",
    );
    console.log("");

    // Warm-up: the JIT sees every path (big and single-record appends, reads, raw writes).
    if (WARMUP_RECORDS > 0) {
      const w0 = performance.now();
      const warm = await openLog(join(root, "warmup-0"));
      await runAppends(warm, bigPool, Math.ceil(WARMUP_RECORDS / BATCH_RECORDS), far());
      await runAppends(warm, smallPool, 2000, far());
      await readAll(warm, totals(warm));
      await warm.delete();
      for (const mode of RAW_MODES) await rawWrite(root, "warmup.raw", bigPool.all(), 50, mode);
      await rm(join(root, "warmup.raw"));
      console.log(
        `warm-up: ${human(WARMUP_RECORDS)} records in ${human(performance.now() - w0)} ms (untimed)`,
      );
    }

    // Phase A: REPEAT fresh logs; the last one is kept for phase C.
    const runsA: AppendRun[] = [];
    let logA: PartitionLog | undefined;
    for (let r = 1; r <= REPEAT; r++) {
      const note = await prepare(appendsA * bigPool.batchBytes);
      const log = await openLog(join(root, `bench-a${r}-0`));
      logs.push(log);
      const run = await runAppends(log, bigPool, appendsA, far());
      runsA.push(run);
      printAppendRun(`A append, batches of ${BATCH_RECORDS}, run ${r}${note}`, run);
      const f0 = performance.now();
      await log.flush();
      console.log(
        `    final flush ${human(performance.now() - f0, 1)} ms; log: ${log.segmentCount} segment(s), ` +
          `${humanBytes(log.sizeBytes)}, end offset ${human(log.logEndOffset)}`,
      );
      if (log.sizeBytes !== run.bytes || log.logEndOffset !== run.records) {
        throw new Error(
          `log holds ${log.sizeBytes} bytes / end offset ${log.logEndOffset}, appended ${run.bytes} bytes / ${run.records} records`,
        );
      }
      if (r < REPEAT) {
        await log.delete();
        logs.splice(logs.indexOf(log), 1);
      } else {
        logA = log;
      }
    }
    const appendMbs = median(runsA.map((x) => mbPerSec(x.bytes, x.ms)));
    const appendRps = median(runsA.map((x) => perSec(x.records, x.ms)));
    console.log(
      `${spread(
        "A",
        runsA.map((x) => mbPerSec(x.bytes, x.ms)),
        "MB/s",
        1,
      )}; ` +
        spread(
          "",
          runsA.map((x) => perSec(x.records, x.ms)),
          "records/s",
          0,
        ),
    );

    // Phase B.
    const runsB: AppendRun[] = [];
    for (let r = 1; r <= REPEAT; r++) {
      const note = await prepare(SINGLE_RECORDS * smallPool.batchBytes);
      const log = await openLog(join(root, `bench-b${r}-0`));
      logs.push(log);
      const run = await runAppends(log, smallPool, SINGLE_RECORDS, far());
      runsB.push(run);
      printAppendRun(`B append, batches of 1, run ${r}${note}`, run);
      await log.delete();
      logs.splice(logs.indexOf(log), 1);
    }
    const singleRps = median(runsB.map((x) => perSec(x.records, x.ms)));
    const singleMbs = median(runsB.map((x) => mbPerSec(x.bytes, x.ms)));
    console.log(
      spread(
        "B",
        runsB.map((x) => perSec(x.records, x.ms)),
        "records/s",
        0,
      ),
    );

    // Phase C: everything phase A's last run wrote, REPEAT times.
    const a = runsA.at(-1)!;
    const readRuns: number[] = [];
    for (let r = 1; r <= REPEAT; r++) {
      const c = await readAll(logA!, { records: a.records, bytes: a.bytes });
      const mbs = mbPerSec(c.bytes, c.ms);
      readRuns.push(mbs);
      console.log(
        `C read, run ${r}: ${human(c.records)} records, ${humanBytes(c.bytes)} in ${human(c.reads)} reads, ` +
          `${human(c.ms, 1)} ms: ${human(mbs, 1)} MB/s, ${human(perSec(c.records, c.ms))} records/s; ${c.cpu}`,
      );
    }
    console.log(
      `${spread("C", readRuns, "MB/s", 1)} (verified: offsets contiguous, counts and bytes match)`,
    );
    const readMbs = median(readRuns);

    // Phase D: the baseline mode REPEAT times, then each reference mode once.
    for (const log of logs.splice(0)) await log.delete();
    const rawRuns: number[] = [];
    const modes = [
      ...Array.from({ length: REPEAT }, () => RAW_MODE),
      ...RAW_MODES.filter((m) => m !== RAW_MODE),
    ];
    for (const [i, mode] of modes.entries()) {
      const note = await prepare(a.bytes);
      const file = `raw-${mode}.bin`;
      const d = await rawWrite(root, file, bigPool.all(), a.appends, mode);
      await rm(join(root, file));
      if (d.bytes !== a.bytes) throw new Error(`raw wrote ${d.bytes} bytes, log ${a.bytes}`);
      const mbs = mbPerSec(d.bytes, d.ms);
      const label =
        mode === RAW_MODE && i < REPEAT ? `D raw baseline, run ${i + 1}` : "D reference";
      if (mode === RAW_MODE && i < REPEAT) rawRuns.push(mbs);
      console.log(
        `${label}, ${RAW_MODE_TEXT[mode]}${note}: ${humanBytes(d.bytes)} in ${human(d.ms, 1)} ms: ` +
          `${human(mbs, 1)} MB/s; ${d.cpu}; then fsync ${human(d.syncMs, 1)} ms`,
      );
      if (i === REPEAT - 1) console.log(spread("D", rawRuns, "MB/s", 1));
    }
    const rawMbs = median(rawRuns);

    console.log("");
    const others = otherLoad();
    if (others.cores !== undefined) {
      console.log(
        `other processes (incl. kernel writeback) used ${others.cores.toFixed(2)} cores on average during the run`,
      );
    }
    if (others.warning) console.log(others.warning);
    console.log(
      `bench:log:batch1 append_records_s=${fixed(singleRps, 0)} ` +
        `append_mb_s=${fixed(singleMbs, 1)} records=${runsB.at(-1)!.records} runs=${REPEAT}`,
    );
    console.log(
      `bench:log append_mb_s=${fixed(appendMbs, 1)} append_records_s=${fixed(appendRps, 0)} ` +
        `raw_write_mb_s=${fixed(rawMbs, 1)} ratio=${fixed(appendMbs / rawMbs, 2)} read_mb_s=${fixed(readMbs, 1)}`,
    );
  } finally {
    for (const log of logs) await log.delete().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

/** Records and bytes in a log, from its end offset and size (a log written from offset 0). */
function totals(log: PartitionLog): { records: number; bytes: number } {
  return { records: log.logEndOffset - log.logStartOffset, bytes: log.sizeBytes };
}

main().catch((err: unknown) => {
  console.error(`bench:log FAILED: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});

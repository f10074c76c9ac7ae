/**
 * Model-based property test of PartitionLog: random command sequences (appends, reads,
 * truncations, rolls, high-watermark moves, DeleteRecords, clean and unclean reopens) run
 * against the real log on disk and against a small in-memory model; after every command the
 * offsets, the epoch cache and the full contents of the log must match the model.
 *
 * Segments are tiny (2 KiB) so that almost every command crosses segment boundaries.
 * Reproduce a failure with SAMSA_FC_SEED=<seed> (and SAMSA_FC_PATH=<path>) from its report.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  DEFAULT_LOG_CONFIG,
  type LogConfig,
  validateLogConfig,
} from "../../services/shared/config/log-config.js";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { PartitionLog } from "../../services/broker/log/partition-log.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { silentLogger } from "../../services/shared/logger.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";

const SEGMENT_BYTES = 2048;
/** Runs per test; SAMSA_FC_RUNS overrides it for a longer search. */
const RUNS = Number(process.env.SAMSA_FC_RUNS ?? 100);
const COMMANDS_MAX = 30;
/** Stops the whole property (shrinking included) after this long; a failure is still reported. */
const PROPERTY_TIME_LIMIT_MS = 40_000;
const T0_MS = 1_700_000_000_000;
/** The log's clock: far enough after every record timestamp, far below segment.ms. */
const NOW_MS = T0_MS + 1_000_000;

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

interface RecordSpec {
  keyed: boolean;
  nullValue: boolean;
  valueBytes: number;
}

/** `pick` values choose an offset relative to the model's state when the command runs. */
type Command =
  | { kind: "append"; batches: RecordSpec[][]; epochBump: number; oneCall: boolean }
  | { kind: "read"; pick: number; belowHw: boolean; maxBytes: number }
  | { kind: "truncate"; pick: number }
  | { kind: "roll" }
  | { kind: "setHw"; pick: number; toEnd: boolean }
  | { kind: "deleteRecords"; pick: number }
  | { kind: "reopen" }
  | { kind: "crash" };

const recordSpecArb: fc.Arbitrary<RecordSpec> = fc.record({
  keyed: fc.boolean(),
  nullValue: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  valueBytes: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 24 }), {
    weight: 3,
    arbitrary: fc.integer({ min: 25, max: 300 }),
  }),
});

// Six records of at most 300 bytes keep every batch below segment.bytes.
const appendArb = fc.record({
  kind: fc.constant("append" as const),
  batches: fc.array(fc.array(recordSpecArb, { minLength: 1, maxLength: 6 }), {
    minLength: 1,
    maxLength: 6,
  }),
  epochBump: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.constant(1)),
  oneCall: fc.boolean(),
});
const pickArb = fc.nat(1_000_000);

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: appendArb },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("read" as const),
      pick: pickArb,
      belowHw: fc.boolean(),
      maxBytes: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 6000 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("truncate" as const), pick: pickArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("roll" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("setHw" as const),
      pick: pickArb,
      toEnd: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("deleteRecords" as const), pick: pickArb }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const) }) },
);

const configArb = fc.record({
  indexIntervalBytes: fc.constantFrom(0, 256, 4096),
  /** 96 bytes: 12 offset-index and 8 time-index entries, so full indexes roll segments too. */
  segmentIndexBytes: fc.constantFrom(96, 1024 * 1024),
  flushMessages: fc.constantFrom(-1, 7),
  flushStrict: fc.boolean(),
});

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

interface ModelRecord {
  offset: number;
  key: string | null;
  value: string | null;
}

interface ModelBatch {
  base: number;
  last: number;
  epoch: number;
  size: number;
  records: ModelRecord[];
}

interface EpochEntry {
  epoch: number;
  startOffset: number;
}

/**
 * What the log must look like. `batches` holds every batch still physically present as far as
 * offsets go (batches below the log start stay here: they decide where a truncation lands).
 */
class Model {
  batches: ModelBatch[] = [];
  start = 0;
  end = 0;
  hw = 0;
  /** Where the current history begins: the log end when no batch is left. */
  floor = 0;
  epochs: EpochEntry[] = [];
  /** Epoch of the next leader append; never decreases. */
  leaderEpoch = 0;

  append(batch: ModelBatch): void {
    this.batches.push(batch);
    this.end = batch.last + 1;
    const latest = this.epochs.at(-1);
    if (latest !== undefined && batch.epoch <= latest.epoch) return;
    // A new epoch starting where an entry (moved up to the log start) already starts replaces it:
    // start offsets strictly increase along the cache.
    while ((this.epochs.at(-1)?.startOffset ?? -1) >= batch.base) this.epochs.pop();
    this.epochs.push({ epoch: batch.epoch, startOffset: batch.base });
  }

  /** Contract: drops every batch holding an offset ≥ `target`; below the start it empties. */
  truncateTo(target: number): void {
    if (target >= this.end) return;
    if (target <= this.start) {
      this.reset(target);
      return;
    }
    this.batches = this.batches.filter((b) => b.last < target);
    this.end = this.batches.at(-1) === undefined ? this.floor : this.batches.at(-1)!.last + 1;
    if (this.end < this.start) {
      // The batch holding the log start went: nothing visible is left. The contract's
      // invariant logStart ≤ HW ≤ LEO then has the log restart, empty, at its start offset.
      this.reset(this.start);
      return;
    }
    this.hw = Math.min(this.hw, this.end);
    this.epochs = this.epochs.filter((e) => e.startOffset < this.end);
  }

  reset(offset: number): void {
    this.batches = [];
    this.floor = offset;
    this.start = offset;
    this.end = offset;
    this.hw = offset;
    this.epochs = [];
  }

  setHighWatermark(offset: number): void {
    this.hw = Math.min(Math.max(offset, this.start), this.end);
  }

  /** Raises the log start; the epoch cache forgets the history below it (its documented rule). */
  deleteRecordsBefore(offset: number): void {
    if (offset <= this.start) return;
    this.start = offset;
    let last = -1;
    this.epochs.forEach((e, i) => {
      if (e.startOffset <= offset) last = i;
    });
    if (last < 0) return;
    const kept = this.epochs[last]!;
    if (last === 0 && kept.startOffset === offset) return;
    this.epochs.splice(0, last + 1, { epoch: kept.epoch, startOffset: offset });
  }

  /** Batches a reader starting at `offset` sees, oldest first. */
  batchesFrom(offset: number): ModelBatch[] {
    return this.batches.filter((b) => b.last >= offset);
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/** Maps `pick` into [lo, hi]. */
function offsetIn(pick: number, lo: number, hi: number): number {
  return lo + (pick % (hi - lo + 1));
}

interface Run {
  dir: string;
  config: LogConfig;
  log: PartitionLog;
  model: Model;
  /** Logs left open by unclean stops; closed when the run ends. */
  abandoned: PartitionLog[];
  /** Source of unique record contents. */
  seq: number;
}

function openLog(run: Pick<Run, "dir" | "config">): Promise<PartitionLog> {
  return FilePartitionLog.open({
    dir: run.dir,
    topic: "prop",
    partition: 0,
    config: run.config,
    logger: silentLogger(),
    now: () => NOW_MS,
  });
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode, what: string) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isSamsaError(err, code), `${what}: expected ${ErrorCode[code]}, got ${String(err)}`);
    return true;
  });
}

function buildModelBatch(run: Run, specs: RecordSpec[], base: number, epoch: number) {
  const records: ModelRecord[] = [];
  const producerRecords = specs.map((spec, i) => {
    const id = run.seq++;
    const key = spec.keyed ? `k${id}` : null;
    const value = spec.nullValue
      ? null
      : `${id}:`.padEnd(spec.valueBytes, "x").slice(0, spec.valueBytes);
    records.push({ offset: base + i, key, value });
    return {
      key: key === null ? null : Buffer.from(key),
      value: value === null ? null : Buffer.from(value),
      timestamp: T0_MS + id,
    };
  });
  const buf = buildBatch(producerRecords);
  const batch: ModelBatch = {
    base,
    last: base + specs.length - 1,
    epoch,
    size: buf.length,
    records,
  };
  return { buf, batch };
}

async function runAppend(run: Run, cmd: Extract<Command, { kind: "append" }>): Promise<void> {
  const { model, log } = run;
  model.leaderEpoch += cmd.epochBump;
  const epoch = model.leaderEpoch;
  let next = model.end;
  const built = cmd.batches.map((specs) => {
    const b = buildModelBatch(run, specs, next, epoch);
    next = b.batch.last + 1;
    return b;
  });
  if (cmd.oneCall) {
    const result = await log.append(Buffer.concat(built.map((b) => b.buf)), { leaderEpoch: epoch });
    assert.deepEqual(result, {
      baseOffset: model.end,
      lastOffset: next - 1,
      recordCount: next - model.end,
    });
  } else {
    const results = await Promise.all(built.map((b) => log.append(b.buf, { leaderEpoch: epoch })));
    results.forEach((r, i) => {
      const { base, last } = built[i]!.batch;
      assert.deepEqual(r, { baseOffset: base, lastOffset: last, recordCount: last - base + 1 });
    });
  }
  for (const b of built) model.append(b.batch);
}

function assertSameBatches(
  got: ReturnType<typeof decodeBatches>,
  want: readonly ModelBatch[],
  what: string,
): void {
  const view = (b: ModelBatch) => ({
    base: b.base,
    last: b.last,
    epoch: b.epoch,
    records: b.records,
  });
  assert.deepEqual(
    got.map((b) => ({
      base: b.header.baseOffset,
      last: b.header.baseOffset + b.header.lastOffsetDelta,
      epoch: b.header.partitionLeaderEpoch,
      records: b.records.map((r) => ({
        offset: r.offset,
        key: r.key === null ? null : r.key.toString(),
        value: r.value === null ? null : r.value.toString(),
      })),
    })),
    want.map(view),
    what,
  );
}

async function runRead(run: Run, cmd: Extract<Command, { kind: "read" }>): Promise<void> {
  const { model, log } = run;
  const offset =
    cmd.belowHw && model.hw > model.start
      ? offsetIn(cmd.pick, model.start, model.hw - 1)
      : offsetIn(cmd.pick, Math.max(0, model.start - 2), model.end + 2);
  if (offset < model.start || offset > model.end) {
    await expectCode(
      log.read(offset, cmd.maxBytes),
      ErrorCode.OFFSET_OUT_OF_RANGE,
      `read ${offset}`,
    );
    return;
  }
  const r = await log.read(offset, cmd.maxBytes);
  // A read at or past the high watermark sees nothing yet (Kafka's rule, even when the batch
  // holding the offset starts below it); otherwise no batch may start at or past it.
  const candidates =
    offset >= model.hw ? [] : model.batchesFrom(offset).filter((b) => b.base < model.hw);
  if (candidates.length === 0) {
    assert.equal(r.bytes.length, 0, `read ${offset}: nothing visible below HW ${model.hw}`);
    assert.equal(r.nextOffset, offset);
    return;
  }
  const got = decodeBatches(r.bytes);
  assert.ok(got.length > 0, `read ${offset}: at least one batch`);
  assertSameBatches(got, candidates.slice(0, got.length), `read ${offset}, ${cmd.maxBytes} bytes`);
  const limit = Math.max(cmd.maxBytes, candidates[0]!.size);
  assert.ok(r.bytes.length <= limit, `read ${offset}: ${r.bytes.length} bytes > ${limit}`);
  assert.equal(r.nextOffset, candidates[got.length - 1]!.last + 1);
  // Within one segment a read takes every batch that fits.
  const following = candidates[got.length];
  if (following !== undefined && r.bytes.length + following.size <= limit) {
    const bases = log.segmentBaseOffsets();
    const segmentOf = (o: number) => bases.filter((b) => b <= o).length;
    assert.notEqual(
      segmentOf(following.base),
      segmentOf(candidates[got.length - 1]!.base),
      `read ${offset}: stopped before batch ${following.base} although it fits`,
    );
  }
}

async function runCommand(run: Run, cmd: Command): Promise<void> {
  const { model } = run;
  switch (cmd.kind) {
    case "append":
      await runAppend(run, cmd);
      return;
    case "read":
      await runRead(run, cmd);
      return;
    case "truncate": {
      const target = offsetIn(cmd.pick, Math.max(0, model.start - 2), model.end + 2);
      await run.log.truncateTo(target);
      model.truncateTo(target);
      return;
    }
    case "roll": {
      const bases = run.log.segmentBaseOffsets();
      await run.log.roll();
      const rolled = bases.at(-1)! < model.end ? [...bases, model.end] : bases;
      assert.deepEqual(run.log.segmentBaseOffsets(), rolled, "roll");
      return;
    }
    case "setHw": {
      const hw = cmd.toEnd ? model.end : offsetIn(cmd.pick, model.start - 3, model.end + 3);
      run.log.setHighWatermark(hw);
      model.setHighWatermark(hw);
      return;
    }
    case "deleteRecords": {
      const offset = offsetIn(cmd.pick, Math.max(0, model.start - 2), model.hw + 1);
      if (offset > model.hw) {
        const p = run.log.deleteRecordsBefore(offset);
        await expectCode(p, ErrorCode.OFFSET_OUT_OF_RANGE, `deleteRecordsBefore ${offset}`);
        return;
      }
      model.deleteRecordsBefore(offset);
      assert.equal(await run.log.deleteRecordsBefore(offset), model.start);
      return;
    }
    case "reopen":
      await run.log.close();
      run.log = await openLog(run);
      return;
    case "crash":
      // Flushed first, so everything is durable; the log is then dropped without a close.
      await run.log.flush();
      run.abandoned.push(run.log);
      run.log = await openLog(run);
      return;
  }
}

/** The log must match the model: offsets, epochs, and every batch from the log start on. */
async function checkAgainstModel(run: Run): Promise<void> {
  const { log, model } = run;
  assert.deepEqual(
    { start: log.logStartOffset, hw: log.highWatermark, end: log.logEndOffset },
    { start: model.start, hw: model.hw, end: model.end },
    "offsets",
  );
  // An entry starting at the log end covers no record, and whether one is kept there differs
  // between the running log and a reopened one (DeleteRecords up to the log end keeps one, the
  // loader drops it, as Kafka's does), so only entries below the log end are compared.
  const live = (entries: readonly EpochEntry[]) =>
    entries.filter((e) => e.startOffset < model.end).map((e) => ({ ...e }));
  assert.deepEqual(live(log.epochEntries()), live(model.epochs), "leader epoch cache");
  const got = [];
  let next = model.start;
  for (let reads = 0; next < model.end; reads++) {
    assert.ok(reads <= 10_000, "the read loop must end");
    const r = await log.read(next, 1 << 20, { maxOffset: model.end });
    assert.ok(r.bytes.length > 0, `read at ${next} (< LEO ${model.end}) returned nothing`);
    assert.ok(r.nextOffset > next, `read at ${next} made no progress`);
    got.push(...decodeBatches(r.bytes));
    next = r.nextOffset;
  }
  assertSameBatches(got, model.batchesFrom(model.start), "contents from the log start");
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "samsa-partition-log-property-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("PartitionLog against an in-memory model", () => {
  it("matches the model after every command", async () => {
    const seed = process.env.SAMSA_FC_SEED;
    await fc.assert(
      fc.asyncProperty(
        configArb,
        fc.array(commandArb, { minLength: 1, maxLength: COMMANDS_MAX, size: "max" }),
        async (overrides, commands) => {
          const dir = await mkdtemp(join(root, "run-"));
          const config = validateLogConfig({
            ...DEFAULT_LOG_CONFIG,
            segmentBytes: SEGMENT_BYTES,
            fileDeleteDelayMs: 0,
            ...overrides,
          });
          const run: Run = {
            dir,
            config,
            log: await openLog({ dir, config }),
            model: new Model(),
            abandoned: [],
            seq: 0,
          };
          try {
            for (const [i, cmd] of commands.entries()) {
              try {
                await runCommand(run, cmd);
                await checkAgainstModel(run);
              } catch (err) {
                const why = err instanceof Error ? err.message : String(err);
                throw new Error(`command ${i} (${cmd.kind}) failed: ${why}`, { cause: err });
              }
            }
          } finally {
            await run.log.close().catch(() => undefined);
            for (const log of run.abandoned) await log.close().catch(() => undefined);
            await rm(dir, { recursive: true, force: true });
          }
        },
      ),
      {
        numRuns: RUNS,
        interruptAfterTimeLimit: PROPERTY_TIME_LIMIT_MS,
        markInterruptAsFailure: false,
        includeErrorInReport: true,
        ...(seed === undefined ? {} : { seed: Number(seed), path: process.env.SAMSA_FC_PATH }),
      },
    );
  });
});

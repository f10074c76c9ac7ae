/**
 * Idempotent producers' state in a partition log (docs/idempotence.md), against real files:
 * batches built byte for byte with producer id, epoch and base sequence in their headers,
 * appended as leader and follower, through roll, close, crash, truncation and expiry. Also the
 * snapshot file's byte layout.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { PartitionLog } from "../../services/broker/log/partition-log.js";
import {
  decodeProducerSnapshot,
  encodeProducerSnapshot,
  listSnapshotOffsets,
  snapshotPath,
} from "../../services/broker/log/producer-snapshot.js";
import {
  inSequence,
  lastSequenceOf,
  PRODUCER_BATCH_WINDOW,
  ProducerStateManager,
  SEQUENCE_MAX,
} from "../../services/broker/log/producer-state.js";
import {
  DEFAULT_LOG_CONFIG,
  type LogConfig,
  validateLogConfig,
} from "../../services/shared/config/log-config.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { silentLogger } from "../../services/shared/logger.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";
import { readBatchHeader } from "../../services/shared/record-batch/header.js";

const T0_MS = 1_700_000_000_000;
const PID = 4242n;

interface Harness {
  dir: string;
  clock: { ms: number };
  open(overrides?: Partial<LogConfig>, expirationMs?: number): Promise<PartitionLog>;
}

async function harness(t: TestContext): Promise<Harness> {
  const root = await mkdtemp(join(tmpdir(), "samsa-producer-state-"));
  const opened: PartitionLog[] = [];
  t.after(async () => {
    for (const l of opened) await l.close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  const dir = join(root, "t-0");
  const clock = { ms: T0_MS };
  return {
    dir,
    clock,
    async open(overrides = {}, expirationMs) {
      const log = await FilePartitionLog.open({
        dir,
        topic: "t",
        partition: 0,
        config: validateLogConfig({ ...DEFAULT_LOG_CONFIG, fileDeleteDelayMs: 0, ...overrides }),
        logger: silentLogger(),
        now: () => clock.ms,
        producerIdExpirationMs: expirationMs,
      });
      opened.push(log);
      return log;
    },
  };
}

/** One idempotent batch of `count` records starting at sequence `seq`. */
function batch(seq: number, count = 2, epoch = 0, pid = PID, timestamp = T0_MS): Buffer {
  const records = Array.from({ length: count }, (_, i) => ({
    key: null,
    value: Buffer.from(`v${seq + i}`),
    timestamp,
  }));
  return buildBatch(records, { producerId: pid, producerEpoch: epoch, baseSequence: seq });
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    if (isSamsaError(err)) return err.code;
    throw err;
  }
}

async function values(log: PartitionLog): Promise<string[]> {
  const r = await log.read(log.logStartOffset, 1 << 24, { maxOffset: log.logEndOffset });
  return decodeBatches(r.bytes).flatMap((b) => b.records.map((x) => String(x.value)));
}

describe("sequence helpers", () => {
  it("wrap past the int32 maximum", () => {
    assert.equal(lastSequenceOf({ baseSequence: SEQUENCE_MAX - 1, lastOffsetDelta: 2 }), 0);
    assert.ok(inSequence(SEQUENCE_MAX, 0));
    assert.ok(inSequence(4, 5));
    assert.ok(!inSequence(4, 6));
  });
});

describe("leader appends of an idempotent producer", () => {
  it("appends the next sequence, answers a re-send with its first offsets and writes it once", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const a = await log.append(batch(0));
    const b = await log.append(batch(2));
    assert.deepEqual([a.baseOffset, a.lastOffset, b.baseOffset, b.lastOffset], [0, 1, 2, 3]);
    const again = await log.append(batch(0));
    assert.deepEqual(again, { baseOffset: 0, lastOffset: 1, recordCount: 2 });
    const againB = await log.append(batch(2));
    assert.equal(againB.baseOffset, 2);
    assert.equal(log.logEndOffset, 4);
    assert.deepEqual(await values(log), ["v0", "v1", "v2", "v3"]);
    assert.equal(log.producerStateStats().duplicates, 2);
    assert.equal(log.producerStateStats().activeProducers, 1);
  });

  it("dedupes a re-send queued with its original in one group commit", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const [a, dup, b] = await Promise.all([
      log.append(batch(0)),
      log.append(batch(0)),
      log.append(batch(2)),
    ]);
    assert.equal(a.baseOffset, 0);
    assert.equal(dup.baseOffset, 0);
    assert.equal(b.baseOffset, 2);
    assert.equal(log.logEndOffset, 4);
  });

  it("remembers the last 5 batches: an older re-send is out of order", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    for (let i = 0; i <= PRODUCER_BATCH_WINDOW; i++) await log.append(batch(i * 2));
    // Batch 1 (seq 2) is the oldest still in the window; batch 0 fell out of it.
    assert.equal((await log.append(batch(2))).baseOffset, 2);
    assert.equal(await codeOf(log.append(batch(0))), ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal(log.logEndOffset, (PRODUCER_BATCH_WINDOW + 1) * 2);
  });

  it("refuses a gap, an unknown producer past sequence 0 and an old epoch, writing nothing", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    assert.equal(await codeOf(log.append(batch(5))), ErrorCode.UNKNOWN_PRODUCER_ID);
    await log.append(batch(0, 2, 3));
    assert.equal(await codeOf(log.append(batch(5, 2, 3))), ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal(await codeOf(log.append(batch(2, 2, 2))), ErrorCode.INVALID_PRODUCER_EPOCH);
    // A new epoch must start at 0, and then the old one is fenced.
    assert.equal(await codeOf(log.append(batch(2, 2, 4))), ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal((await log.append(batch(0, 1, 4))).baseOffset, 2);
    assert.equal(await codeOf(log.append(batch(2, 2, 3))), ErrorCode.INVALID_PRODUCER_EPOCH);
    assert.equal(log.logEndOffset, 3);
    assert.equal(log.producerStateStats().fencedEpochs, 2);
  });

  it("checks every batch of a multi-batch append against the ones before it", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const r = await log.append(Buffer.concat([batch(0), batch(2)]));
    assert.deepEqual([r.baseOffset, r.lastOffset], [0, 3]);
    const dup = await log.append(Buffer.concat([batch(0), batch(2)]));
    assert.deepEqual([dup.baseOffset, dup.lastOffset], [0, 3]);
    // A gap in the second batch refuses the whole append.
    assert.equal(
      await codeOf(log.append(Buffer.concat([batch(4), batch(9)]))),
      ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    );
    assert.equal(log.logEndOffset, 4);
    assert.equal((await log.append(batch(4))).baseOffset, 4);
  });

  it("keeps producers apart and ignores batches without a producer id", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch(0, 1, 0, 1n));
    await log.append(batch(0, 1, 0, 2n));
    await log.append(buildBatch([{ key: null, value: Buffer.from("plain") }]));
    await log.append(buildBatch([{ key: null, value: Buffer.from("plain") }]));
    assert.equal((await log.append(batch(0, 1, 0, 1n))).baseOffset, 0);
    assert.equal((await log.append(batch(1, 1, 0, 2n))).baseOffset, 4);
    assert.equal(log.producerStateStats().activeProducers, 2);
  });
});

describe("producer state on disk", () => {
  it("survives a clean close: a re-send after reopening is a duplicate", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch(0));
    await log.append(batch(2));
    await log.close();
    assert.deepEqual(await listSnapshotOffsets(h.dir), [4]);
    const again = await h.open();
    assert.equal((await again.append(batch(2))).baseOffset, 2);
    assert.equal((await again.append(batch(4))).baseOffset, 4);
  });

  it("is rebuilt after a crash from the snapshot of the last roll plus the tail", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    const payload = "x".repeat(300);
    let seq = 0;
    for (let i = 0; i < 8; i++) {
      await log.append(
        buildBatch([{ key: null, value: Buffer.from(payload), timestamp: T0_MS }], {
          producerId: PID,
          producerEpoch: 0,
          baseSequence: seq++,
        }),
      );
    }
    assert.ok(log.segmentCount > 2, "the log rolled");
    const snapshots = await listSnapshotOffsets(h.dir);
    assert.deepEqual(snapshots, log.segmentBaseOffsets().slice(1));
    // No close: the next open recovers (no snapshot at the end, the tail is read).
    const again = await h.open({ segmentBytes: 1024 });
    assert.equal(again.logEndOffset, 8);
    const dup = await again.append(
      buildBatch([{ key: null, value: Buffer.from(payload), timestamp: T0_MS }], {
        producerId: PID,
        producerEpoch: 0,
        baseSequence: 7,
      }),
    );
    assert.equal(dup.baseOffset, 7);
    assert.equal(await codeOf(again.append(batch(9, 1))), ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert.equal((await again.append(batch(8, 1))).baseOffset, 8);
  });

  it("skips a corrupt snapshot and reads the log instead", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch(0));
    await log.close();
    const path = snapshotPath(h.dir, 2);
    const bytes = await readFile(path);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(path, bytes);
    const again = await h.open();
    assert.equal((await again.append(batch(0))).baseOffset, 0);
    assert.equal(again.logEndOffset, 2);
  });

  it("follows truncation: state comes back to what the log below the cut says", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch(0));
    await log.append(batch(2));
    await log.append(batch(4));
    await log.truncateTo(4);
    assert.equal(log.logEndOffset, 4);
    // Sequence 4 was cut: it is the next one again, not a duplicate.
    const r = await log.append(batch(4));
    assert.equal(r.baseOffset, 4);
    assert.equal(log.logEndOffset, 6);
    await log.truncateFullyAndStartAt(10);
    assert.equal(log.producerStateStats().activeProducers, 0);
    assert.equal(await codeOf(log.append(batch(6))), ErrorCode.UNKNOWN_PRODUCER_ID);
  });

  it("follows truncation below a roll: the nearest snapshot below the cut is used", async (t) => {
    const h = await harness(t);
    const log = await h.open({ segmentBytes: 1024 });
    const payload = "y".repeat(300);
    for (let seq = 0; seq < 8; seq++) {
      await log.append(
        buildBatch([{ key: null, value: Buffer.from(payload), timestamp: T0_MS }], {
          producerId: PID,
          producerEpoch: 0,
          baseSequence: seq,
        }),
      );
    }
    const bases = log.segmentBaseOffsets();
    const cut = bases[1]! + 1;
    await log.truncateTo(cut);
    assert.equal(log.logEndOffset, cut);
    assert.ok((await listSnapshotOffsets(h.dir)).every((o) => o <= cut));
    assert.equal(
      await codeOf(log.append(batch(cut + 1, 1))),
      ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
    );
    assert.equal((await log.append(batch(cut, 1))).baseOffset, cut);
  });

  it("is built by follower appends, so the follower dedupes as leader", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    const a = batch(0);
    a.writeBigInt64BE(0n, 0);
    const b = batch(2);
    b.writeBigInt64BE(2n, 0);
    await log.appendAsFollower(Buffer.concat([a, b]));
    assert.equal(log.producerStateStats().activeProducers, 1);
    assert.equal((await log.append(batch(2))).baseOffset, 2);
    assert.equal((await log.append(batch(4))).baseOffset, 4);
  });
});

describe("producer expiry", () => {
  it("drops producers idle for producer.id.expiration.ms, and skips them on load", async (t) => {
    const h = await harness(t);
    const log = await h.open({}, 60_000);
    await log.append(batch(0, 1, 0, 1n, T0_MS));
    await log.append(batch(0, 1, 0, 2n, T0_MS + 50_000));
    h.clock.ms = T0_MS + 60_000;
    assert.equal(await log.removeExpiredProducers(), 1);
    assert.equal(log.producerStateStats().activeProducers, 1);
    assert.equal(await codeOf(log.append(batch(1, 1, 0, 1n))), ErrorCode.UNKNOWN_PRODUCER_ID);
    await log.close();
    h.clock.ms = T0_MS + 200_000;
    const again = await h.open({}, 60_000);
    assert.equal(again.producerStateStats().activeProducers, 0);
  });
});

describe("snapshot file format", () => {
  it("encodes entries byte for byte and rejects damage", () => {
    const state = new ProducerStateManager();
    const bytes = encodeProducerSnapshot([
      {
        producerId: 7n,
        epoch: 3,
        lastTimestamp: 1000,
        batches: [{ firstSeq: 5, lastSeq: 6, firstOffset: 10, lastOffset: 11 }],
      },
    ]);
    assert.equal(bytes.length, 10 + 19 + 24);
    assert.equal(bytes.readInt16BE(0), 1);
    assert.equal(bytes.readInt32BE(6), 1);
    assert.equal(bytes.readBigInt64BE(10), 7n);
    assert.equal(bytes.readInt16BE(18), 3);
    assert.equal(bytes.readBigInt64BE(20), 1000n);
    assert.equal(bytes.readInt8(28), 1);
    assert.equal(bytes.readInt32BE(29), 5);
    assert.equal(bytes.readBigInt64BE(45), 11n);
    const decoded = decodeProducerSnapshot(bytes);
    for (const e of decoded) state.load(e);
    assert.equal(state.entry(7n)?.batches[0]?.lastOffset, 11);
    const bad = Buffer.from(bytes);
    bad[40]! ^= 1;
    assert.throws(() => decodeProducerSnapshot(bad), /CRC/);
  });

  it("keeps the header fields of appended batches as the producer sent them", async (t) => {
    const h = await harness(t);
    const log = await h.open();
    await log.append(batch(0, 3, 9));
    const r = await log.read(0, 1 << 20, { maxOffset: log.logEndOffset });
    const header = readBatchHeader(r.bytes, 0);
    assert.deepEqual([header.producerId, header.producerEpoch, header.baseSequence], [PID, 9, 0]);
    assert.ok((await readdir(h.dir)).every((n) => !n.endsWith(".snapshot")));
  });
});

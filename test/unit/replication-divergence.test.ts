/**
 * Follower truncation by leader epoch, on real partition logs (files, batches, epoch caches):
 * the KIP-101, KIP-279 and KIP-320 cases. Each broker is a real `Partition` over a real
 * `FilePartitionLog`; a replica fetch is the leader's `recordFollowerFetch` + a read up to its
 * log end, handed to the follower's `applyFetch`, exactly what the ReplicaFetch handler and the
 * fetcher do (without the network). At the end the logs must hold the same batches (same
 * offsets, epochs and records) byte for byte.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { FilePartitionLog } from "../../services/broker/log/file-partition-log.js";
import type { PartitionLog } from "../../services/broker/log/partition-log.js";
import { Partition } from "../../services/broker/partition.js";
import { divergingEpoch, truncationOffset } from "../../services/broker/replication/divergence.js";
import type { IsrChange } from "../../services/broker/replication/isr-updater.js";
import { DEFAULT_LOG_CONFIG, validateLogConfig } from "../../services/shared/config/log-config.js";
import type { PartitionState } from "../../services/shared/etcd/keys.js";
import { silentLogger } from "../../services/shared/logger.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";

const TOPIC = "t";
const FETCH_BYTES = 1 << 20;
const ROUNDS_MAX = 20;

interface Broker {
  readonly id: number;
  readonly dir: string;
  log: PartitionLog;
  part: Partition;
}

/** Opens (or reopens, after a "crash") broker `id`'s log and partition. */
async function openBroker(root: string, id: number): Promise<Broker> {
  const dir = join(root, `broker-${id}`, `${TOPIC}-0`);
  const log = await FilePartitionLog.open({
    dir,
    topic: TOPIC,
    partition: 0,
    config: validateLogConfig({ ...DEFAULT_LOG_CONFIG, fileDeleteDelayMs: 0 }),
    logger: silentLogger(),
  });
  const part = new Partition(TOPIC, 0, log, {
    brokerId: id,
    minInsyncReplicas: () => 1,
    replicaLagTimeMsMax: 60_000,
    // ISR writes always succeed here: etcd is not what these cases are about.
    writeIsr: async (change: IsrChange) => ({
      kind: "written",
      state: state(change.leaderId, change.leaderEpoch, change.apply([change.leaderId], [1, 2, 3])),
    }),
    logger: silentLogger(),
  });
  return { id, dir, log, part };
}

function state(leader: number, leaderEpoch: number, isr: readonly number[]): PartitionState {
  return { replicas: [1, 2, 3], leader, leaderEpoch, isr, partitionEpoch: leaderEpoch };
}

async function cluster(t: TestContext, ids: number[]): Promise<Map<number, Broker>> {
  const root = await mkdtemp(join(tmpdir(), "samsa-divergence-"));
  const brokers = new Map<number, Broker>();
  for (const id of ids) brokers.set(id, await openBroker(root, id));
  t.after(async () => {
    for (const b of brokers.values()) await b.log.close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  return brokers;
}

/** Makes `leader` the leader in `epoch` and the others followers (as applyState from etcd). */
async function elect(brokers: Map<number, Broker>, leader: number, epoch: number, isr: number[]) {
  for (const b of brokers.values()) await b.part.applyState(state(leader, epoch, isr));
}

/** The leader appends one batch of `values`; returns its base offset. */
async function produce(b: Broker, ...values: string[]): Promise<number> {
  const records = values.map((v) => ({ key: null, value: Buffer.from(v) }));
  const r = await b.part.appendAsLeader(buildBatch(records), { acksAll: false, timeoutMs: 1_000 });
  return r.baseOffset;
}

/** One replica fetch of `follower` from `leader`, as the handler and the fetcher do it. */
async function fetchOnce(
  leader: Broker,
  follower: Broker,
  maxBytes = FETCH_BYTES,
): Promise<boolean> {
  const { fetchOffset, lastFetchedEpoch } = follower.part.fetchPosition();
  const diverged = leader.part.recordFollowerFetch(follower.id, 1, fetchOffset, lastFetchedEpoch);
  const log = leader.log;
  const records = diverged
    ? Buffer.alloc(0)
    : (await log.read(fetchOffset, maxBytes, { maxOffset: log.logEndOffset })).bytes;
  await follower.part.applyFetch(follower.part.leaderEpoch, {
    topic: TOPIC,
    partition: 0,
    errorCode: 0,
    errorMessage: "",
    highWatermark: String(log.highWatermark),
    logStartOffset: String(log.logStartOffset),
    logEndOffset: String(log.logEndOffset),
    records,
    divergingEpoch: diverged
      ? { epoch: diverged.epoch, endOffset: String(diverged.endOffset) }
      : null,
  });
  return diverged !== undefined || records.length > 0;
}

/** Fetches until nothing changes. */
async function catchUp(leader: Broker, follower: Broker): Promise<void> {
  for (let i = 0; i < ROUNDS_MAX; i++) if (!(await fetchOnce(leader, follower))) return;
  assert.fail("follower did not catch up");
}

/** Every batch of a log: base offset, epoch and record values. */
async function contents(log: PartitionLog) {
  const r = await log.read(log.logStartOffset, FETCH_BYTES, { maxOffset: log.logEndOffset });
  return decodeBatches(r.bytes).map((b) => ({
    baseOffset: b.header.baseOffset,
    epoch: b.header.partitionLeaderEpoch,
    values: b.records.map((x) => x.value?.toString()),
  }));
}

describe("truncation by leader epoch (real logs)", () => {
  test("KIP-101 case 1: a follower restarted with a stale high watermark keeps committed records", async (t) => {
    const brokers = await cluster(t, [1, 2]);
    const a = brokers.get(1)!;
    await elect(brokers, 1, 0, [1, 2]);
    await produce(a, "m1");
    await produce(a, "m2");
    let b = brokers.get(2)!;
    await fetchOnce(a, b); // B gets m1, m2; A's HW moves only at B's next fetch
    // B's next fetch reaches A (A's HW becomes 2), but B crashes before the answer arrives.
    const { fetchOffset, lastFetchedEpoch } = b.part.fetchPosition();
    a.part.recordFollowerFetch(2, 1, fetchOffset, lastFetchedEpoch);
    assert.equal(a.log.highWatermark, 2, "both records committed on the leader");
    assert.ok(b.log.highWatermark < 2, "the follower has not learned the new HW yet");
    // B crashes and restarts, then A dies and B leads epoch 1.
    await b.log.close();
    b = await openBroker(join(b.dir, "..", ".."), 2);
    brokers.set(2, b);
    await b.part.applyState(state(1, 0, [1, 2]));
    assert.equal(b.log.logEndOffset, 2, "restarting never truncates to the high watermark");
    await b.part.applyState(state(2, 1, [2]));
    assert.deepEqual(
      (await contents(b.log)).flatMap((x) => x.values),
      ["m1", "m2"],
      "the new leader has every committed record",
    );
    // A comes back as a follower: nothing to truncate, and it stays identical.
    await a.part.applyState(state(2, 1, [2]));
    await produce(b, "m3");
    await catchUp(b, a);
    assert.deepEqual(await contents(a.log), await contents(b.log));
  });

  test("KIP-101 case 2: logs that diverged after a double crash converge on the new leader's", async (t) => {
    const brokers = await cluster(t, [1, 2]);
    const [a, b] = [brokers.get(1)!, brokers.get(2)!];
    await elect(brokers, 1, 0, [1, 2]);
    await produce(a, "m1");
    await fetchOnce(a, b); // B has m1 only
    await produce(a, "m2"); // never replicated, never committed
    // Both crash; B comes back first and leads epoch 1, writing m3 at offset 1.
    await b.part.applyState(state(2, 1, [2]));
    assert.equal(await produce(b, "m3"), 1);
    // A comes back as follower with [m1, m2] in epoch 0: the leader says epoch 0 ends at 1.
    await a.part.applyState(state(2, 1, [2]));
    const { fetchOffset, lastFetchedEpoch } = a.part.fetchPosition();
    assert.deepEqual(
      b.part.recordFollowerFetch(1, 1, fetchOffset, lastFetchedEpoch),
      { epoch: 0, endOffset: 1 },
      "the leader answers the divergence instead of data",
    );
    await catchUp(b, a);
    assert.deepEqual(
      (await contents(a.log)).flatMap((x) => x.values),
      ["m1", "m3"],
    );
    assert.deepEqual(await contents(a.log), await contents(b.log), "byte-level the same batches");
  });

  test("KIP-279: a follower with an epoch the leader never had truncates in two rounds", async (t) => {
    const brokers = await cluster(t, [1, 2, 3]);
    const [a, b, c] = [brokers.get(1)!, brokers.get(2)!, brokers.get(3)!];
    // Epoch 0: A leads, writes m0 m1; everyone has them.
    await elect(brokers, 1, 0, [1, 2, 3]);
    await produce(a, "m0", "m1");
    await catchUp(a, b);
    await catchUp(a, c);
    // Epoch 1: B leads, writes e1-a and e1-b; only C gets them.
    await elect(brokers, 2, 1, [2, 3]);
    await produce(b, "e1-a");
    await produce(b, "e1-b");
    await catchUp(b, c);
    // Epoch 2: A leads briefly (it never saw epoch 1), writes x, y; nobody gets them.
    await a.part.applyState(state(1, 2, [1]));
    await produce(a, "x");
    await produce(a, "y");
    // Epoch 3: C leads (it has epoch 1), writes e3; A returns as its follower.
    await c.part.applyState(state(3, 3, [3]));
    await produce(c, "e3");
    await a.part.applyState(state(3, 3, [3]));
    // Round 1: A's last epoch 2 → C's largest epoch ≤ 2 is 1, ending at 4 (where 3 starts);
    // A has no epoch 1: it truncates to the end of its own epoch 0 (offset 2) and asks again.
    const first = a.part.fetchPosition();
    assert.equal(first.lastFetchedEpoch, 2);
    const d1 = c.part.recordFollowerFetch(1, 1, first.fetchOffset, first.lastFetchedEpoch)!;
    assert.deepEqual(d1, { epoch: 1, endOffset: 4 });
    assert.deepEqual(truncationOffset(d1, a.log.endOffsetForEpoch(1), a.log.logEndOffset), {
      offset: 2,
      complete: false,
    });
    await catchUp(c, a);
    assert.deepEqual(
      (await contents(a.log)).flatMap((x) => x.values),
      ["m0", "m1", "e1-a", "e1-b", "e3"],
    );
    assert.deepEqual(await contents(a.log), await contents(c.log));
  });

  test("KIP-320: the divergence check runs on every fetch, not only on becoming a follower", async (t) => {
    const brokers = await cluster(t, [1, 2]);
    const [a, b] = [brokers.get(1)!, brokers.get(2)!];
    await elect(brokers, 1, 0, [1, 2]);
    await produce(a, "m0");
    await catchUp(a, b);
    await produce(a, "lost");
    // B takes over in epoch 1 while A (the old leader) still has an uncommitted tail, and A is
    // made a follower without any truncation on the transition.
    await b.part.applyState(state(2, 1, [2]));
    await produce(b, "n1");
    await a.part.applyState(state(2, 1, [2]));
    assert.equal(a.log.logEndOffset, 2, "no truncation when becoming a follower");
    await catchUp(b, a);
    assert.deepEqual(
      (await contents(a.log)).flatMap((x) => x.values),
      ["m0", "n1"],
    );
    assert.deepEqual(await contents(a.log), await contents(b.log));
  });

  test("a leader that began an epoch but appended nothing in it converges as a follower", async (t) => {
    const brokers = await cluster(t, [1, 2]);
    const [a, b] = [brokers.get(1)!, brokers.get(2)!];
    await elect(brokers, 1, 0, [1, 2]);
    await produce(a, "m0");
    await catchUp(a, b);
    // A leads epoch 1 (its cache gets epoch 1 at its log end) but appends nothing; B, which
    // never heard of epoch 1, then leads epoch 2 and writes.
    await a.part.applyState(state(1, 1, [1, 2]));
    assert.equal(a.log.latestEpoch, 1);
    await b.part.applyState(state(2, 2, [2]));
    await produce(b, "n2");
    await a.part.applyState(state(2, 2, [2]));
    await catchUp(b, a); // fails after ROUNDS_MAX if the same divergence comes back forever
    assert.deepEqual(
      (await contents(a.log)).flatMap((x) => x.values),
      ["m0", "n2"],
    );
    assert.deepEqual(a.log.epochEntries(), b.log.epochEntries(), "the same epoch history");
  });

  test("the leader-side check: no divergence for an empty follower or a matching epoch", () => {
    assert.equal(divergingEpoch(0, -1, { epoch: -1, endOffset: -1 }), undefined);
    assert.equal(divergingEpoch(5, 2, { epoch: 2, endOffset: 9 }), undefined);
    assert.deepEqual(divergingEpoch(5, 2, { epoch: 2, endOffset: 4 }), { epoch: 2, endOffset: 4 });
    assert.deepEqual(divergingEpoch(5, 2, { epoch: 1, endOffset: 7 }), { epoch: 1, endOffset: 7 });
  });
});

/**
 * The TypeScript GroupConsumer in a real cluster (etcd, a controller, 2 brokers and 2 gateways
 * as processes; sessions of 3 s): 3 consumers of one group share 6 partitions, each to exactly
 * one, and a second group reads every record too; a member joins, leaves gracefully and is
 * SIGKILLed (a child process): the partitions move within the session timeout, every record is
 * processed, and nothing committed is processed again; an eachMessage slower than the session
 * keeps its membership; a static member's restart rebalances nobody else.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  GroupClient,
  GroupConsumer,
  type GroupConsumerOptions,
  Producer,
} from "../../services/client/index.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import {
  ChildMember,
  EventLog,
  exclusive,
  localMember,
  type MemberView,
} from "./group-consumer-helpers.js";
import { GROUP_GATEWAY_ARGS, TEST_SESSION_MS } from "./groups-helpers.js";

const PARTITIONS = 6;
/** A rebalance after a join or a leave, ms (a few heartbeats). */
const REBALANCE_TIMEOUT_MS = 5_000;
/** After a SIGKILL: the session, then a rebalance. */
const CRASH_MOVE_TIMEOUT_MS = TEST_SESSION_MS + REBALANCE_TIMEOUT_MS;
/** Every record produced is processed within this, ms. */
const DRAIN_TIMEOUT_MS = 20_000;
const AUTO_COMMIT_MS = 200;

describe("group consumer", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let producer: Producer;
  const topic = uniqueTopic("gc");
  const all = [...Array(PARTITIONS).keys()].map((p) => `${topic}:${p}`);
  const consumers: GroupConsumer[] = [];
  const children: ChildMember[] = [];
  /** Records produced per partition (all start at offset 0). */
  const ends = new Map<number, number>([...Array(PARTITIONS).keys()].map((p) => [p, 0]));

  const base = (group: string): GroupConsumerOptions => ({
    groupId: group,
    gateways: cluster.gateways,
    bootstrapServers: cluster.bootstrap,
    autoOffsetReset: "earliest",
    autoCommitIntervalMs: AUTO_COMMIT_MS,
    maxWaitMs: 100,
  });
  const member = (name: string, log: EventLog, group: string, extra = {}) => {
    const m = localMember(name, log, { ...base(group), ...extra }, topic);
    consumers.push(m.consumer);
    return m;
  };
  const produceSome = async (perPartition: number) => {
    for (let p = 0; p < PARTITIONS; p++) {
      const records = Array.from({ length: perPartition }, (_, i) => ({
        value: `v${ends.get(p)! + i}`,
        partition: p,
      }));
      await producer.send(topic, records, { acks: "all" });
      ends.set(p, ends.get(p)! + perPartition);
    }
  };
  const settled = (
    ms: readonly MemberView[],
    counts?: number[],
    timeoutMs = REBALANCE_TIMEOUT_MS,
  ) =>
    waitFor(
      () =>
        exclusive(ms, all) &&
        (counts === undefined ||
          ms
            .map((m) => m.partitions().length)
            .sort()
            .join() === [...counts].sort().join()),
      { timeoutMs, message: `members share the partitions ${counts ?? ""}` },
    );

  before(async () => {
    cluster = await startTestCluster({ brokers: 2, gateways: 2, gatewayArgs: GROUP_GATEWAY_ARGS });
    await createTopic(clients.admin(cluster.controllers[0]!), topic, PARTITIONS);
    await waitForLeaders(cluster, clients, topic, PARTITIONS);
    producer = new Producer({ bootstrapServers: cluster.bootstrap });
  });
  after(async () => {
    for (const c of children) c.kill();
    await Promise.all(consumers.map((c) => c.disconnect().catch(() => undefined)));
    await producer?.close();
    clients.close();
    await cluster?.stop();
  });

  test("3 consumers share 6 partitions (one owner each); a second group reads every record", async () => {
    const group = uniqueTopic("g3");
    const log = new EventLog();
    const other = new EventLog();
    await produceSome(20);
    const ms = [member("a", log, group), member("b", log, group), member("c", log, group)];
    const solo = member("solo", other, uniqueTopic("g1"));
    await settled(ms, [2, 2, 2]);
    await waitFor(() => solo.partitions().length === PARTITIONS, { message: "solo owns all" });
    await produceSome(20);
    await waitFor(() => log.covers(ends) && other.covers(ends), {
      timeoutMs: DRAIN_TIMEOUT_MS,
      message: "both groups processed every record",
    });
    // Each partition's records produced once the group settled went to the one member owning it
    // (before, the first member to join owned all six for a moment).
    for (let p = 0; p < PARTITIONS; p++) {
      const late = log.events.filter((e) => e.ev === "rec" && e.p === p && e.o >= 20);
      const who = new Set(late.map((e) => e.member));
      assert.equal(who.size, 1, `partition ${p} read by ${[...who]}`);
      const owner = ms.find((m) => m.partitions().includes(`${topic}:${p}`))!;
      assert.deepEqual([...who], [owner.name]);
    }
    // Revocations committed what was processed: nothing was read twice.
    assert.equal(log.duplicates(), 0);
    assert.equal(other.duplicates(), 0);
    for (const m of [...ms, solo]) await m.consumer.disconnect();
    for (const m of [...ms, solo]) await m.running;
  });

  test("join, graceful leave and SIGKILL move partitions; every record processed, nothing committed again", async () => {
    const group = uniqueTopic("gmove");
    const log = new EventLog();
    const a = member("a", log, group);
    const b = member("b", log, group);
    const c = new ChildMember("c", log, {
      gateways: cluster.gateways,
      bootstrap: cluster.bootstrap,
      group,
      topic,
      sessionTimeoutMs: TEST_SESSION_MS,
      autoCommitIntervalMs: AUTO_COMMIT_MS,
    });
    children.push(c);
    let producing = true;
    const load = (async () => {
      while (producing) await produceSome(5);
    })();
    try {
      await settled([a, b, c], [2, 2, 2], 15_000); // the child needs to start tsx first
      const d = member("d", log, group);
      await settled([a, b, c, d], [1, 1, 2, 2]);
      const leftAt = Date.now();
      await d.consumer.disconnect();
      await settled([a, b, c], [2, 2, 2]);
      const leaveMs = Date.now() - leftAt;
      assert.ok(leaveMs < REBALANCE_TIMEOUT_MS, `graceful leave took ${leaveMs} ms`);
      const killedAt = Date.now();
      c.kill();
      await settled([a, b], [3, 3], CRASH_MOVE_TIMEOUT_MS);
      const movedMs = Date.now() - killedAt;
      assert.ok(movedMs <= CRASH_MOVE_TIMEOUT_MS, `after the kill: ${movedMs} ms`);
    } finally {
      producing = false;
      await load;
    }
    await waitFor(() => log.covers(ends), {
      timeoutMs: DRAIN_TIMEOUT_MS,
      message: "every record processed",
    });
    assert.ok(
      log.events.some((e) => e.member === "c" && e.ev === "commit"),
      "the child committed",
    );
    assert.deepEqual(log.reprocessedAfterCommit(), [], "nothing committed was processed again");
    for (const m of [a, b]) await m.consumer.disconnect();
  });

  test("the async iterator with pause, resume and seek", async () => {
    const consumer = new GroupConsumer(base(uniqueTopic("giter")));
    consumers.push(consumer);
    consumer.subscribe(topic);
    const p0 = { topic, partition: 0 };
    consumer.pause([p0]); // before the assignment: kept for when it comes
    const it = consumer[Symbol.asyncIterator]();
    const seen = new Map<number, number>();
    const read = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const r = (await it.next()).value!;
        seen.set(r.partition, (seen.get(r.partition) ?? 0) + 1);
      }
    };
    const others = [...ends].filter(([p]) => p !== 0).reduce((s, [, n]) => s + n, 0);
    await read(others);
    assert.equal(seen.get(0), undefined, "nothing of the paused partition");
    assert.deepEqual(consumer.paused(), [p0]);
    consumer.resume([p0]);
    await read(ends.get(0)!);
    assert.equal(seen.get(0), ends.get(0), "all of it after the resume");
    consumer.seek({ topic, partition: 1, offset: 0 });
    const again = (await it.next()).value!;
    assert.deepEqual([again.partition, again.offset], [1, 0], "read again from the seek");
    await it.return();
    await consumer.disconnect();
  });

  test("an eachMessage slower than the session keeps the membership", async () => {
    const group = uniqueTopic("gslow");
    let lost = 0;
    const slowMs = TEST_SESSION_MS + 1_500;
    const consumer = new GroupConsumer({
      ...base(group),
      rebalanceListener: {
        onPartitionsLost: () => {
          lost++;
        },
      },
    });
    consumers.push(consumer);
    consumer.subscribe([topic]);
    const seen: number[] = [];
    let slowDone = false;
    const running = consumer.run({
      eachMessage: async ({ message }) => {
        if (seen.length === 0) {
          await new Promise((r) => setTimeout(r, slowMs));
          slowDone = true;
        }
        seen.push(message.offset);
      },
    });
    await waitFor(() => consumer.assignment().length === PARTITIONS, { message: "owns all" });
    await waitFor(() => slowDone, { timeoutMs: slowMs + 5_000, message: "the slow record ended" });
    const id = consumer.memberId;
    const groups = new GroupClient({ gateways: cluster.gateways });
    const [d] = await groups.describeGroups([group]);
    groups.close();
    assert.deepEqual(
      d!.members.map((m) => m.memberId),
      [id],
      "still the same single member",
    );
    assert.equal(lost, 0, "no partition lost");
    assert.equal(consumer.assignment().length, PARTITIONS);
    await consumer.disconnect();
    await running;
  });

  test("a static member's restart rebalances nobody else", async () => {
    const group = uniqueTopic("gstatic");
    const log = new EventLog();
    const a = member("a", log, group, { groupInstanceId: "a" });
    const b = member("b", log, group, { groupInstanceId: "b" });
    await settled([a, b], [3, 3]);
    const before = { a: a.partitions(), b: b.partitions(), bEpoch: b.consumer.memberEpoch };
    await a.consumer.disconnect();
    const a2 = member("a2", log, group, { groupInstanceId: "a" });
    await waitFor(() => a2.partitions().length === 3, { message: "a2 has a's partitions" });
    assert.deepEqual(a2.partitions(), before.a);
    const beats = b.consumer.heartbeats;
    await waitFor(() => b.consumer.heartbeats >= beats + 3, { message: "b heartbeats" });
    assert.deepEqual(b.partitions(), before.b);
    assert.equal(b.consumer.memberEpoch, before.bEpoch, "no new epoch for b: no rebalance");
    for (const m of [a2, b]) await m.consumer.disconnect();
  });
});

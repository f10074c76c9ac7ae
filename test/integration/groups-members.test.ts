/**
 * Consumer groups in a real cluster (etcd, a controller, 2 brokers and 2 gateways as
 * processes), members speaking the raw GroupService protocol over gRPC: 3 members share 6
 * partitions (each partition to exactly one member, at every moment); a second group gets every
 * partition too; a member joining, leaving and going silent (a crash) moves partitions within
 * the session timeout; a silent (stale) member cannot commit once its partitions moved; a static
 * member's restart moves nothing; DescribeGroups shows the lag of N produced and M committed.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../../services/shared/errors.js";
import type { GroupServiceClient } from "../../services/shared/generated/samsa/v1/GroupService.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { fromServiceError } from "../../services/shared/grpc/errors.js";
import { groupService } from "../../services/shared/grpc/proto.js";
import { waitFor } from "../support/wait-for.js";
import {
  CALL_DEADLINE_MS,
  Clients,
  createTopic,
  produce,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import {
  exclusiveCover,
  GROUP_GATEWAY_ARGS,
  HeartbeatMember,
  TEST_SESSION_MS,
} from "./groups-helpers.js";

const PARTITIONS = 6;
/** Time for a rebalance after a join or a leave, ms (a few heartbeats). */
const REBALANCE_TIMEOUT_MS = 5_000;
/** After a crash: the session, then a rebalance. */
const CRASH_MOVE_TIMEOUT_MS = TEST_SESSION_MS + REBALANCE_TIMEOUT_MS;

describe("groups: members", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const groupClients: GroupServiceClient[] = [];
  const topic = uniqueTopic("grouped");
  const all = [...Array(PARTITIONS).keys()].map((p) => `${topic}:${p}`);
  const members: HeartbeatMember[] = [];
  /** A GroupService client of gateway `i` (0-based). */
  const gw = (i: number) => groupClients[i]!;
  const member = (group: string, i = 0, options = {}) => {
    const m = new HeartbeatMember(() => gw(i), group, [topic], options);
    members.push(m);
    return m;
  };
  /** Waits until `ms` share the partitions, each to one member, and are all stable. */
  const settled = (ms: HeartbeatMember[], timeoutMs = REBALANCE_TIMEOUT_MS, counts?: number[]) =>
    waitFor(
      () =>
        exclusiveCover(ms, all) &&
        (counts === undefined || ms.every((m, i) => m.partitions.length === counts[i])) &&
        new Set(ms.map((m) => m.epoch)).size === 1,
      { timeoutMs, message: "members share the partitions" },
    );

  before(async () => {
    cluster = await startTestCluster({ brokers: 2, gateways: 2, gatewayArgs: GROUP_GATEWAY_ARGS });
    for (const address of cluster.gateways)
      groupClients.push(createClient(groupService.Client, address));
    await createTopic(clients.admin(cluster.controllers[0]!), topic, PARTITIONS);
    await waitForLeaders(cluster, clients, topic, PARTITIONS);
  });
  after(async () => {
    for (const m of members) m.crash();
    for (const c of groupClients) c.close();
    clients.close();
    await cluster?.stop();
  });

  test("3 members share 6 partitions, 2 each; a second group gets all 6", async () => {
    const group = uniqueTopic("g3");
    // Members talk to different gateways: one of them forwards to the coordinator.
    const ms = [member(group, 0).start(), member(group, 1).start(), member(group, 0).start()];
    await settled(ms, REBALANCE_TIMEOUT_MS, [2, 2, 2]);
    const other = member(uniqueTopic("g1")).start();
    await waitFor(() => other.partitions.length === PARTITIONS, {
      message: "the second group's member owns all",
    });
    // At every heartbeat from here on, the first group stays exclusive.
    for (let i = 0; i < 10; i++) {
      assert.ok(exclusiveCover(ms, all));
      await new Promise((r) => setTimeout(r, 100));
    }
    const [d] = (
      await unary(gw(1), "DescribeGroups", { groupIds: [group] }, { deadlineMs: CALL_DEADLINE_MS })
    ).groups;
    assert.equal(d!.errorCode, 0, d!.errorMessage);
    assert.equal(d!.members.length, 3);
    assert.equal(d!.state, 4 /* STABLE */);
    assert.deepEqual(
      d!.partitions.map((p) => p.memberId).filter((id) => id !== "").length,
      PARTITIONS,
      "every partition has an owner",
    );
    for (const m of [...ms, other]) await m.leave();
  });

  test("a join, a graceful leave and a crash move partitions; each partition keeps one owner", async () => {
    const group = uniqueTopic("gmove");
    const [a, b, c] = [
      member(group, 0).start(),
      member(group, 1).start(),
      member(group, 0).start(),
    ];
    await settled([a, b, c]);
    const d = member(group, 1).start();
    await settled([a, b, c, d], REBALANCE_TIMEOUT_MS);
    assert.deepEqual([a, b, c, d].map((m) => m.partitions.length).sort(), [1, 1, 2, 2]);
    await d.leave();
    await settled([a, b, c], REBALANCE_TIMEOUT_MS, [2, 2, 2]);
    const crashedAt = Date.now();
    c.crash();
    await settled([a, b], CRASH_MOVE_TIMEOUT_MS, [3, 3]);
    const movedMs = Date.now() - crashedAt;
    assert.ok(movedMs >= TEST_SESSION_MS - 500, `not before the session ended (${movedMs} ms)`);
    for (const m of [a, b]) await m.leave();
  });

  test("a stale member (silent past its session) cannot commit after its partitions moved", async () => {
    const group = uniqueTopic("gstale");
    const [a, b] = [member(group, 0).start(), member(group, 1).start()];
    await settled([a, b], REBALANCE_TIMEOUT_MS, [3, 3]);
    const mine = a.partitions.map((p) => ({
      topic,
      partition: Number(p.split(":")[1]),
      offset: 1,
    }));
    const ok = await a.commit(mine);
    assert.ok(ok.results.every((r) => r.errorCode === 0));
    // A commit of a partition it does not own is refused per partition.
    const notMine = b.partitions.map((p) => ({
      topic,
      partition: Number(p.split(":")[1]),
      offset: 1,
    }));
    const refused = await a.commit(notMine);
    assert.ok(refused.results.every((r) => r.errorCode === ErrorCode.STALE_MEMBER_EPOCH));
    a.crash(); // as a SIGSTOP looks to the coordinator
    await waitFor(() => b.partitions.length === PARTITIONS, {
      timeoutMs: CRASH_MOVE_TIMEOUT_MS,
      message: "b owns all",
    });
    const stale = await a.commit(mine).then(
      () => undefined,
      (err: unknown) => fromServiceError(err),
    );
    assert.equal(stale?.code, ErrorCode.UNKNOWN_MEMBER);
    // A wrong epoch is stale too.
    const wrongEpoch = await unary(gw(0), "CommitOffsets", {
      groupId: group,
      memberId: b.memberId,
      memberEpoch: b.epoch + 5,
      topics: [{ topic, partitions: [{ partition: 0, offset: "2" }] }],
    }).then(
      () => undefined,
      (err: unknown) => fromServiceError(err),
    );
    assert.equal(wrongEpoch?.code, ErrorCode.STALE_MEMBER_EPOCH);
    // The committed offsets are the ones a made while it owned them.
    const fetched = await unary(gw(1), "FetchOffsets", {
      groupId: group,
      topics: [{ topic, partitions: [] }],
    });
    for (const o of fetched.offsets) {
      const expected = mine.some((m) => m.partition === o.partition) ? "1" : "-1";
      assert.equal(o.offset, expected, `${o.topic}:${o.partition}`);
    }
    await b.leave();
  });

  test("a static member's restart (temporary leave, rejoin) moves nothing", async () => {
    const group = uniqueTopic("gstatic");
    const a = member(group, 0, { instanceId: "a" }).start();
    const b = member(group, 1, { instanceId: "b" }).start();
    await settled([a, b], REBALANCE_TIMEOUT_MS, [3, 3]);
    const before = { a: a.partitions, b: b.partitions, bEpoch: b.epoch };
    await a.leave(true);
    const a2 = member(group, 1, { instanceId: "a" }).start();
    await waitFor(() => a2.partitions.length === 3, {
      message: "the restarted member has its partitions",
    });
    assert.deepEqual(a2.partitions, before.a);
    // Give b a few heartbeats: nothing changes for it.
    const beats = b.heartbeats;
    await waitFor(() => b.heartbeats >= beats + 3, { message: "b heartbeats" });
    assert.deepEqual(b.partitions, before.b);
    assert.equal(b.epoch, before.bEpoch, "no new epoch: no rebalance");
    for (const m of [a2, b]) await m.leave();
  });

  test("DescribeGroups: lag = produced − committed", async () => {
    const group = uniqueTopic("glag");
    const lagTopic = uniqueTopic("lag");
    await createTopic(clients.admin(cluster.controllers[0]!), lagTopic, 1);
    await waitForLeaders(cluster, clients, lagTopic, 1);
    const leader = await waitForLeaders(cluster, clients, lagTopic, 1);
    const broker = clients.broker(cluster.broker(leader.get(0)!).address);
    await produce(
      broker,
      lagTopic,
      0,
      Array.from({ length: 10 }, (_, i) => ({ value: Buffer.from(`r${i}`) })),
    );
    const m = new HeartbeatMember(() => gw(0), group, [lagTopic]);
    members.push(m);
    m.start();
    await waitFor(() => m.partitions.length === 1, { message: "m owns the partition" });
    await m.commit([{ topic: lagTopic, partition: 0, offset: 4 }]);
    const [d] = (await unary(gw(1), "DescribeGroups", { groupIds: [group] })).groups;
    const p = d!.partitions.find((x) => x.topic === lagTopic && x.partition === 0)!;
    assert.deepEqual([p.committedOffset, p.logEndOffset, p.lag], ["4", "10", "6"]);
    await m.leave();
    // An empty group can be deleted; then it is gone.
    const del = await unary(gw(1), "DeleteGroups", { groupIds: [group, uniqueTopic("nogroup")] });
    assert.deepEqual(
      del.results.map((r) => r.errorCode),
      [0, ErrorCode.GROUP_ID_NOT_FOUND],
    );
    const [gone] = (await unary(gw(0), "DescribeGroups", { groupIds: [group] })).groups;
    assert.equal(gone!.errorCode, ErrorCode.GROUP_ID_NOT_FOUND);
  });
});

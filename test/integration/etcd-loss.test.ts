/**
 * etcd loss (issue 12): the only etcd of a local cluster is paused (SIGSTOP) while acks=all
 * producers run on a topic of replication factor 3. Expected (docs/operations.md, "Without etcd"):
 *
 * - produce (acks=all) and fetch on existing partitions keep working for the whole pause: the
 *   brokers route, lead and replicate from their cached metadata, and nothing needs etcd while
 *   the ISR does not change (leases cannot expire either: etcd's clock is stopped with it);
 * - an admin call (CreateTopics) fails with a typed error within its deadline;
 * - after SIGCONT everything recovers: brokers stay registered or re-register, the admin call
 *   works again, and the controller epoch moves at most once (one re-election), not in a storm
 *   of campaigns;
 * - the oracle holds: every acknowledged record is read back once, in order, at its offset.
 *
 * A second case pauses etcd again for the gateway's group calls (docs/operations.md, "Without
 * etcd"): ListGroups, DescribeGroups, CommitOffsets and a join (ConsumerGroupHeartbeat) answer
 * COORDINATOR_NOT_AVAILABLE within their deadlines (DescribeGroups as the group's error code;
 * the gateway that coordinates a group answers its description from memory until it knows its
 * lease lost), and all of them work again once etcd resumes.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import type { GroupServiceClient } from "../../services/shared/generated/samsa/v1/GroupService.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { fromProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { groupService } from "../../services/shared/grpc/proto.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  createTopics,
  expectCallError,
  startTestCluster,
  uniqueTopic,
} from "./cluster-helpers.js";
import { GROUP_GATEWAY_ARGS } from "./groups-helpers.js";
import {
  checkOracle,
  OracleProducer,
  type PartitionInfo,
  waitForIsr,
} from "./replication-helpers.js";

const PARTITIONS = 3;
const REPLICAS = 3;
/** How long etcd stays paused: longer than the broker and controller lease TTLs. */
const PAUSE_MS = 10_000;
const SESSION_MS = 3_000;
const SETTLE_MS = 30_000;
/** Deadline of the CreateTopics tried while etcd is paused, ms. */
const ADMIN_DEADLINE_MS = 8_000;
/** Acknowledged records expected during the pause, at least. */
const ACKS_DURING_PAUSE = 300;
/** Deadline of ListGroups and DescribeGroups while etcd is paused, ms. */
const GROUP_ADMIN_DEADLINE_MS = 6_000;
/**
 * Deadline of a commit and a join while etcd is paused, ms: they answer once their etcd call
 * gave up (two attempts of 5 s, services/shared/etcd/client.ts).
 */
const GROUP_WRITE_DEADLINE_MS = 15_000;
/** Slack on top of a deadline for the error to reach the test, ms. */
const DEADLINE_SLACK_MS = 1_000;
/** How long the coordinating gateway may take to see its lease lost while etcd is paused, ms. */
const LEASE_LOST_WITHIN_MS = 30_000;

const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

/** `"elected controller"` lines in every controller's log so far. */
async function elections(cluster: LocalCluster): Promise<number[]> {
  const epochs: number[] = [];
  for (const c of cluster.controllerProcesses) {
    const text = await readFile(c.logFile, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.includes('"elected controller"')) continue;
      epochs.push(Number(JSON.parse(line).epoch));
    }
  }
  return epochs.sort((a, b) => a - b);
}

/** A call's error code and how long it took, with the call's deadline asserted. */
async function typedWithin(
  what: string,
  deadlineMs: number,
  call: Promise<unknown>,
  code: ErrorCode,
): Promise<number> {
  const started = Date.now();
  const err = await expectCallError(call, code);
  const tookMs = Date.now() - started;
  assert.ok(tookMs <= deadlineMs + DEADLINE_SLACK_MS, `${what}: ${tookMs} ms (${err.message})`);
  return tookMs;
}

/** One group's DescribeGroups answer: its error code and message. */
async function describeOne(
  groups: GroupServiceClient,
  group: string,
): Promise<{ code: ErrorCode; message: string; committed: string[] }> {
  const res = await unary(
    groups,
    "DescribeGroups",
    { groupIds: [group] },
    { deadlineMs: GROUP_ADMIN_DEADLINE_MS },
  );
  const g = res.groups[0]!;
  return {
    code: fromProtoErrorCode(g.errorCode),
    message: g.errorMessage,
    committed: g.partitions.map((p) => p.committedOffset),
  };
}

describe("etcd loss: the only etcd paused", { timeout: 300_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const fresh = new Clients();

  before(async () => {
    cluster = await startTestCluster({
      controllers: 2,
      brokers: 3,
      gateways: 1,
      gatewayArgs: GROUP_GATEWAY_ARGS,
      brokerArgs: [
        `--broker.session.timeout.ms=${SESSION_MS}`,
        "--replica.lag.time.max.ms=30000",
        "--replica.fetch.backoff.ms=100",
        "--replica.fetch.wait.max.ms=200",
      ],
    });
  });
  after(async () => {
    clients.close();
    fresh.close();
    if (cluster?.etcd.paused) await cluster.etcd.resume();
    await cluster?.stop();
  });

  test("data plane keeps serving, admin calls fail typed, all recovers", async () => {
    const topic = uniqueTopic("etcd-loss");
    const active = await cluster.activeController();
    const admin = clients.admin(active.address);
    const [r] = await createTopics(admin, [
      { name: topic, numPartitions: PARTITIONS, replicationFactor: REPLICAS },
    ]);
    assert.equal(r!.errorCode, 0, r!.errorMessage);
    await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "full ISRs");
    const electionsBefore = await elections(cluster);

    const producer = new OracleProducer(cluster, clients, topic, PARTITIONS);
    producer.start();
    try {
      await producer.waitForMoreAcks(100, SETTLE_MS, "acks before the pause");
      await cluster.etcd.pause();
      const pausedAt = Date.now();
      const ackedAtPause = producer.ackedCount;

      // An admin call needs etcd: a typed error within its deadline, not a hang.
      const started = Date.now();
      await assert.rejects(
        unary(
          admin,
          "CreateTopics",
          { topics: [{ name: uniqueTopic("no-etcd"), numPartitions: 1, replicationFactor: 1 }] },
          { deadlineMs: ADMIN_DEADLINE_MS },
        ).then((res) => {
          const t = res.topics[0]!;
          // A per-topic error is typed too; NONE would mean it was created without etcd.
          if (t.errorCode !== 0) throw Object.assign(new Error(t.errorMessage), { topic: t });
          return res;
        }),
        (err: unknown) => {
          // A per-topic error must be typed as well: UNKNOWN is an unexpected server error.
          const topic = (err as { topic?: { errorCode: number } }).topic;
          const typed =
            (isSamsaError(err) && err.code !== ErrorCode.UNKNOWN) ||
            (topic !== undefined && fromProtoErrorCode(topic.errorCode) !== ErrorCode.UNKNOWN);
          assert.ok(typed, `typed error: ${String(err)}`);
          return true;
        },
      );
      assert.ok(Date.now() - started <= ADMIN_DEADLINE_MS + 2_000, "within its deadline");

      // The rest of the pause: acks=all goes on.
      const left = PAUSE_MS - (Date.now() - pausedAt);
      if (left > 0) await new Promise((res) => setTimeout(res, left));
      const ackedDuringPause = producer.ackedCount - ackedAtPause;
      await cluster.etcd.resume();
      assert.ok(
        ackedDuringPause >= ACKS_DURING_PAUSE,
        `acks=all during the ${PAUSE_MS} ms pause: ${ackedDuringPause}, failures ${JSON.stringify([...producer.failures])}`,
      );

      await cluster.waitReady(SETTLE_MS);
      await producer.waitForMoreAcks(100, SETTLE_MS, "acks after the pause");
    } finally {
      await producer.stop();
    }
    await waitForIsr(cluster, clients, topic, PARTITIONS, full, SETTLE_MS, "ISR full after");
    await checkOracle(cluster, clients, fresh, topic, producer);

    // Admin works again, and the controller was re-elected at most once.
    const after = await cluster.activeController({ timeoutMs: SETTLE_MS });
    const again = await createTopics(clients.admin(after.address), [
      { name: uniqueTopic("after-etcd"), numPartitions: 1, replicationFactor: 3 },
    ]);
    assert.equal(again[0]!.errorCode, 0, again[0]!.errorMessage);
    const newElections = (await elections(cluster)).slice(electionsBefore.length);
    assert.ok(
      newElections.length <= 1,
      `controller elections after the pause: ${JSON.stringify(newElections)} (epoch ${active.epoch} → ${after.epoch})`,
    );
  });

  test("group calls at the gateway answer COORDINATOR_NOT_AVAILABLE, then work again", async (t) => {
    const gateway = cluster.gateways[0]!;
    const groups = createClient(groupService.Client, gateway);
    const topic = uniqueTopic("etcd-loss-groups");
    const group = uniqueTopic("etcd-loss-group");
    const absent = uniqueTopic("etcd-loss-absent");
    const commit = (offset: number, deadlineMs: number) =>
      unary(
        groups,
        "CommitOffsets",
        {
          groupId: group,
          memberId: "",
          memberEpoch: -1,
          topics: [{ topic, partitions: [{ partition: 0, offset: String(offset) }] }],
        },
        { deadlineMs },
      ).then((res) => {
        const r = res.results[0]!;
        if (r.errorCode !== 0) throw new Error(`commit: ${r.errorCode} ${r.errorMessage}`);
      });
    const join = (deadlineMs: number) =>
      unary(
        groups,
        "ConsumerGroupHeartbeat",
        {
          groupId: absent,
          memberId: "",
          memberEpoch: 0,
          rebalanceTimeoutMs: 10_000,
          subscribedTopicNames: [topic],
        },
        { deadlineMs },
      );
    try {
      const active = await cluster.activeController({ timeoutMs: SETTLE_MS });
      await createTopic(clients.admin(active.address), topic, 1, 1);
      // The gateway coordinates the group from here on (it claimed it for this commit).
      await commit(1, ADMIN_DEADLINE_MS);

      await cluster.etcd.pause();
      const pausedAt = Date.now();
      try {
        // All at once: each alone would wait for its own etcd call to give up.
        const [listMs, absentMs, commitMs, joinMs, createMs] = await Promise.all([
          typedWithin(
            "ListGroups",
            GROUP_ADMIN_DEADLINE_MS,
            unary(groups, "ListGroups", {}, { deadlineMs: GROUP_ADMIN_DEADLINE_MS }),
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
          ),
          (async () => {
            const started = Date.now();
            const d = await describeOne(groups, absent);
            assert.equal(d.code, ErrorCode.COORDINATOR_NOT_AVAILABLE, d.message);
            return Date.now() - started;
          })(),
          typedWithin(
            "CommitOffsets",
            GROUP_WRITE_DEADLINE_MS,
            commit(2, GROUP_WRITE_DEADLINE_MS),
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
          ),
          typedWithin(
            "join",
            GROUP_WRITE_DEADLINE_MS,
            join(GROUP_WRITE_DEADLINE_MS),
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
          ),
          // With a deadline past the controller's etcd attempts, its own answer: typed too.
          (async () => {
            const started = Date.now();
            const request = {
              topics: [{ name: uniqueTopic("no-etcd"), numPartitions: 1, replicationFactor: 1 }],
            };
            const res = await unary(clients.admin(active.address), "CreateTopics", request, {
              deadlineMs: GROUP_WRITE_DEADLINE_MS,
            }).catch((err: unknown) => err);
            const code =
              res instanceof Error
                ? isSamsaError(res)
                  ? res.code
                  : ErrorCode.UNKNOWN
                : fromProtoErrorCode(
                    (res as { topics: { errorCode: number }[] }).topics[0]!.errorCode,
                  );
            assert.ok(
              code !== ErrorCode.NONE && code !== ErrorCode.UNKNOWN,
              `CreateTopics without etcd: typed, got ${ErrorCode[code]}`,
            );
            return Date.now() - started;
          })(),
        ]);
        // The coordinator describes its group from memory while it holds its lease; once it
        // knows the lease lost, the group is typed unavailable too. Nothing else in between.
        const seen = new Set<string>();
        let other: string | undefined;
        await waitFor(
          async () => {
            const d = await describeOne(groups, group);
            seen.add(ErrorCode[d.code]);
            if (d.code !== ErrorCode.NONE && d.code !== ErrorCode.COORDINATOR_NOT_AVAILABLE)
              other = `${ErrorCode[d.code]} ${d.message}`;
            return other !== undefined || d.code === ErrorCode.COORDINATOR_NOT_AVAILABLE;
          },
          {
            timeoutMs: LEASE_LOST_WITHIN_MS,
            intervalMs: 200,
            message: "DescribeGroups of the coordinated group answers COORDINATOR_NOT_AVAILABLE",
          },
        );
        assert.equal(other, undefined, "DescribeGroups of the coordinated group: NONE or typed");
        t.diagnostic(
          `etcd paused: ListGroups ${listMs} ms, DescribeGroups (not coordinated) ${absentMs} ms, ` +
            `CommitOffsets ${commitMs} ms, join ${joinMs} ms, CreateTopics ${createMs} ms; ` +
            `DescribeGroups (coordinated) ` +
            `${[...seen].join(" then ")}, typed ${Date.now() - pausedAt} ms after the pause`,
        );
      } finally {
        await cluster.etcd.resume();
      }
      const resumedAt = Date.now();

      // Everything works again: the group is listed and described with its offset, commits go.
      await waitFor(
        async () => {
          const list = await unary(groups, "ListGroups", {}, { deadlineMs: ADMIN_DEADLINE_MS });
          if (!list.groups.some((g) => g.groupId === group)) return false;
          await commit(3, ADMIN_DEADLINE_MS);
          const d = await describeOne(groups, group);
          return d.code === ErrorCode.NONE && d.committed.includes("3");
        },
        {
          timeoutMs: SETTLE_MS,
          intervalMs: 500,
          message: "ListGroups, CommitOffsets and DescribeGroups work after etcd resumed",
        },
      );
      const joined = await join(ADMIN_DEADLINE_MS);
      assert.ok(joined.memberId !== "", "a member joins after etcd resumed");
      t.diagnostic(`group calls work again ${Date.now() - resumedAt} ms after etcd resumed`);
    } finally {
      groups.close();
    }
  });
});

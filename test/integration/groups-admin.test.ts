/**
 * The group administration RPCs, metrics and offset edge cases in a real cluster (etcd, a
 * controller, 2 brokers, 1 gateway as processes): deleting a topic removes its committed offsets
 * from every group and only its own; the gateway's `/metrics` after producing N and committing M
 * (lag per partition, members, rebalances, commits and their latency, groups per state);
 * ListGroups filtered by state; ResetOffsets to a time and by a shift (dry run, then executed);
 * a committed offset outside the log under each `auto_offset_reset`, for ConsumeGroup streams
 * and for the GroupConsumer; a GroupConsumer's seek back commits the lower offset.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  AdminClient,
  GroupConsumer,
  type GroupConsumerOptions,
} from "../../services/client/index.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { AutoOffsetReset } from "../../services/shared/generated/samsa/v1/AutoOffsetReset.js";
import type { ConsumeGroupResponse__Output } from "../../services/shared/generated/samsa/v1/ConsumeGroupResponse.js";
import { GroupState } from "../../services/shared/generated/samsa/v1/GroupState.js";
import type { GroupServiceClient } from "../../services/shared/generated/samsa/v1/GroupService.js";
import { createClient, stream, unary } from "../../services/shared/grpc/client.js";
import { fromServiceError } from "../../services/shared/grpc/errors.js";
import { groupService } from "../../services/shared/grpc/proto.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  produce,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import { GROUP_GATEWAY_ARGS, HeartbeatMember } from "./groups-helpers.js";

/** Time for members and streams to settle, ms. */
const SETTLE_TIMEOUT_MS = 10_000;
/** An offset far past any log end of these tests. */
const FAR_OFFSET = 1_000_000;

/**
 * The samples of one metric from Prometheus text: labels (as `k=v,...`, sorted, without the
 * `service` and `id` every sample has) → value.
 */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const labels = [...(m[2] ?? "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)]
      .filter((l) => l[1] !== "service" && l[1] !== "id") // every sample's default labels
      .map((l) => `${l[1]}=${l[2]}`)
      .sort()
      .join(",");
    out.set(labels, Number(m[3]));
  }
  return out;
}

/** A ConsumeGroup stream read in the background. */
class Stream {
  readonly messages: ConsumeGroupResponse__Output[] = [];
  private readonly abort = new AbortController();
  /** The stream's end: undefined, or its error. */
  readonly done: Promise<unknown>;
  ended = false;

  constructor(client: GroupServiceClient, group: string, topic: string, reset: AutoOffsetReset) {
    const request = {
      groupId: group,
      topics: [topic],
      autoOffsetReset: reset,
      autoCommit: true,
      autoCommitIntervalMs: 200,
    };
    this.done = (async () => {
      for await (const m of stream(client, "ConsumeGroup", request, { signal: this.abort.signal }))
        this.messages.push(m);
    })()
      .then(
        () => undefined,
        (err: unknown) => err,
      )
      .finally(() => {
        this.ended = true;
      });
  }

  offsets(partition: number): number[] {
    return this.messages
      .filter((m) => m.event === "record" && m.record!.partition === partition)
      .map((m) => Number(m.record!.offset));
  }

  get assigned(): boolean {
    return this.messages.some((m) => m.event === "assignment" && m.assignment!.assigned.length > 0);
  }

  async close(): Promise<unknown> {
    this.abort.abort();
    return this.done;
  }
}

describe("groups: admin RPCs, metrics, out-of-range offsets", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let gw: GroupServiceClient;
  let admin: AdminClient;
  const brokerFor = new Map<string, Map<number, number>>();

  const newTopic = async (prefix: string, partitions: number): Promise<string> => {
    const topic = uniqueTopic(prefix);
    await createTopic(clients.admin(cluster.controllers[0]!), topic, partitions);
    brokerFor.set(topic, await waitForLeaders(cluster, clients, topic, partitions));
    return topic;
  };
  /** Produces `n` records to a partition, one batch each with the given timestamps. */
  const produceTo = async (topic: string, partition: number, n: number, timestamps?: number[]) => {
    const broker = clients.broker(cluster.broker(brokerFor.get(topic)!.get(partition)!).address);
    if (timestamps === undefined) {
      const records = Array.from({ length: n }, (_, i) => ({ value: Buffer.from(`r${i}`) }));
      await produce(broker, topic, partition, records);
      return;
    }
    for (let i = 0; i < n; i++)
      await produce(broker, topic, partition, [
        { value: Buffer.from(`r${i}`), timestamp: timestamps[i]! },
      ]);
  };
  /** Commits as a non-member (the group must be empty). */
  const commitEmpty = async (group: string, topic: string, offsets: Record<number, number>) => {
    const res = await unary(gw, "CommitOffsets", {
      groupId: group,
      memberId: "",
      memberEpoch: -1,
      topics: [
        {
          topic,
          partitions: Object.entries(offsets).map(([p, o]) => ({
            partition: Number(p),
            offset: String(o),
          })),
        },
      ],
    });
    assert.ok(
      res.results.every((r) => r.errorCode === 0),
      JSON.stringify(res.results),
    );
  };
  const committed = async (group: string, topic: string): Promise<[number, number][]> => {
    const res = await unary(gw, "FetchOffsets", {
      groupId: group,
      topics: [{ topic, partitions: [] }],
    });
    return res.offsets
      .filter((o) => o.topic === topic && Number(o.offset) >= 0)
      .map((o) => [o.partition, Number(o.offset)] as [number, number])
      .sort((a, b) => a[0] - b[0]);
  };
  const consumerOptions = (group: string): GroupConsumerOptions => ({
    groupId: group,
    gateways: cluster.gateways,
    bootstrapServers: cluster.bootstrap,
    maxWaitMs: 100,
    autoCommitIntervalMs: 100,
  });

  before(async () => {
    cluster = await startTestCluster({ brokers: 2, gateways: 1, gatewayArgs: GROUP_GATEWAY_ARGS });
    gw = createClient(groupService.Client, cluster.gateways[0]!);
    admin = new AdminClient({ controllers: cluster.controllers });
  });
  after(async () => {
    gw?.close();
    admin?.close();
    clients.close();
    await cluster?.stop();
  });

  test("deleting a topic removes its committed offsets from every group, and only its own", async () => {
    const doomed = await newTopic("doomed", 2);
    const kept = await newTopic("kept", 2);
    const g1 = uniqueTopic("gdel1");
    const g2 = uniqueTopic("gdel2");
    await commitEmpty(g1, doomed, { 0: 3, 1: 4 });
    await commitEmpty(g1, kept, { 0: 5, 1: 6 });
    await commitEmpty(g2, doomed, { 0: 7 });
    assert.deepEqual(await committed(g1, doomed), [
      [0, 3],
      [1, 4],
    ]);
    const [deleted] = await admin.deleteTopics([doomed]);
    assert.equal(deleted?.error, null);
    await waitFor(
      async () =>
        (await committed(g1, doomed)).length === 0 && (await committed(g2, doomed)).length === 0,
      { timeoutMs: SETTLE_TIMEOUT_MS, message: "the deleted topic's offsets are gone" },
    );
    assert.deepEqual(await committed(g1, kept), [
      [0, 5],
      [1, 6],
    ]);
    // The group without offsets left is still listed only if it has state; g1 keeps `kept`'s.
    const [d] = (await unary(gw, "DescribeGroups", { groupIds: [g1] })).groups;
    assert.deepEqual(
      d!.partitions.map((p) => [p.topic, p.partition, Number(p.committedOffset)]).sort(),
      [
        [kept, 0, 5],
        [kept, 1, 6],
      ],
    );
  });

  test("metrics after producing N and committing M; ListGroups by state", async () => {
    const topic = await newTopic("metrics", 2);
    const group = uniqueTopic("gmetrics");
    const emptyGroup = uniqueTopic("gempty");
    const N = [10, 8];
    const M = [4, 7];
    await produceTo(topic, 0, N[0]!);
    await produceTo(topic, 1, N[1]!);
    await commitEmpty(emptyGroup, topic, { 0: 1 });
    const a = new HeartbeatMember(() => gw, group, [topic]).start();
    await waitFor(() => a.partitions.length === 2, {
      timeoutMs: SETTLE_TIMEOUT_MS,
      message: "the first member owns both partitions",
    });
    const b = new HeartbeatMember(() => gw, group, [topic]).start();
    const members = [a, b];
    try {
      const stable = async () => {
        const [d] = (await unary(gw, "DescribeGroups", { groupIds: [group] })).groups;
        return d!.state === GroupState.GROUP_STATE_STABLE ? d! : undefined;
      };
      const d = await waitFor(
        async () => (a.partitions.length === 1 && b.partitions.length === 1 ? stable() : undefined),
        { timeoutMs: SETTLE_TIMEOUT_MS, message: "the two members share the partitions" },
      );
      for (const m of members) {
        const p = Number(m.partitions[0]!.split(":")[1]);
        const res = await m.commit([{ topic, partition: p, offset: M[p]! }]);
        assert.equal(res.results[0]!.errorCode, 0);
      }

      const { metricsPort } = cluster.gatewayProcesses[0]!;
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const lag = samples(text, "samsa_consumer_group_lag");
      for (const p of [0, 1]) {
        assert.equal(
          lag.get(`group=${group},partition=${p},topic=${topic}`),
          N[p]! - M[p]!,
          `lag of partition ${p}: ${text
            .split("\n")
            .filter((l) => l.includes(group))
            .join("\n")}`,
        );
      }
      assert.equal(lag.get(`group=${emptyGroup},partition=0,topic=${topic}`), N[0]! - 1);
      assert.equal(samples(text, "samsa_consumer_group_members").get(`group=${group}`), 2);
      assert.equal(samples(text, "samsa_consumer_group_members").get(`group=${emptyGroup}`), 0);
      // Two joins, each one target assignment (the initial delay is 0 in these tests).
      const rebalances = samples(text, "samsa_consumer_group_rebalances_total").get(
        `group=${group}`,
      );
      assert.equal(rebalances, d.assignmentEpoch, "one rebalance per target assignment epoch");
      assert.ok(rebalances! >= 2, `rebalances ${rebalances}`);
      assert.equal(
        samples(text, "samsa_consumer_group_commits_total").get(`group=${group},result=NONE`),
        2,
      );
      assert.equal(
        samples(text, "samsa_consumer_group_commit_duration_seconds_count").get(`group=${group}`),
        2,
      );
      const sum = samples(text, "samsa_consumer_group_commit_duration_seconds_sum").get(
        `group=${group}`,
      );
      assert.ok(sum! > 0 && sum! < 5, `commit seconds ${sum}`);
      const states = samples(text, "samsa_consumer_groups");
      assert.ok((states.get("state=STABLE") ?? 0) >= 1, JSON.stringify([...states]));
      assert.ok((states.get("state=EMPTY") ?? 0) >= 1, JSON.stringify([...states]));

      const list = async (states: GroupState[]) =>
        (await unary(gw, "ListGroups", { states })).groups;
      const stableList = await list([GroupState.GROUP_STATE_STABLE]);
      assert.ok(stableList.some((g) => g.groupId === group && g.members === 2));
      assert.ok(!stableList.some((g) => g.groupId === emptyGroup));
      assert.ok(stableList.every((g) => g.state === GroupState.GROUP_STATE_STABLE));
      const emptyList = await list([GroupState.GROUP_STATE_EMPTY]);
      assert.ok(emptyList.some((g) => g.groupId === emptyGroup && g.members === 0));
      assert.ok(!emptyList.some((g) => g.groupId === group));
      const both = await list([GroupState.GROUP_STATE_EMPTY, GroupState.GROUP_STATE_STABLE]);
      assert.ok(both.some((g) => g.groupId === group));
      assert.ok(both.some((g) => g.groupId === emptyGroup));
      const all = await list([]);
      const mine = all.find((g) => g.groupId === group);
      assert.equal(mine?.coordinator, cluster.gateways[0]);
      assert.equal(mine?.state, GroupState.GROUP_STATE_STABLE);
    } finally {
      for (const m of members) await m.leave().catch(() => undefined);
    }
  });

  test("ResetOffsets to a time and by a shift: dry run, then executed", async () => {
    const topic = await newTopic("reset", 2);
    const group = uniqueTopic("greset");
    const t0 = Date.now() - 60_000;
    const stamps = Array.from({ length: 10 }, (_, i) => t0 + i * 1_000);
    await produceTo(topic, 0, 10, stamps);
    await produceTo(topic, 1, 10, stamps);
    await commitEmpty(group, topic, { 0: 8, 1: 2 });
    const reset = async (target: Record<string, unknown>, execute: boolean) => {
      const res = await unary(gw, "ResetOffsets", {
        groupId: group,
        topics: [{ topic, partitions: [] }],
        execute,
        ...target,
      });
      return res.partitions
        .map((p) => {
          assert.equal(p.errorCode, 0, p.errorMessage);
          return [p.partition, Number(p.previousOffset), Number(p.newOffset)];
        })
        .sort((x, y) => x[0]! - y[0]!);
    };
    // The first record at or after t0 + 3.5 s is offset 4.
    const byTime = { toDatetime: String(t0 + 3_500) };
    assert.deepEqual(await reset(byTime, false), [
      [0, 8, 4],
      [1, 2, 4],
    ]);
    assert.deepEqual(
      await committed(group, topic),
      [
        [0, 8],
        [1, 2],
      ],
      "a dry run writes nothing",
    );
    assert.deepEqual(await reset(byTime, true), [
      [0, 8, 4],
      [1, 2, 4],
    ]);
    assert.deepEqual(await committed(group, topic), [
      [0, 4],
      [1, 4],
    ]);
    // A time after the last record: the log end.
    assert.deepEqual(await reset({ toDatetime: String(Date.now() + 60_000) }, false), [
      [0, 4, 10],
      [1, 4, 10],
    ]);
    // Shifts are clamped into [log start, log end].
    await commitEmpty(group, topic, { 0: 8, 1: 2 });
    assert.deepEqual(await reset({ shiftBy: "-3" }, false), [
      [0, 8, 5],
      [1, 2, 0],
    ]);
    assert.deepEqual(await reset({ shiftBy: "5" }, true), [
      [0, 8, 10],
      [1, 2, 7],
    ]);
    assert.deepEqual(await committed(group, topic), [
      [0, 10],
      [1, 7],
    ]);
    // Executing needs an empty group.
    const m = new HeartbeatMember(() => gw, group, [topic]).start();
    try {
      await waitFor(() => m.partitions.length === 2, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "a member joins",
      });
      const err = await unary(gw, "ResetOffsets", {
        groupId: group,
        topics: [{ topic, partitions: [] }],
        shiftBy: "-1",
        execute: true,
      }).then(
        () => undefined,
        (e: unknown) => fromServiceError(e),
      );
      assert.equal(err?.code, ErrorCode.NON_EMPTY_GROUP);
    } finally {
      await m.leave().catch(() => undefined);
    }
  });

  test("ConsumeGroup: a committed offset out of range is reset (earliest, latest) or a typed error (none)", async () => {
    const topic = await newTopic("oor-stream", 1);
    await produceTo(topic, 0, 5);
    const groups = {
      earliest: uniqueTopic("goor-e"),
      latest: uniqueTopic("goor-l"),
      none: uniqueTopic("goor-n"),
    };
    for (const g of Object.values(groups)) await commitEmpty(g, topic, { 0: FAR_OFFSET });

    const none = new Stream(gw, groups.none, topic, AutoOffsetReset.AUTO_OFFSET_RESET_NONE);
    const err = await Promise.race([
      none.done,
      new Promise((r) => setTimeout(() => r("still open"), SETTLE_TIMEOUT_MS)),
    ]);
    assert.ok(err instanceof Error, `the stream ends with an error: ${String(err)}`);
    const e = fromServiceError(err);
    assert.equal(e.code, ErrorCode.OFFSET_OUT_OF_RANGE, e.message);
    assert.match(e.message, new RegExp(`${topic}-0`));
    assert.deepEqual(await committed(groups.none, topic), [[0, FAR_OFFSET]], "nothing committed");

    const earliest = new Stream(
      gw,
      groups.earliest,
      topic,
      AutoOffsetReset.AUTO_OFFSET_RESET_EARLIEST,
    );
    const latest = new Stream(gw, groups.latest, topic, AutoOffsetReset.AUTO_OFFSET_RESET_LATEST);
    try {
      await waitFor(() => earliest.offsets(0).length === 5, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "earliest: the stream reads from the log start",
      });
      assert.deepEqual(earliest.offsets(0), [0, 1, 2, 3, 4]);
      await waitFor(() => latest.assigned, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "latest: the stream is assigned",
      });
      // The reset to latest lands at 5: only records produced from now on.
      await waitFor(async () => (await committed(groups.latest, topic))[0]?.[1] === 5, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "latest: the reset position is auto-committed",
      });
      await produceTo(topic, 0, 2);
      await waitFor(() => latest.offsets(0).length === 2 && earliest.offsets(0).length === 7, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "both streams read the new records",
      });
      assert.deepEqual(latest.offsets(0), [5, 6]);
      assert.equal(earliest.ended || latest.ended, false, "the streams stay open");
      // Auto-commit goes below the out-of-range commit it started from.
      await waitFor(async () => (await committed(groups.earliest, topic))[0]?.[1] === 7, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "earliest: the new position is committed",
      });
    } finally {
      await earliest.close();
      await latest.close();
    }
  });

  test("GroupConsumer: a committed offset out of range is reset (earliest) or a typed error (none)", async () => {
    const topic = await newTopic("oor-client", 1);
    await produceTo(topic, 0, 6);
    const gEarliest = uniqueTopic("gcoor-e");
    const gNone = uniqueTopic("gcoor-n");
    await commitEmpty(gEarliest, topic, { 0: FAR_OFFSET });
    await commitEmpty(gNone, topic, { 0: FAR_OFFSET });

    const none = new GroupConsumer({ ...consumerOptions(gNone), autoOffsetReset: "none" });
    none.subscribe(topic);
    const failed = await none.run({ eachMessage: () => undefined }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isSamsaError(failed), String(failed));
    assert.equal(failed.code, ErrorCode.OFFSET_OUT_OF_RANGE, failed.message);
    assert.equal(failed.metadata?.["samsa-partition"], "0");
    assert.equal(failed.metadata?.["samsa-topic"], topic);
    assert.deepEqual(await committed(gNone, topic), [[0, FAR_OFFSET]], "nothing committed");

    // eachBatch, so that nothing but the reset moves the position the commit starts from.
    const seen: number[] = [];
    const c = new GroupConsumer({ ...consumerOptions(gEarliest), autoOffsetReset: "earliest" });
    c.subscribe(topic);
    const running = c.run({
      eachBatch: ({ batch }) => {
        for (const m of batch.messages) seen.push(m.offset);
      },
    });
    try {
      await waitFor(() => seen.length === 6, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "the consumer reads from the log start",
      });
      assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
      await waitFor(async () => (await committed(gEarliest, topic))[0]?.[1] === 6, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "the position after the reset is committed (below the old commit)",
      });
    } finally {
      await c.disconnect();
      await running;
    }
  });

  test("GroupConsumer: a seek back commits the lower offset", async () => {
    const topic = await newTopic("seekback", 1);
    const group = uniqueTopic("gseek");
    await produceTo(topic, 0, 10);
    const commits: number[] = [];
    const seen: number[] = [];
    const c = new GroupConsumer({
      ...consumerOptions(group),
      autoOffsetReset: "earliest",
      onCommit: (offsets) => {
        for (const o of offsets) commits.push(o.offset);
      },
    });
    c.subscribe(topic);
    let sought = false;
    const running = c.run({
      eachMessage: ({ message }) => {
        seen.push(message.offset);
        // Once everything was read and committed, go back to 3 (inside the handler).
        if (!sought && message.offset === 9) {
          sought = true;
          void waitFor(async () => (await committed(group, topic))[0]?.[1] === 10, {
            timeoutMs: SETTLE_TIMEOUT_MS,
          }).then(() => c.seek({ topic, partition: 0, offset: 3 }));
        }
      },
    });
    try {
      await waitFor(() => seen.length === 17, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "the records from 3 on are read again",
      });
      assert.deepEqual(seen.slice(10), [3, 4, 5, 6, 7, 8, 9]);
      // Between the seek and the re-read the commit went down to 3 (or straight to 10 if the
      // re-read was quicker than the interval); either way, the lower commit is allowed:
      await c.commit([{ topic, partition: 0, offset: 2 }]);
      assert.deepEqual(await committed(group, topic), [[0, 2]], "an explicit lower commit");
      // ...and auto-commit takes the processed position (10) again, though it is not "newer".
      await waitFor(async () => (await committed(group, topic))[0]?.[1] === 10, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "auto-commit commits the processed position after the lower commit",
      });
      // A seek back without reading: auto-commit commits the lower offset.
      c.seek({ topic, partition: 0, offset: 1 });
      c.pause([{ topic, partition: 0 }]);
      await waitFor(async () => (await committed(group, topic))[0]?.[1] === 1, {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "auto-commit commits the position after a seek back",
      });
      assert.ok(commits.includes(1));
    } finally {
      await c.disconnect();
      await running;
    }
  });
});

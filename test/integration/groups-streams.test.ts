/**
 * Consumer groups across gateways and for plain gRPC clients, in a real cluster (etcd, a
 * controller, 2 brokers, 2 gateways as processes): two ConsumeGroup streams share a topic's
 * partitions (each record to the stream owning its partition) and a later stream resumes from
 * their commits; a gateway coordinating a group is SIGKILLed and the other one takes the group
 * over within its lease, with the members, their partitions and the committed offsets intact.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { AutoOffsetReset } from "../../services/shared/generated/samsa/v1/AutoOffsetReset.js";
import type { ConsumeGroupResponse__Output } from "../../services/shared/generated/samsa/v1/ConsumeGroupResponse.js";
import type { GroupServiceClient } from "../../services/shared/generated/samsa/v1/GroupService.js";
import { createClient, stream, unary } from "../../services/shared/grpc/client.js";
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
import {
  GROUP_GATEWAY_ARGS,
  HeartbeatMember,
  TEST_GATEWAY_LEASE_MS,
  tpList,
} from "./groups-helpers.js";

const PARTITIONS = 4;
const RECORDS_PER_PARTITION = 10;
/** Commits of the first streams: the next offset to read per partition. */
const COMMITTED = 5;
/** Time for streams to settle their assignment, ms. */
const SETTLE_TIMEOUT_MS = 10_000;

/** A ConsumeGroup stream read in the background. */
class GroupStream {
  readonly messages: ConsumeGroupResponse__Output[] = [];
  private readonly abort = new AbortController();
  readonly done: Promise<unknown>;

  constructor(client: GroupServiceClient, group: string, topic: string) {
    const request = {
      groupId: group,
      topics: [topic],
      autoOffsetReset: AutoOffsetReset.AUTO_OFFSET_RESET_EARLIEST,
      clientId: "plain",
    };
    this.done = (async () => {
      for await (const m of stream(client, "ConsumeGroup", request, { signal: this.abort.signal }))
        this.messages.push(m);
    })().catch((err: unknown) => err);
  }

  /** The last assignment message. */
  get assignment() {
    return this.messages.filter((m) => m.event === "assignment").at(-1)?.assignment ?? undefined;
  }

  get assigned(): string[] {
    return tpList(this.assignment?.assigned ?? []);
  }

  records() {
    return this.messages.filter((m) => m.event === "record").map((m) => m.record!);
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

describe("groups: streams and gateway failover", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const groupClients: GroupServiceClient[] = [];
  const gw = (i: number) => groupClients[i]!;
  const admin = () => clients.admin(cluster.controllers[0]!);

  before(async () => {
    cluster = await startTestCluster({ brokers: 2, gateways: 2, gatewayArgs: GROUP_GATEWAY_ARGS });
    for (const address of cluster.gateways)
      groupClients.push(createClient(groupService.Client, address));
  });
  after(async () => {
    for (const c of groupClients) c.close();
    clients.close();
    await cluster?.stop();
  });

  test("two ConsumeGroup streams share the partitions; a new stream resumes from their commits", async () => {
    const topic = uniqueTopic("streamed");
    const group = uniqueTopic("gstream");
    await createTopic(admin(), topic, PARTITIONS);
    const leaders = await waitForLeaders(cluster, clients, topic, PARTITIONS);
    const all = [...Array(PARTITIONS).keys()].map((p) => `${topic}:${p}`);
    const a = new GroupStream(gw(0), group, topic);
    const b = new GroupStream(gw(1), group, topic);
    await waitFor(
      () =>
        a.assigned.length === 2 &&
        b.assigned.length === 2 &&
        [...a.assigned, ...b.assigned].sort().join() === all.join(),
      { timeoutMs: SETTLE_TIMEOUT_MS, message: "the streams share the partitions" },
    );
    for (let p = 0; p < PARTITIONS; p++) {
      const broker = clients.broker(cluster.broker(leaders.get(p)!).address);
      const records = Array.from({ length: RECORDS_PER_PARTITION }, (_, i) => ({
        value: Buffer.from(`${p}-${i}`),
      }));
      await produce(broker, topic, p, records);
    }
    await waitFor(
      () => a.records().length + b.records().length === PARTITIONS * RECORDS_PER_PARTITION,
      {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "every record streamed",
      },
    );
    for (const s of [a, b]) {
      const mine = new Set(s.assigned);
      const byPartition = new Map<number, number[]>();
      for (const r of s.records()) {
        assert.ok(
          mine.has(`${r.topic}:${r.partition}`),
          `a record of ${r.partition} only to its owner`,
        );
        byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), Number(r.offset)]);
      }
      for (const offsets of byPartition.values()) {
        assert.deepEqual(offsets, [...Array(RECORDS_PER_PARTITION).keys()], "in order, each once");
      }
      // The client commits what it processed, with the member id and epoch the stream gave it.
      const { memberId, memberEpoch } = s.assignment!;
      const partitions = s.assigned.map((tp) => ({
        partition: Number(tp.split(":")[1]),
        offset: String(COMMITTED),
      }));
      const res = await unary(gw(1), "CommitOffsets", {
        groupId: group,
        memberId,
        memberEpoch,
        topics: [{ topic, partitions }],
      });
      assert.ok(
        res.results.every((r) => r.errorCode === 0),
        JSON.stringify(res.results),
      );
    }
    await Promise.all([a.close(), b.close()]);
    const c = new GroupStream(gw(0), group, topic);
    try {
      await waitFor(() => c.records().length === PARTITIONS * (RECORDS_PER_PARTITION - COMMITTED), {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: "the new stream reads from the commits",
      });
      for (let p = 0; p < PARTITIONS; p++) {
        const offsets = c
          .records()
          .filter((r) => r.partition === p)
          .map((r) => Number(r.offset));
        assert.equal(offsets[0], COMMITTED, `partition ${p} resumes at the commit`);
      }
    } finally {
      await c.close();
    }
  });

  test("a coordinating gateway is SIGKILLed: the other takes the group over, members and offsets intact", async () => {
    const topic = uniqueTopic("failover");
    const group = uniqueTopic("gfail");
    await createTopic(admin(), topic, PARTITIONS);
    await waitForLeaders(cluster, clients, topic, PARTITIONS);
    // The members talk to gateway 1 first (it claims the group), then to gateway 2.
    let target = 0;
    const ms = [0, 1].map(() => new HeartbeatMember(() => gw(target), group, [topic]).start());
    try {
      await waitFor(
        () => ms.every((m) => m.partitions.length === 2) && ms[0]!.epoch === ms[1]!.epoch,
        {
          timeoutMs: SETTLE_TIMEOUT_MS,
          message: "members settle",
        },
      );
      const [d] = (await unary(gw(1), "DescribeGroups", { groupIds: [group] })).groups;
      assert.equal(d!.coordinator, cluster.gateways[0], "gateway 1 coordinates the group");
      const committed = ms.flatMap((m) =>
        m.partitions.map((tp) => ({ m, partition: Number(tp.split(":")[1]) })),
      );
      for (const m of ms) {
        const mine = committed
          .filter((c) => c.m === m)
          .map((c) => ({ topic, partition: c.partition, offset: 100 + c.partition }));
        await m.commit(mine);
      }
      const before = ms.map((m) => ({ id: m.memberId, partitions: m.partitions }));
      const killedAt = Date.now();
      await cluster.gateway(1).kill("SIGKILL");
      target = 1;
      // The members keep heartbeating (to gateway 2): COORDINATOR_NOT_AVAILABLE until the dead
      // gateway's lease expires, then gateway 2 claims the group and answers from its state.
      await waitFor(
        async () => {
          const [x] = (await unary(gw(1), "DescribeGroups", { groupIds: [group] })).groups;
          return (
            x!.coordinator === cluster.gateways[1] && ms.every((m) => m.lastError === undefined)
          );
        },
        {
          timeoutMs: TEST_GATEWAY_LEASE_MS + SETTLE_TIMEOUT_MS,
          message: "gateway 2 coordinates the group",
        },
      );
      const tookMs = Date.now() - killedAt;
      assert.deepEqual(
        ms.map((m) => ({ id: m.memberId, partitions: m.partitions })),
        before,
        "the same members own the same partitions",
      );
      const fetched = await unary(gw(1), "FetchOffsets", {
        groupId: group,
        topics: [{ topic, partitions: [] }],
      });
      assert.deepEqual(
        fetched.offsets.map((o) => [o.partition, o.offset]),
        [...Array(PARTITIONS).keys()].map((p) => [p, String(100 + p)]),
        "committed offsets intact",
      );
      assert.ok(tookMs < TEST_GATEWAY_LEASE_MS + SETTLE_TIMEOUT_MS, `took ${tookMs} ms`);
    } finally {
      for (const m of ms) m.crash();
    }
  });
});

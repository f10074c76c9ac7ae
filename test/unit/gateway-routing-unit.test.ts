/**
 * The gateway's routing core (`services/gateway/routing.ts`: `Routing` and `routePartitions`)
 * with an in-memory stand-in for the etcd mirror and a fake `send`: partitions go to their
 * leaders (one send per leader) and come back in request order; a retriable failure is retried
 * within the deadline, after NOT_LEADER once the metadata names a new leader, and the retry goes
 * there; at the deadline the last answer stands; non-retriable answers and the client's own
 * FENCED_LEADER_EPOCH pass straight back; unknown topics are waited for briefly, illegal names
 * not at all; an aborted call throws the signal's reason.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Registry } from "prom-client";
import { BrokerPool, type BrokerTarget } from "../../services/gateway/broker-pool.js";
import { GATEWAY_RETRIES_METRIC, GatewayMetrics } from "../../services/gateway/gateway-metrics.js";
import { MetadataWatch } from "../../services/gateway/metadata-watch.js";
import {
  type PartitionKey,
  type RouteSpec,
  Routing,
  routePartitions,
} from "../../services/gateway/routing.js";
import { ErrorCode, isSamsaError, SamsaError } from "../../services/shared/errors.js";
import {
  type BrokerRegistration,
  noLeader,
  type PartitionState,
  type TopicRecord,
} from "../../services/shared/etcd/keys.js";
import { silentLogger } from "../../services/shared/logger.js";
import type {
  ClusterMetadata,
  MetadataChange,
} from "../../services/shared/metadata/cluster-metadata.js";
import { Deadline } from "../../services/shared/retry.js";

/**
 * The part of the etcd mirror routing reads, in memory. Every change is announced to listeners
 * as the real mirror does after an etcd watch event.
 */
class FakeMetadata {
  private readonly topicsByName = new Map<string, TopicRecord>();
  private readonly states = new Map<string, PartitionState>();
  private readonly brokersById = new Map<number, BrokerRegistration>();
  private readonly listeners = new Set<(change: MetadataChange) => void>();
  private revision = 0;

  topic(name: string): TopicRecord | undefined {
    return this.topicsByName.get(name);
  }
  partition(topic: string, partition: number): PartitionState | undefined {
    return this.states.get(`${topic}/${partition}`);
  }
  broker(id: number): BrokerRegistration | undefined {
    return this.brokersById.get(id);
  }
  onChange(listener: (change: MetadataChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  onResync(_listener: () => void): void {}

  addBroker(id: number): void {
    const b = { id, host: "127.0.0.1", port: 1, brokerEpoch: ++this.revision };
    this.brokersById.set(id, b);
    this.emit({ kind: "broker", event: this.put(`brokers/${id}`, b) });
  }
  /** A topic whose partition p is led by `leaders[p]` (noLeader for none). */
  addTopic(name: string, leaders: number[]): void {
    const record = {
      id: `id-${name}`,
      name,
      partitions: leaders.length,
      replicationFactor: 1,
      config: {},
      createdAt: 0,
    };
    this.topicsByName.set(name, record);
    this.emit({ kind: "topic", event: this.put(`topics/${name}`, record) });
    for (const [p, leader] of leaders.entries()) this.setLeader(name, p, leader);
  }
  setLeader(topic: string, partition: number, leader: number): void {
    const prev = this.partition(topic, partition);
    const state: PartitionState = {
      replicas: [1, 2, 3],
      leader,
      leaderEpoch: (prev?.leaderEpoch ?? -1) + 1,
      isr: leader === noLeader ? [] : [leader],
      partitionEpoch: (prev?.partitionEpoch ?? -1) + 1,
    };
    this.states.set(`${topic}/${partition}`, state);
    this.emit({
      kind: "partition",
      topic,
      partition,
      event: this.put(`partitions/${topic}/${partition}`, state),
    });
  }

  private put<T>(key: string, value: T) {
    return { type: "put" as const, key, value, prev: undefined, revision: ++this.revision };
  }
  private emit(change: MetadataChange): void {
    for (const l of this.listeners) l(change);
  }
}

interface Part extends PartitionKey {
  readonly tag: string;
}
interface Result {
  topic: string;
  partition: number;
  errorCode: number;
  errorMessage?: string;
  /** Which broker answered ("failed" when none did). */
  from: string;
}

/** A fake leader's answer to one partition, by the test; absent = success. */
type Answer = (broker: number, part: Part, attempt: number) => Partial<Result> | undefined;

const pools: BrokerPool[] = [];
after(() => {
  for (const pool of pools) pool.close();
});

/** A routing core over a fresh fake mirror: brokers 1..3, topic `t` of 3 partitions. */
function setup(leaders: number[] = [1, 2, 1]) {
  const fake = new FakeMetadata();
  for (const id of [1, 2, 3]) fake.addBroker(id);
  fake.addTopic("t", leaders);
  const metadata = fake as unknown as ClusterMetadata;
  const registry = new Registry();
  const pool = new BrokerPool(metadata);
  pools.push(pool);
  const routing = new Routing({
    metadata,
    pool,
    watch: new MetadataWatch(metadata),
    metrics: new GatewayMetrics(registry),
    logger: silentLogger(),
  });
  const sends: { broker: number; tags: string[]; attempt: number }[] = [];
  const retries = async (code: string) => {
    const metric = await registry.getSingleMetric(GATEWAY_RETRIES_METRIC)?.get();
    return metric?.values.find((v) => v.labels.code === code)?.value ?? 0;
  };
  /** Routes `parts` (`topic:partition` strings) with `answer` deciding each leader's answer. */
  const route = (
    parts: string[],
    answer: Answer = () => undefined,
    options: { timeoutMs?: number; signal?: AbortSignal; check?: (p: Part) => void } = {},
  ) => {
    const spec: RouteSpec<Part, Result> = {
      method: "Produce",
      parts: parts.map((tag) => {
        const [topic, partition] = tag.split(":");
        return { topic: topic!, partition: Number(partition), tag };
      }),
      deadline: new Deadline(options.timeoutMs ?? 10_000),
      signal: options.signal ?? new AbortController().signal,
      check: options.check ?? (() => {}),
      send: async (target: BrokerTarget, some: Part[], _d: Deadline, attempt: number) => {
        sends.push({ broker: target.brokerId, tags: some.map((p) => p.tag), attempt });
        return some.map((p) => ({
          topic: p.topic,
          partition: p.partition,
          errorCode: 0,
          from: `broker-${target.brokerId}`,
          ...answer(target.brokerId, p, attempt),
        }));
      },
      failed: (p, err) => ({
        topic: p.topic,
        partition: p.partition,
        errorCode: err.code,
        errorMessage: err.message,
        from: "failed",
      }),
    };
    return routePartitions(routing, spec);
  };
  return { fake, routing, route, sends, retries };
}

const codes = (results: Result[]) => results.map((r) => ErrorCode[r.errorCode]);

describe("gateway routing: fan-out", () => {
  it("sends each leader its partitions in one call; results in request order", async () => {
    const { route, sends } = setup([1, 2, 1]);
    const results = await route(["t:2", "t:1", "t:0"]);
    assert.deepEqual(
      results.map((r) => [r.partition, r.from]),
      [
        [2, "broker-1"],
        [1, "broker-2"],
        [0, "broker-1"],
      ],
    );
    assert.deepEqual(sends.map((s) => [s.broker, s.tags]).sort(), [
      [1, ["t:2", "t:0"]],
      [2, ["t:1"]],
    ]);
  });

  it("a partition that fails its check is answered with that error and never sent", async () => {
    const { route, sends } = setup();
    const results = await route(["t:0", "t:1"], undefined, {
      check: (p) => {
        if (p.partition === 1) throw new SamsaError(ErrorCode.INVALID_REQUEST, "bad offset");
      },
    });
    assert.deepEqual(codes(results), ["NONE", "INVALID_REQUEST"]);
    assert.equal(results[1]!.errorMessage, "bad offset");
    assert.deepEqual(
      sends.flatMap((s) => s.tags),
      ["t:0"],
    );
  });
});

describe("gateway routing: retries", () => {
  it("after NOT_LEADER waits for the metadata to name a new leader and retries there", async () => {
    const { fake, route, sends, retries } = setup([1, 2, 1]);
    const results = await route(["t:0", "t:1"], (broker, part) => {
      if (part.partition !== 0 || broker !== 1) return undefined;
      // The leader moved: broker 1 says so, and the mirror learns it a moment later.
      setTimeout(() => fake.setLeader("t", 0, 3), 20);
      return { errorCode: ErrorCode.NOT_LEADER, errorMessage: "moved to 3" };
    });
    assert.deepEqual(
      results.map((r) => [codes([r])[0], r.from]),
      [
        ["NONE", "broker-3"],
        ["NONE", "broker-2"],
      ],
    );
    assert.deepEqual(
      sends.map((s) => [s.attempt, s.broker, s.tags]).sort(),
      [
        [0, 1, ["t:0"]],
        [0, 2, ["t:1"]],
        [1, 3, ["t:0"]],
      ],
      "only the failed partition is retried, at its new leader",
    );
    assert.equal(await retries("NOT_LEADER"), 1);
  });

  it("retries a retriable error that is not about metadata, at the same leader", async () => {
    const { route, sends, retries } = setup();
    const results = await route(["t:1"], (_b, _p, attempt) =>
      attempt < 2 ? { errorCode: ErrorCode.NOT_ENOUGH_REPLICAS } : undefined,
    );
    assert.deepEqual(codes(results), ["NONE"]);
    assert.deepEqual(
      sends.map((s) => [s.attempt, s.broker]),
      [
        [0, 2],
        [1, 2],
        [2, 2],
      ],
    );
    assert.equal(await retries("NOT_ENOUGH_REPLICAS"), 2);
  });

  it("a failed call (the leader unreachable) retries every partition that was in it", async () => {
    const { fake, routing, sends } = setup([1, 1, 2]);
    let calls = 0;
    const spec: RouteSpec<Part, Result> = {
      method: "Fetch",
      parts: [0, 1, 2].map((p) => ({ topic: "t", partition: p, tag: `t:${p}` })),
      deadline: new Deadline(10_000),
      signal: new AbortController().signal,
      check: () => {},
      send: async (target, some, _d, attempt) => {
        sends.push({ broker: target.brokerId, tags: some.map((p) => p.tag), attempt });
        if (target.brokerId === 1 && calls++ === 0) {
          fake.setLeader("t", 0, 3);
          fake.setLeader("t", 1, 3);
          throw new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "connection lost");
        }
        return some.map((p) => ({ ...p, errorCode: 0, from: `broker-${target.brokerId}` }));
      },
      failed: (p, err) => ({ ...p, errorCode: err.code, from: "failed" }),
    };
    const results = await routePartitions(routing, spec);
    assert.deepEqual(
      results.map((r) => r.from),
      ["broker-3", "broker-3", "broker-2"],
    );
  });

  it("at the deadline the last broker answer stands", async () => {
    const { route, sends } = setup();
    const results = await route(
      ["t:0", "t:1"],
      (_b, part) =>
        part.partition === 0
          ? { errorCode: ErrorCode.NOT_LEADER, errorMessage: "not me (still)" }
          : undefined,
      { timeoutMs: 300 },
    );
    assert.deepEqual(codes(results), ["NOT_LEADER", "NONE"]);
    assert.equal(results[0]!.from, "broker-1", "the leader's own answer, not a made-up one");
    assert.equal(results[0]!.errorMessage, "not me (still)");
    assert.ok(sends.filter((s) => s.tags.includes("t:0")).length >= 2, "retried meanwhile");
  });

  it("when the last attempt gets no answer (a timeout), the answer before it stands", async () => {
    const { routing } = setup();
    const sends: number[] = [];
    const results = await routePartitions<Part, Result>(routing, {
      method: "Produce",
      parts: [{ topic: "t", partition: 1, tag: "t:1" }],
      deadline: new Deadline(400),
      signal: new AbortController().signal,
      check: () => {},
      send: async (_t, some, deadline, attempt) => {
        sends.push(attempt);
        if (attempt === 0) {
          return some.map((p) => ({
            ...p,
            errorCode: ErrorCode.NOT_ENOUGH_REPLICAS,
            errorMessage: "isr 1 < min 2",
            from: "broker-2",
          }));
        }
        // Every later call hangs until the deadline, as a call to an unreachable broker does.
        await new Promise((r) => setTimeout(r, deadline.remainingMs()));
        throw new SamsaError(ErrorCode.REQUEST_TIMED_OUT, "Deadline exceeded after 0.001s");
      },
      failed: (p, err) => ({
        ...p,
        errorCode: err.code,
        errorMessage: err.message,
        from: "failed",
      }),
    });
    assert.ok(sends.length >= 2, "retried");
    assert.deepEqual(codes(results), ["NOT_ENOUGH_REPLICAS"]);
    assert.equal(results[0]!.errorMessage, "isr 1 < min 2");
  });

  it("no attempt starts with less than ROUTE_ATTEMPT_MS_MIN left: the last answer stands", async () => {
    const { route, sends } = setup();
    const results = await route(["t:1"], () => ({ errorCode: ErrorCode.NOT_ENOUGH_REPLICAS }), {
      timeoutMs: 250,
    });
    assert.deepEqual(codes(results), ["NOT_ENOUGH_REPLICAS"]);
    assert.equal(results[0]!.from, "broker-2");
    assert.ok(sends.length >= 2, "retried meanwhile");
  });

  it("a partition without a live leader is LEADER_NOT_AVAILABLE until one appears", async () => {
    const { fake, route, sends } = setup([noLeader, 2, 1]);
    setTimeout(() => fake.setLeader("t", 0, 3), 30);
    const results = await route(["t:0"]);
    assert.deepEqual(
      results.map((r) => r.from),
      ["broker-3"],
    );
    assert.deepEqual(
      sends.map((s) => s.broker),
      [3],
      "nothing sent while there was no leader",
    );
  });

  it("without a leader until the deadline: failed with LEADER_NOT_AVAILABLE", async () => {
    const { route, sends } = setup([noLeader, 2, 1]);
    const results = await route(["t:0"], undefined, { timeoutMs: 200 });
    assert.deepEqual(codes(results), ["LEADER_NOT_AVAILABLE"]);
    assert.equal(results[0]!.from, "failed");
    assert.equal(sends.length, 0);
  });
});

describe("gateway routing: final answers", () => {
  it("passes a non-retriable answer straight back", async () => {
    const { route, sends } = setup();
    const results = await route(["t:0"], () => ({
      errorCode: ErrorCode.CORRUPT_MESSAGE,
      errorMessage: "crc",
    }));
    assert.deepEqual(codes(results), ["CORRUPT_MESSAGE"]);
    assert.equal(results[0]!.from, "broker-1");
    assert.equal(sends.length, 1);
  });

  it("passes FENCED_LEADER_EPOCH back: only the client can refresh its epoch", async () => {
    const { route, sends } = setup();
    const results = await route(["t:0"], () => ({ errorCode: ErrorCode.FENCED_LEADER_EPOCH }));
    assert.deepEqual(codes(results), ["FENCED_LEADER_EPOCH"]);
    assert.equal(sends.length, 1);
  });

  // The deadline (10 s) is far longer than the wait for an unknown topic (UNKNOWN_TOPIC_WAIT_MS):
  // the answer comes when that wait ends, the test timeout bounds it.
  it("waits briefly for a topic the metadata does not know, then UNKNOWN_TOPIC_OR_PARTITION", {
    timeout: 5_000,
  }, async () => {
    const { route, sends } = setup();
    const results = await route(["missing:0", "t:3"]);
    assert.deepEqual(codes(results), ["UNKNOWN_TOPIC_OR_PARTITION", "UNKNOWN_TOPIC_OR_PARTITION"]);
    assert.match(results[0]!.errorMessage!, /topic missing does not exist/);
    assert.match(results[1]!.errorMessage!, /partition 3 of t does not exist/);
    assert.equal(sends.length, 0);
  });

  it("routes a topic that appears while it is waited for", async () => {
    const { fake, route } = setup();
    setTimeout(() => fake.addTopic("fresh", [2]), 30);
    const results = await route(["fresh:0"]);
    assert.deepEqual(
      results.map((r) => [codes([r])[0], r.from]),
      [["NONE", "broker-2"]],
    );
  });

  it("does not wait for an illegal topic name", async () => {
    const { route, retries } = setup();
    const results = await route(["bad name!:0"]);
    assert.deepEqual(codes(results), ["UNKNOWN_TOPIC_OR_PARTITION"]);
    assert.equal(await retries("UNKNOWN_TOPIC_OR_PARTITION"), 0, "no retry for an impossible name");
  });

  it("a leader that answers too few partitions is UNKNOWN (a broker bug), not retried", async () => {
    const { routing } = setup();
    let sent = 0;
    const results = await routePartitions<Part, Result>(routing, {
      method: "Fetch",
      parts: [0, 2].map((p) => ({ topic: "t", partition: p, tag: `t:${p}` })),
      deadline: new Deadline(10_000),
      signal: new AbortController().signal,
      check: () => {},
      send: async () => {
        sent++;
        return [];
      },
      failed: (p, err) => ({
        ...p,
        errorCode: err.code,
        errorMessage: err.message,
        from: "failed",
      }),
    });
    assert.deepEqual(codes(results), ["UNKNOWN", "UNKNOWN"]);
    assert.match(results[0]!.errorMessage!, /answered 0 of 2 partitions/);
    assert.equal(sent, 1);
  });

  it("an aborted call throws the signal's reason instead of retrying", async () => {
    const { route } = setup();
    const controller = new AbortController();
    const reason = new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "the gateway is stopping");
    await assert.rejects(
      route(
        ["t:0"],
        () => {
          controller.abort(reason);
          return { errorCode: ErrorCode.NOT_LEADER };
        },
        { signal: controller.signal },
      ),
      (err) => err === reason && isSamsaError(err, ErrorCode.LEADER_NOT_AVAILABLE),
    );
  });
});

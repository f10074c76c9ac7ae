/**
 * Compare-and-swap of partition states against a real etcd: of concurrent updates made from
 * the same read exactly one wins, a stale leader epoch loses without writing, and a controller
 * write is fenced on the controller's leadership.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { casPartitionState, readPartitionState } from "../../services/shared/etcd/cas.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import { ControllerElection } from "../../services/shared/etcd/election.js";
import { EtcdKeys, type PartitionState } from "../../services/shared/etcd/keys.js";
import { type EtcdProcess, startEtcd } from "../support/etcd.js";
import { waitFor } from "../support/wait-for.js";

const initial: PartitionState = {
  replicas: [1, 2, 3],
  leader: 1,
  leaderEpoch: 0,
  isr: [1, 2, 3],
  partitionEpoch: 0,
};

describe("partition state CAS (real etcd)", () => {
  let etcd: EtcdProcess;
  let client: Etcd3;

  before(async () => {
    etcd = await startEtcd();
    client = createEtcdClient({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    client?.close();
    await etcd?.stop();
  });

  const freshKeys = () => EtcdKeys.forCluster(`t-${randomUUID().slice(0, 8)}`);
  const create = async (keys: EtcdKeys) => {
    const created = await casPartitionState(client, keys, {
      topic: "orders",
      partition: 0,
      expected: undefined,
      next: initial,
    });
    assert.ok(created.won);
    return created.state;
  };

  it("creates once: a second create finds the key", async () => {
    const keys = freshKeys();
    const state = await create(keys);
    assert.deepEqual(await readPartitionState(client, keys, "orders", 0), state);
    const again = await casPartitionState(client, keys, {
      topic: "orders",
      partition: 0,
      expected: undefined,
      next: initial,
    });
    assert.equal(again.won, false);
    assert.ok(!again.won && again.reason === "exists");
    assert.deepEqual(!again.won && again.current, state);
  });

  it("of concurrent updates from the same read, exactly one wins", async () => {
    const keys = freshKeys();
    const read = await create(keys);
    const contenders = 8;
    const results = await Promise.all(
      Array.from({ length: contenders }, (_, i) =>
        casPartitionState(client, keys, {
          topic: "orders",
          partition: 0,
          expected: read,
          expectedLeaderEpoch: 0,
          // Each contender shrinks the ISR differently (leader 1 stays).
          next: { ...initial, isr: i % 2 === 0 ? [1, 2] : [1, 3], partitionEpoch: 1 + i },
        }),
      ),
    );
    const winners = results.filter((r) => r.won);
    assert.equal(winners.length, 1);
    const winner = winners[0]!;
    assert.ok(winner.won);
    const stored = await readPartitionState(client, keys, "orders", 0);
    assert.deepEqual(stored, winner.state);
    for (const loser of results.filter((r) => !r.won)) {
      assert.ok(!loser.won && loser.reason === "revision");
      assert.deepEqual(loser.current, stored, "losers get the winner's state");
    }
  });

  it("refuses, without writing, a writer acting under another leader epoch", async () => {
    const keys = freshKeys();
    const read = await create(keys);
    const result = await casPartitionState(client, keys, {
      topic: "orders",
      partition: 0,
      expected: read,
      expectedLeaderEpoch: 1,
      next: { ...initial, isr: [1], partitionEpoch: 1 },
    });
    assert.ok(!result.won && result.reason === "leader-epoch");
    assert.deepEqual(await readPartitionState(client, keys, "orders", 0), read);
  });

  it("fences controller writes on the controller's leadership", async () => {
    const keys = freshKeys();
    const read = await create(keys);
    const own = createEtcdClient({ endpoints: [etcd.endpoint] });
    const election = new ControllerElection({
      client: own,
      keys,
      candidate: { id: "c1", address: "127.0.0.1:9001" },
      ttlSeconds: 2,
    });
    try {
      await election.start();
      const leadership = await waitFor(() => election.leadership, { message: "elected" });
      const next = { ...initial, leader: 2, leaderEpoch: 1, isr: [2, 3], partitionEpoch: 1 };
      const won = await casPartitionState(client, keys, {
        topic: "orders",
        partition: 0,
        expected: read,
        next,
        fence: leadership,
      });
      assert.ok(won.won);
      await election.resign();
      await assert.rejects(
        casPartitionState(client, keys, {
          topic: "orders",
          partition: 0,
          expected: won.state,
          next: { ...next, leader: 3, leaderEpoch: 2, partitionEpoch: 2 },
          fence: leadership,
        }),
        (err) => isSamsaError(err, ErrorCode.NOT_CONTROLLER),
      );
      assert.deepEqual(await readPartitionState(client, keys, "orders", 0), won.state);
    } finally {
      await election.close();
      own.close();
    }
  });
});

/**
 * Controller election against a real etcd: one of two candidates leads with epoch = the create
 * revision of its key; when it resigns, is killed or loses its lease, the other leads with a
 * larger epoch, and the deposed controller's fenced writes fail with NOT_CONTROLLER.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import { ErrorCode, isSamsaError } from "../../services/shared/errors.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import {
  ControllerElection,
  type ControllerLeadership,
  fencedTxn,
} from "../../services/shared/etcd/election.js";
import { EtcdKeys } from "../../services/shared/etcd/keys.js";
import { type EtcdProcess, spawnEtcdMember, startEtcd } from "../support/etcd.js";
import { waitFor } from "../support/wait-for.js";

const ttlSeconds = 2;
const electionTimeoutMs = ttlSeconds * 1000 + 4_000;

describe("controller election (real etcd)", () => {
  let etcd: EtcdProcess;
  let client: Etcd3;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    etcd = await startEtcd();
    client = createEtcdClient({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    client?.close();
    await etcd?.stop();
  });

  const freshKeys = () => EtcdKeys.forCluster(`t-${randomUUID().slice(0, 8)}`);
  /** A candidate with its own client, as in its own process. */
  const candidate = (keys: EtcdKeys, id: number) => {
    const own = createEtcdClient({ endpoints: [etcd.endpoint] });
    const election = new ControllerElection({
      client: own,
      keys,
      candidate: { id: String(id), address: `127.0.0.1:${9000 + id}` },
      ttlSeconds,
    });
    const elected: ControllerLeadership[] = [];
    const deposed: string[] = [];
    election.onElected((l) => elected.push(l));
    election.onDeposed((_l, reason) => deposed.push(reason));
    cleanups.push(async () => {
      await election.close();
      own.close();
    });
    return { election, client: own, elected, deposed };
  };
  const waitElected = (c: { election: ControllerElection }, message: string) =>
    waitFor(() => c.election.leadership, { timeoutMs: electionTimeoutMs, message });
  const createRevision = async (key: string) => {
    const kv = (await client.get(key).exec()).kvs[0];
    assert.ok(kv, `${key} exists`);
    return Number(kv.create_revision);
  };
  const fencedPut = (c: Etcd3, l: ControllerLeadership, key: string) =>
    fencedTxn(c, l)
      .do(c.put(key).value(String(l.id)))
      .commit();

  it("elects one of two; on resign the other leads with a larger epoch and the old one is fenced", async () => {
    const keys = freshKeys();
    const a = candidate(keys, 1);
    await a.election.start();
    const leaderA = await waitElected(a, "a elected");
    assert.equal(leaderA.epoch, await createRevision(leaderA.key));
    assert.ok(leaderA.key.startsWith(keys.controllerPrefix()));

    const b = candidate(keys, 2);
    await b.election.start();
    assert.deepEqual(b.election.leader(), leaderA, "b observes a as leader");
    assert.equal(b.election.leadership, undefined);
    const probe = `${keys.prefix}probe`;
    assert.equal((await fencedPut(a.client, leaderA, probe)).succeeded, true);

    await a.election.resign();
    assert.deepEqual(a.deposed, ["resigned"]);
    const leaderB = await waitElected(b, "b elected");
    assert.ok(leaderB.epoch > leaderA.epoch);
    assert.equal(leaderB.epoch, await createRevision(leaderB.key));
    await waitFor(() => a.election.leader()?.id === "2", { message: "a observes b" });

    await assert.rejects(fencedPut(a.client, leaderA, probe), (err) =>
      isSamsaError(err, ErrorCode.NOT_CONTROLLER),
    );
    assert.equal((await fencedPut(b.client, leaderB, probe)).succeeded, true);
    assert.equal(await client.get(probe).string(), "2");
    assert.deepEqual(b.elected, [leaderB]);
  });

  it("a killed controller is replaced within its TTL", async () => {
    const keys = freshKeys();
    const child = spawnEtcdMember("campaign", etcd.endpoint, keys.prefix, 7, ttlSeconds);
    cleanups.push(() => child.kill());
    const line = await child.firstLine;
    const b = candidate(keys, 8);
    await b.election.start();
    assert.equal(b.election.leader()?.id, "7");
    assert.equal(b.election.leader()?.epoch, line.epoch);
    await child.kill();
    const leaderB = await waitElected(b, "b elected after the kill");
    assert.ok(leaderB.epoch > Number(line.epoch));
    assert.equal(b.election.leader()?.id, "8");
  });

  it("a controller whose lease is revoked is deposed, fenced, and campaigns again", async () => {
    const keys = freshKeys();
    const a = candidate(keys, 1);
    await a.election.start();
    const first = await waitElected(a, "a elected");
    const kv = (await client.get(first.key).exec()).kvs[0];
    assert.ok(kv);
    await client.leaseClient.leaseRevoke({ ID: kv.lease });
    await waitFor(() => a.deposed.length === 1, { message: "a deposed" });
    await assert.rejects(fencedPut(a.client, first, `${keys.prefix}probe`), (err) =>
      isSamsaError(err, ErrorCode.NOT_CONTROLLER),
    );
    const second = await waitFor(
      () => {
        const leadership = a.election.leadership;
        return leadership && leadership.epoch > first.epoch ? leadership : undefined;
      },
      { timeoutMs: electionTimeoutMs, message: "a elected again" },
    );
    assert.notEqual(second.key, first.key);
  });

  it("a fenced txn whose own compare fails returns succeeded=false", async () => {
    const keys = freshKeys();
    const a = candidate(keys, 1);
    await a.election.start();
    const leadership = await waitElected(a, "a elected");
    const topic = keys.topic("t1");
    await client.put(topic).value("{}");
    const read = client.get(topic);
    const result = await fencedTxn(client, leadership)
      .and(topic, "Create", "==", 0)
      .do(client.put(topic).value("again"))
      .orElse(read)
      .commit();
    assert.equal(result.succeeded, false);
    assert.equal(result.responses.length, 1, "only the caller's else responses");
    assert.equal(result.responses[0]?.response_range.kvs[0]?.value.toString(), "{}");
  });
});

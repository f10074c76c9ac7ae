/**
 * GroupMembership (the GroupConsumer's heartbeat loop) against a scripted coordinator: a revoked
 * partition stays listed as owned until the consumer's revocation (listener and commit) is done,
 * and the next heartbeat releases it; a fenced member loses its partitions and joins again with
 * epoch 0 (keeping its id; UNKNOWN_MEMBER drops the id); a non-retriable error is fatal;
 * a retriable one is retried.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GroupClient, GroupTopicPartition } from "../../services/client/group-client.js";
import { GroupMembership, key } from "../../services/client/group-membership.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { waitFor } from "../support/wait-for.js";

interface Beat {
  memberId: string;
  memberEpoch: number;
  owned: string[];
  topics: string[];
}

type Answer = { epoch: number; assignment: string[] } | SamsaError;

/** A coordinator answering heartbeats from a script (the last answer repeats). */
function scripted(answers: Answer[]) {
  const beats: Beat[] = [];
  const client = {
    call: async (method: string, request: Record<string, unknown>) => {
      assert.equal(method, "ConsumerGroupHeartbeat");
      const owned = (
        (request.ownedPartitions ?? []) as { topic: string; partitions: number[] }[]
      ).flatMap((t) => t.partitions.map((p) => `${t.topic}:${p}`));
      beats.push({
        memberId: request.memberId as string,
        memberEpoch: request.memberEpoch as number,
        owned: owned.sort(),
        topics: (request.subscribedTopicNames ?? []) as string[],
      });
      if ((request.memberEpoch as number) < 0)
        return {
          memberId: request.memberId,
          memberEpoch: -1,
          heartbeatIntervalMs: 5,
          assignment: [],
        };
      const a = answers.length > 1 ? answers.shift()! : answers[0]!;
      if (a instanceof SamsaError) throw a;
      const byTopic = new Map<string, number[]>();
      for (const k of a.assignment) {
        const [t, p] = k.split(":");
        byTopic.set(t!, [...(byTopic.get(t!) ?? []), Number(p)]);
      }
      return {
        memberId: "m1",
        memberEpoch: a.epoch,
        heartbeatIntervalMs: 5,
        sessionTimeoutMs: 3000,
        assignment: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
      };
    },
  };
  return { beats, client: client as unknown as GroupClient };
}

const settings = {
  groupId: "g",
  clientId: "c",
  sessionTimeoutMs: 3000,
  rebalanceTimeoutMs: 60_000,
  serverAssignor: "",
  requestTimeoutMs: 1000,
};

/** A consumer's side: owned partitions, with a revocation the test finishes. */
function consumerSide() {
  const owned = new Map<string, GroupTopicPartition>();
  const events: string[] = [];
  let finishRevoke = (): void => undefined;
  return {
    owned,
    events,
    finish: () => finishRevoke(),
    handlers: {
      owned: () => [...owned.values()],
      onAssigned: (ps: GroupTopicPartition[]) => {
        for (const p of ps) owned.set(key(p), p);
        events.push(`assigned ${ps.map(key).join(",")}`);
      },
      onRevoked: async (ps: GroupTopicPartition[]) => {
        events.push(`revoking ${ps.map(key).join(",")}`);
        await new Promise<void>((r) => {
          finishRevoke = r;
        });
        events.push("committed"); // the listener and the commit are done here
        for (const p of ps) owned.delete(key(p));
      },
      onLost: async () => {
        events.push(`lost ${[...owned.keys()].join(",")}`);
        owned.clear();
      },
      onFatal: (err: SamsaError) => {
        events.push(`fatal ${err.codeName}`);
      },
    },
  };
}

describe("group membership", () => {
  test("a revoked partition is listed as owned until its revocation is done, then released", async () => {
    const { beats, client } = scripted([
      { epoch: 1, assignment: ["t:0", "t:1"] },
      { epoch: 2, assignment: ["t:0"] },
    ]);
    const side = consumerSide();
    const m = new GroupMembership(client, settings, side.handlers);
    m.subscribe(["t"]);
    m.start();
    await waitFor(() => side.events.includes("revoking t:1"), { message: "revocation started" });
    const pending = beats.length;
    await waitFor(() => beats.length >= pending + 3, { message: "heartbeats go on meanwhile" });
    for (const b of beats.slice(pending)) assert.deepEqual(b.owned, ["t:0", "t:1"], "still owned");
    side.finish();
    await waitFor(() => beats.at(-1)!.owned.join() === "t:0", { message: "released" });
    const firstRelease = beats.findIndex((b, i) => i >= pending && b.owned.join() === "t:0");
    assert.ok(side.events.indexOf("committed") >= 0 && firstRelease > 0);
    assert.equal(beats[firstRelease]!.memberEpoch, 2);
    await m.leave();
    assert.equal(beats.at(-1)!.memberEpoch, -1, "a dynamic member leaves with -1");
  });

  test("fenced: the partitions are lost (no commit) and the member joins again with epoch 0", async () => {
    const { beats, client } = scripted([
      { epoch: 1, assignment: ["t:0"] },
      { epoch: 1, assignment: ["t:0"] },
      new SamsaError(ErrorCode.FENCED_MEMBER_EPOCH),
      { epoch: 3, assignment: ["t:1"] },
    ]);
    const side = consumerSide();
    const m = new GroupMembership(client, settings, side.handlers);
    m.subscribe(["t"]);
    m.start();
    await waitFor(() => side.events.includes("assigned t:1"), { message: "rejoined" });
    assert.deepEqual(side.events, ["assigned t:0", "lost t:0", "assigned t:1"]);
    const rejoin = beats[3]!;
    assert.deepEqual(
      [rejoin.memberId, rejoin.memberEpoch, rejoin.owned, rejoin.topics],
      ["m1", 0, [], ["t"]],
      "epoch 0, same member id, nothing owned, the subscription again",
    );
    await m.leave();
  });

  test("UNKNOWN_MEMBER drops the member id; a retriable error is retried; a fatal one ends the loop", async () => {
    const { beats, client } = scripted([
      { epoch: 1, assignment: [] },
      new SamsaError(ErrorCode.UNKNOWN_MEMBER),
      new SamsaError(ErrorCode.COORDINATOR_NOT_AVAILABLE),
      { epoch: 2, assignment: [] },
      new SamsaError(ErrorCode.INVALID_SESSION_TIMEOUT),
    ]);
    const side = consumerSide();
    const m = new GroupMembership(client, settings, side.handlers);
    m.subscribe(["t"]);
    m.start();
    await waitFor(() => side.events.includes("fatal INVALID_SESSION_TIMEOUT"), {
      message: "fatal",
    });
    assert.deepEqual(
      beats.map((b) => [b.memberId, b.memberEpoch]),
      [
        ["", 0],
        ["m1", 1],
        ["", 0],
        ["", 0],
        ["m1", 2],
      ],
    );
    const count = beats.length;
    await m.leave();
    assert.equal(beats.length, count + 1, "only the leave after the fatal error");
  });
});

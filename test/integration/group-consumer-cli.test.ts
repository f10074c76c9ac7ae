/**
 * The consumer group CLI against a real cluster (etcd, a controller, a broker, a gateway as
 * processes): `consumer-groups describe` shows the lag after producing N records and committing
 * M, with the member's id, host and client id; `--members` and `--state`; `reset-offsets` as a
 * dry run changes nothing and with `--execute` does; `consume --group` prints records and
 * commits them (a second run of the group prints only newer ones); `list` and `delete`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { GroupClient, GroupConsumer, Producer } from "../../services/client/index.js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { runCli } from "../support/cli.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import { GROUP_GATEWAY_ARGS } from "./groups-helpers.js";

const CLI_TIMEOUT_MS = 30_000;
const N = 10;
const M = 4;

describe("consumer-groups CLI", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let groups: GroupClient;
  const topic = uniqueTopic("cli-groups");
  const cli = (args: string[]) =>
    runCli(["--api-timeout-ms", "15000", ...args], {
      bootstrap: cluster.bootstrap.join(","),
      controller: cluster.controllers.join(","),
      timeoutMs: CLI_TIMEOUT_MS,
    });
  const gw = () => ["--gateway", cluster.gateways.join(",")];
  /** Rows of a table output, split on runs of spaces. */
  const rows = (out: string) =>
    out
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/));

  before(async () => {
    cluster = await startTestCluster({ brokers: 1, gateways: 1, gatewayArgs: GROUP_GATEWAY_ARGS });
    await createTopic(clients.admin(cluster.controllers[0]!), topic, 1);
    await waitForLeaders(cluster, clients, topic, 1);
    const producer = new Producer({ bootstrapServers: cluster.bootstrap });
    await producer.send(
      topic,
      Array.from({ length: N }, (_, i) => ({ value: `r${i}`, partition: 0 })),
      { acks: "all" },
    );
    await producer.close();
    groups = new GroupClient({ gateways: cluster.gateways });
  });
  after(async () => {
    groups?.close();
    clients.close();
    await cluster?.stop();
  });

  test("describe shows lag N − M and the member; reset-offsets: dry run changes nothing, execute does", async () => {
    const group = uniqueTopic("lag");
    const consumer = new GroupConsumer({
      groupId: group,
      gateways: cluster.gateways,
      bootstrapServers: cluster.bootstrap,
      autoCommit: false,
      autoOffsetReset: "earliest",
      clientId: "lag-test",
    });
    consumer.subscribe(topic);
    const running = consumer.run({ eachMessage: () => undefined });
    await waitFor(() => consumer.assignment().length === 1, { message: "the member owns p0" });
    await consumer.commit([{ topic, partition: 0, offset: M }]);
    const d = await cli(["consumer-groups", "describe", "--group", group, ...gw()]);
    assert.equal(d.code, 0, d.stderr);
    const [header, row] = rows(d.stdout);
    assert.deepEqual(header, [
      "GROUP",
      "TOPIC",
      "PARTITION",
      "CURRENT-OFFSET",
      "LOG-END-OFFSET",
      "LAG",
      "CONSUMER-ID",
      "HOST",
      "CLIENT-ID",
    ]);
    assert.deepEqual(row!.slice(0, 7), [
      group,
      topic,
      "0",
      String(M),
      String(N),
      String(N - M),
      consumer.memberId,
    ]);
    assert.equal(row![8], "lag-test");
    const members = await cli([
      "consumer-groups",
      "describe",
      "--group",
      group,
      "--members",
      ...gw(),
    ]);
    assert.equal(members.code, 0, members.stderr);
    assert.equal(rows(members.stdout)[1]![1], consumer.memberId);
    const state = await cli(["consumer-groups", "describe", "--group", group, "--state", ...gw()]);
    assert.equal(rows(state.stdout)[1]![3], "STABLE");
    // Executing needs an empty group: refused while the member is in it.
    const busy = await cli([
      "consumer-groups",
      "reset-offsets",
      "--group",
      group,
      "--topic",
      topic,
      "--to-earliest",
      "--execute",
      ...gw(),
    ]);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /NON_EMPTY_GROUP/);
    await consumer.disconnect();
    await running;

    const dry = await cli([
      "consumer-groups",
      "reset-offsets",
      "--group",
      group,
      "--topic",
      topic,
      "--to-earliest",
      "--dry-run",
      ...gw(),
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(rows(dry.stdout)[1], [group, topic, "0", String(M), "0"]);
    const [still] = await groups.fetchOffsets(group, [{ topic }]);
    assert.equal(still!.offset, M, "a dry run changes nothing");
    const shifted = await cli([
      "consumer-groups",
      "reset-offsets",
      "--group",
      group,
      "--topic",
      `${topic}:0`,
      "--shift-by",
      "-3",
      "--execute",
      ...gw(),
    ]);
    assert.equal(shifted.code, 0, shifted.stderr);
    assert.deepEqual(rows(shifted.stdout)[1], [group, topic, "0", String(M), String(M - 3)]);
    const [moved] = await groups.fetchOffsets(group, [{ topic }]);
    assert.equal(moved!.offset, M - 3, "execute writes");
    const lagNow = await cli(["consumer-groups", "describe", "--group", group, ...gw()]);
    assert.deepEqual(rows(lagNow.stdout)[1]!.slice(3, 7), [
      String(M - 3),
      String(N),
      String(N - M + 3),
      "-",
    ]);
  });

  test("consume --group prints and commits; the next run of the group goes on from there; list and delete", async () => {
    const group = uniqueTopic("cg");
    const first = await cli([
      "consume",
      "--topic",
      topic,
      "--group",
      group,
      "--from-beginning",
      "--max-messages",
      "6",
      ...gw(),
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(first.stdout.trim().split("\n"), ["r0", "r1", "r2", "r3", "r4", "r5"]);
    assert.match(first.stderr, /Processed a total of 6 messages/);
    const [committed] = await groups.fetchOffsets(group, [{ topic }]);
    assert.equal(committed!.offset, 6, "what was printed is committed");
    const second = await cli([
      "consume",
      "--topic",
      topic,
      "--group",
      group,
      "--timeout-ms",
      "3000",
      ...gw(),
    ]);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(second.stdout.trim().split("\n"), ["r6", "r7", "r8", "r9"]);
    const list = await cli(["consumer-groups", "list", ...gw()]);
    assert.ok(list.stdout.split("\n").includes(group), list.stdout);
    const del = await cli(["consumer-groups", "delete", "--group", group, ...gw()]);
    assert.equal(del.code, 0, del.stderr);
    const after = await groups.fetchOffsets(group, [{ topic }]);
    assert.equal(after[0]!.offset, -1, "the offsets went with the group");
  });
});

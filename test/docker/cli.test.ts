/**
 * The project's own CLI (`node scripts/samsa.mjs`) run on the host against the compose cluster
 * (docker-compose.yml as project `samsa-cli-test`, on its own host ports), both ways a user
 * points it at the cluster:
 *
 * (a) bootstrap = one broker's host listener (EXTERNAL, 127.0.0.1:<published port>): its
 *     Metadata names every broker at its EXTERNAL address, so the CLI talks to each partition's
 *     leader directly; topics are created through a controller's published port;
 * (b) bootstrap = the gateway (127.0.0.1:<published port>), also as the controller address: the
 *     gateway serves BrokerService and proxies AdminService.
 *
 * Each way: create a topic, produce RECORDS keyed lines with the CLI (acks=all), consume them all
 * back with the CLI and check that every line came back exactly once, with its key.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AdminClient } from "../../services/client/admin-client.js";
import { cliEnv } from "../support/cli.js";
import { createClient, unary } from "../../services/shared/grpc/client.js";
import { brokerService } from "../../services/shared/grpc/proto.js";
import { waitFor } from "../support/wait-for.js";
import { brokersOnHost, ComposeProject, LOOPBACK, publishedPorts, run } from "./compose-project.js";

/** Host ports of this project: away from the defaults and from compose.test.ts's. */
const HOST_PORTS = publishedPorts(39000);
const GATEWAY = `${LOOPBACK}:${HOST_PORTS.GATEWAY_PORT}`;
const CONTROLLER = `${LOOPBACK}:${HOST_PORTS.CONTROLLER_PORT}`;
const BROKERS_ON_HOST = brokersOnHost(HOST_PORTS);

const PARTITIONS = 3;
const RECORDS = 1000;
const KEYS = 50;
/** One CLI command, ms (a cold tsx start plus retries while leaders settle). */
const CLI_TIMEOUT_MS = 120_000;
/** Partitions with leaders after a create, ms. */
const SETTLE_TIMEOUT_MS = 90_000;
/** The CLI's own deadline per operation with its retries, ms. */
const CLI_API_TIMEOUT_MS = 60_000;
/** `consume --timeout-ms`: stop after this long without a new record, ms. */
const CONSUME_IDLE_MS = 30_000;

/** Runs the CLI with exactly these addresses (no SAMSA_* from the test's environment). */
function samsa(
  bootstrap: string,
  controller: string,
  args: readonly string[],
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = cliEnv(bootstrap, controller);
  return run(
    process.execPath,
    ["scripts/samsa.mjs", "--api-timeout-ms", String(CLI_API_TIMEOUT_MS), ...args],
    {
      env,
      timeoutMs: CLI_TIMEOUT_MS,
      allowFailure: true,
      ...(input === undefined ? {} : { input }),
    },
  );
}

describe("the CLI on the host against the compose cluster", { timeout: 30 * 60_000 }, () => {
  const project = new ComposeProject("samsa-cli-test", HOST_PORTS);
  let completed = 0;

  before(() => project.up());
  after(() => project.down(completed === 2));

  /** Waits until every partition of `topic` has a leader (asked through `controller`). */
  const waitForLeaders = async (controller: string, topic: string): Promise<void> => {
    const admin = new AdminClient({ controllers: [controller], apiTimeoutMs: 30_000 });
    try {
      await waitFor(
        async () => {
          const [d] = await admin.describeTopics([topic]);
          return !d?.error && d?.partitions.length === PARTITIONS
            ? d.partitions.every((p) => p.leaderId >= 0)
            : false;
        },
        { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 500, message: `${topic}: leaders` },
      );
    } finally {
      admin.close();
    }
  };

  /** create, produce RECORDS lines, consume them back: each line exactly once, with its key. */
  const roundTrip = async (bootstrap: string, controller: string, topic: string) => {
    const created = await samsa(bootstrap, controller, [
      "topics",
      "create",
      "--topic",
      topic,
      "--partitions",
      String(PARTITIONS),
    ]);
    assert.equal(created.code, 0, `topics create: ${created.stderr}`);
    await waitForLeaders(controller, topic);

    const lines = Array.from({ length: RECORDS }, (_, i) => `key-${i % KEYS}:value-${i}`);
    const produced = await samsa(
      bootstrap,
      controller,
      ["produce", "--topic", topic, "--key-separator", ":", "--acks", "all"],
      `${lines.join("\n")}\n`,
    );
    assert.equal(produced.code, 0, `produce: ${produced.stderr}`);

    const consumed = await samsa(bootstrap, controller, [
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--max-messages",
      String(RECORDS),
      "--timeout-ms",
      String(CONSUME_IDLE_MS),
      "--print-key",
      "--key-separator",
      ":",
    ]);
    assert.equal(consumed.code, 0, `consume: ${consumed.stderr}`);
    const seen = new Map<string, number>();
    for (const line of consumed.stdout.split("\n")) {
      if (line === "") continue;
      seen.set(line, (seen.get(line) ?? 0) + 1);
    }
    const twice = [...seen].filter(([, n]) => n > 1).map(([line]) => line);
    assert.deepEqual(twice, [], "no line consumed twice");
    const missing = lines.filter((l) => !seen.has(l));
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} lines not consumed`);
    const unexpected = [...seen.keys()].filter((l) => !lines.includes(l));
    assert.deepEqual(unexpected, [], "only the produced lines");
    assert.equal(seen.size, RECORDS);
  };

  test("(a) bootstrap = a broker's host listener: Metadata names every broker at its host address; create, produce, consume", async (t) => {
    t.diagnostic(`${project.commandLine}: ${project.timings.join(", ")}`);
    // What the CLI's client is told: each broker on its EXTERNAL listener, which the host reaches.
    const client = createClient(brokerService.Client, BROKERS_ON_HOST[1]!);
    try {
      const answer = await unary(client, "Metadata", { topics: [] }, { deadlineMs: 30_000 });
      assert.deepEqual(
        Object.fromEntries(answer.brokers.map((b) => [b.id, `${b.host}:${b.port}`])),
        BROKERS_ON_HOST,
      );
    } finally {
      client.close();
    }
    await roundTrip(BROKERS_ON_HOST[1]!, CONTROLLER, "cli-direct");
    completed++;
  });

  test("(b) bootstrap = the gateway (also as the controller): create, produce, consume", async () => {
    await roundTrip(GATEWAY, GATEWAY, "cli-gateway");
    completed++;
  });
});

/**
 * Replication under container faults on the compose cluster (docs/replication.md, "Tests"):
 * docker-compose.yml as project `samsa-repl-test` on its own host ports, with the brokers'
 * failure detection shortened through the compose file's variables (3 s session, 5 s lag, short
 * fetch backoff and wait), topics of replication factor 3 with min.insync.replicas 2, and the
 * oracle's acks=all senders (test/docker/compose-oracle.ts) running throughout each fault:
 *
 * 1. `docker kill` of a partition's leader: a new leader in a newer epoch, the killed broker out
 *    of every ISR, sends go on; `docker start` brings it back into every ISR;
 * 2. `docker pause` of a leader until its session expired and another broker leads: the zombie,
 *    unpaused, answers the acks=all produce sent to it while it was frozen with no success (it
 *    is fenced), and rejoins the ISR as a follower; the probe's records are not in the log;
 * 3. `docker network disconnect` of a leader from the compose network, then `connect` (with its
 *    DNS aliases back): the same, with the probes sent by clients inside its own container
 *    (`docker exec`, loopback, the one side of the cut that still reaches it), connected
 *    beforehand: at once after the cut, after the election, and the moment the cut heals. None
 *    is acknowledged, and their records are not in the log. (The host reaches a reconnected
 *    container's published port again only seconds later, too late for a zombie.)
 *
 * After each fault the oracle reads every partition with two independent readers (the leader's
 * own listener, the gateway's Fetch); a last case reads every case's topic again. A case that
 * fails heals its fault first (start, unpause, reconnect), so it leaves no dead, frozen or
 * detached container to the next; the brokers' and controllers' logs are printed then.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, type TestContext, test } from "node:test";
import { ErrorCode } from "../../services/shared/errors.js";
import { Clients, createTopics, uniqueTopic } from "../integration/cluster-helpers.js";
import type { PartitionInfo } from "../integration/replication-helpers.js";
import { waitFor } from "../support/wait-for.js";
import { ComposeProject, hostEndpoints, publishedPorts, run } from "./compose-project.js";
import {
  ComposeOracleProducer,
  type ComposeEndpoints,
  checkComposeOracle,
  partitionStates,
  produceOnce,
  waitForPartitions,
} from "./compose-oracle.js";

const PROJECT = "samsa-repl-test";
/** Host ports of this project: away from the defaults and from the other docker tests'. */
const HOST_PORTS = publishedPorts(25000);
const ENDPOINTS: ComposeEndpoints = hostEndpoints(HOST_PORTS);

/** Broker lease TTL: a killed, paused or detached broker is dead to the controller after this, ms. */
const SESSION_MS = 3_000;
/** `replica.lag.time.max.ms`: a follower not caught up this long leaves the ISR, ms. */
const LAG_MS = 5_000;
/** The compose file's variables for this project: failure detection in seconds. */
const TIMING_VARIABLES = {
  SAMSA_BROKER_SESSION_TIMEOUT_MS: String(SESSION_MS),
  SAMSA_REPLICA_LAG_TIME_MAX_MS: String(LAG_MS),
  SAMSA_REPLICA_FETCH_BACKOFF_MS: "100",
  SAMSA_REPLICA_FETCH_WAIT_MAX_MS: "200",
} as const;

const PARTITIONS = 3;
const REPLICAS = 3;
const MIN_ISR = 2;
/** How long a fault's consequence (election, ISR change, restart and rejoin) may take, ms. */
const SETTLE_MS = 60_000;
/** Acknowledged records to wait for before, during and after each fault. */
const ACKS_BEFORE = 100;
const ACKS_DURING = 100;
const ACKS_AFTER = 100;
/** Bounds of one case's senders (they stop by themselves past them). */
const ORACLE_LIMITS = { sendsMax: 20_000, durationMs: 150_000 } as const;
/**
 * Deadline of the produce sent to a leader while it is frozen: it is answered only after the
 * unpause, so it must outlast the pause (election, and the sends during it), ms.
 */
const PROBE_DEADLINE_MS = 90_000;
/** Where the image keeps the compiled services (deploy/Dockerfile). */
const IMAGE_SERVICES_DIR = "/app/dist/services";
/** A broker's INTERNAL listener port inside its container (docker-compose.yml). */
const BROKER_INTERNAL_PORT = 9092;
/** `timeout_ms` of the produce sent from inside the isolated broker's container, ms. */
const INSIDE_PROBE_TIMEOUT_MS = 4_000;
/** Its call deadline, ms. */
const INSIDE_PROBE_DEADLINE_MS = 8_000;
/** How long `docker exec` and node's start-up may take until the probe is connected, ms. */
const INSIDE_PROBE_START_MS = 30_000;
/** Longest life of an inside probe's process (armed, then fired), ms. */
const INSIDE_PROBE_BOUND_MS = 3 * 60_000;
/** Pause between probes that found no connection to the broker, ms. */
const PROBE_RETRY_MS = 100;
/** Log lines per broker and controller printed when a case fails. */
const FAILURE_LOG_LINES = 150;

/** Test cases of the file (three faults and the final check): the project is logged unless all pass. */
const CASES = 4;
/** Every partition has its full replica set in sync. */
const full = (p: PartitionInfo) => p.isr.length === REPLICAS;

/** What a probe of a deposed leader got: NONE (acknowledged) or the error's code name. */
interface ProbeResult {
  readonly code: string;
  readonly message: string;
  /** Whether the broker answered (else the call failed: its deadline passed). */
  readonly answered: boolean;
}

/** The partitions `broker` leads in `infos`. */
const ledBy = (infos: Map<number, PartitionInfo>, broker: number): number[] =>
  [...infos].filter(([, p]) => p.leader === broker).map(([n]) => n);

/** Runs `docker <args>` (bounded in time by `run`). */
const docker = (...args: string[]) => run("docker", args);

/** The one network a container is attached to, and its DNS aliases there. */
async function networkOf(container: string): Promise<{ network: string; aliases: string[] }> {
  const out = await docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container);
  const networks = JSON.parse(out.stdout) as Record<
    string,
    { Aliases: string[] | null; DNSNames?: string[] | null }
  >;
  const names = Object.keys(networks);
  assert.equal(names.length, 1, `${container} is on one network: ${names.join(", ")}`);
  const network = names[0]!;
  const settings = networks[network]!;
  // Docker adds the short container id (and its name) again by itself on connect.
  const implicit = (alias: string) => container.startsWith(alias) || alias.startsWith(PROJECT);
  const aliases = [...new Set([...(settings.Aliases ?? []), ...(settings.DNSNames ?? [])])].filter(
    (a) => !implicit(a),
  );
  return { network, aliases };
}

describe("replication on the compose cluster: docker kill, pause, network disconnect of a leader", {
  timeout: 20 * 60_000,
}, () => {
  const project = new ComposeProject(PROJECT, HOST_PORTS, TIMING_VARIABLES);
  const clients = new Clients();
  const fresh = new Clients();
  let completed = 0;
  /** Each case's topic and producer, checked once more after every fault. */
  const checked: Array<{ topic: string; producer: ComposeOracleProducer }> = [];
  let failed = false;

  before(async () => {
    await project.up();
  });

  after(async () => {
    clients.close();
    fresh.close();
    if (failed) await printBrokerLogs(project);
    await project.down(!failed && completed === CASES);
  });

  /** A new RF 3 topic whose ISRs are full, and its oracle producer, started. */
  const replicatedTopic = async (prefix: string) => {
    const topic = uniqueTopic(prefix);
    const [r] = await createTopics(clients.admin(ENDPOINTS.gateway), [
      {
        name: topic,
        numPartitions: PARTITIONS,
        replicationFactor: REPLICAS,
        configs: { "min.insync.replicas": String(MIN_ISR) },
      },
    ]);
    assert.equal(r!.errorCode, 0, `create ${topic}: ${r!.errorMessage}`);
    const infos = await waitForPartitions(
      clients,
      ENDPOINTS,
      topic,
      PARTITIONS,
      full,
      SETTLE_MS,
      `${topic}: every follower in the ISR`,
    );
    const producer = new ComposeOracleProducer(
      clients,
      ENDPOINTS,
      topic,
      PARTITIONS,
      ORACLE_LIMITS,
    );
    producer.start();
    await producer.waitForMoreAcks(ACKS_BEFORE, SETTLE_MS, "acks=all sends before the fault");
    return { topic, infos, producer };
  };

  /**
   * Waits until every partition has a leader other than `victim`, in a newer epoch where
   * `victim` led, and `victim` is out of every ISR (which is then `min.insync.replicas` big).
   */
  const waitElected = async (
    topic: string,
    victim: number,
    before: Map<number, PartitionInfo>,
    what: string,
  ) => {
    const elected = await waitForPartitions(
      clients,
      ENDPOINTS,
      topic,
      PARTITIONS,
      (p) => p.leader !== victim && !p.isr.includes(victim) && p.isr.length === REPLICAS - 1,
      SETTLE_MS,
      what,
    );
    for (const [n, p] of before) {
      if (p.leader !== victim) continue;
      assert.ok(
        elected.get(n)!.leaderEpoch > p.leaderEpoch,
        `partition ${n}: leader epoch grew (${p.leaderEpoch} → ${elected.get(n)!.leaderEpoch})`,
      );
    }
    return elected;
  };

  /** Waits until `victim` is back in every ISR; a partition it leads again did so anew. */
  const waitRejoined = async (
    topic: string,
    victim: number,
    elected: Map<number, PartitionInfo>,
    what: string,
  ) => {
    const rejoined = await waitForPartitions(
      clients,
      ENDPOINTS,
      topic,
      PARTITIONS,
      (p) => p.isr.includes(victim) && full(p),
      SETTLE_MS,
      what,
    );
    for (const [n, p] of rejoined) {
      // Led by the victim again: a preferred-leader election after it rejoined the ISR as a
      // follower, so in a newer epoch than the one it was deposed in.
      if (p.leader === victim)
        assert.ok(p.leaderEpoch > elected.get(n)!.leaderEpoch, `partition ${n}: a new epoch`);
    }
    return rejoined;
  };

  /** After the fault: more acks, stop, every ISR full, the oracle; returns the logs read. */
  const finish = async (t: TestContext, topic: string, producer: ComposeOracleProducer) => {
    await producer.waitForMoreAcks(ACKS_AFTER, SETTLE_MS, "acks=all sends after the fault");
    await producer.stop();
    const settled = await waitForPartitions(
      clients,
      ENDPOINTS,
      topic,
      PARTITIONS,
      full,
      SETTLE_MS,
      `${topic}: every ISR full again`,
    );
    const logs = await checkComposeOracle(clients, fresh, ENDPOINTS, topic, producer);
    checked.push({ topic, producer });
    const leaders = [...settled].map(
      ([n, p]) => `p${n}: broker-${p.leader} epoch ${p.leaderEpoch}`,
    );
    t.diagnostic(
      `oracle: ${producer.ackedCount} records acknowledged, each read back by both readers ` +
        `(leaders ${leaders.join(", ")}); failed sends ${producer.failureSummary}`,
    );
    return logs;
  };

  /**
   * Sends one acks=all batch of `values` from the host to `broker` (a fresh connection), for a
   * partition it no longer leads, until the broker itself answers (a call that found no
   * connection never reached it and is sent again); resolves to that answer.
   */
  const probe = async (
    broker: number,
    topic: string,
    partition: number,
    values: readonly string[],
  ): Promise<ProbeResult> => {
    let attempts = 0;
    const outcome = await waitFor(
      async () => {
        attempts++;
        // A new channel each time: a channel that failed to connect backs off before it
        // tries again (up to seconds), which would delay the probe past the zombie's return.
        const own = new Clients();
        try {
          const o = await produceOnce(
            own,
            ENDPOINTS.brokerAddress(broker),
            topic,
            partition,
            values,
            PROBE_DEADLINE_MS,
          );
          return o.answered || o.error.code !== ErrorCode.LEADER_NOT_AVAILABLE ? o : undefined;
        } finally {
          own.close();
        }
      },
      {
        timeoutMs: PROBE_DEADLINE_MS,
        intervalMs: PROBE_RETRY_MS,
        message: `broker-${broker} answers`,
      },
    );
    const answered = outcome.answered;
    const code = ErrorCode[answered ? outcome.code : outcome.error.code];
    const message = answered ? outcome.message : outcome.error.message;
    return { code, message: `${message} (${attempts} attempt(s))`, answered };
  };

  /**
   * The deposed `victim` must not have acknowledged the probe, unless it leads the partition
   * again by now in an epoch after `elected`'s (a preferred-leader election after its rejoin).
   * Returns whether the probe's records may be in the log.
   */
  const assertNotAcknowledgedByZombie = async (
    result: ProbeResult,
    topic: string,
    partition: number,
    victim: number,
    elected: Map<number, PartitionInfo>,
  ): Promise<boolean> => {
    assert.ok(
      result.answered,
      `the deposed leader ${victim} answered the probe: ${result.message}`,
    );
    if (result.code !== ErrorCode[ErrorCode.NONE]) return false;
    const now = (await partitionStates(clients, ENDPOINTS, topic))?.get(partition);
    const electedEpoch = elected.get(partition)!.leaderEpoch;
    assert.ok(
      now !== undefined && now.leader === victim && now.leaderEpoch > electedEpoch,
      `the deposed leader ${victim} acknowledged an acks=all produce to partition ${partition} ` +
        `while not leading it (elected epoch ${electedEpoch}, now ${JSON.stringify(now)})`,
    );
    return true;
  };

  /**
   * Runs `body` (the fault and its consequences); when it throws, heals the fault with `heal`
   * and stops the senders before rethrowing, so that nothing frozen or detached is left behind.
   */
  const whileFaulted = async (
    producer: ComposeOracleProducer,
    heal: () => Promise<void>,
    body: () => Promise<void>,
  ) => {
    try {
      await body();
    } catch (err) {
      await heal().catch(() => undefined);
      await producer.stop();
      throw err;
    }
  };

  /** Runs one case; marks the run failed when it throws. */
  const faultCase = (name: string, body: (t: TestContext) => Promise<void>) =>
    test(name, async (t) => {
      try {
        await body(t);
        completed++;
      } catch (err) {
        failed = true;
        throw err;
      }
    });

  faultCase(
    "docker kill of a leader: new leader, ISR shrinks, restarted broker rejoins",
    async (t) => {
      const { topic, infos, producer } = await replicatedTopic("docker-kill");
      const victim = infos.get(0)!.leader;
      const container = await project.containerOf(`broker-${victim}`);
      const started = Date.now();
      await whileFaulted(
        producer,
        () => docker("start", container).then(() => undefined),
        async () => {
          await docker("kill", container);
          const elected = await waitElected(
            topic,
            victim,
            infos,
            `leaders without broker-${victim}`,
          );
          t.diagnostic(`killed broker-${victim}: new leaders after ${Date.now() - started} ms`);
          await producer.waitForMoreAcks(
            ACKS_DURING,
            SETTLE_MS,
            `acks=all on the new leaders, broker-${victim} dead`,
            ledBy(infos, victim),
          );
          await docker("start", container);
          await waitRejoined(topic, victim, elected, `broker-${victim} back in every ISR`);
          t.diagnostic(
            `broker-${victim} restarted and in every ISR after ${Date.now() - started} ms`,
          );
        },
      );
      await finish(t, topic, producer);
    },
  );

  faultCase("docker pause of a leader past its session: fenced, rejoins as follower", async (t) => {
    const { topic, infos, producer } = await replicatedTopic("docker-pause");
    const partition = 1;
    const victim = infos.get(partition)!.leader;
    const container = await project.containerOf(`broker-${victim}`);
    const probeValues = ["zombie-pause-0", "zombie-pause-1"];
    let probeMayBeInLog = false;
    const started = Date.now();
    await whileFaulted(
      producer,
      () => docker("unpause", container).then(() => undefined),
      async () => {
        await docker("pause", container);
        // Sent while it is frozen: the zombie reads it first thing when it thaws, before it
        // can have learned from etcd that it was deposed.
        const probing = probe(victim, topic, partition, probeValues);
        const elected = await waitElected(topic, victim, infos, `leaders, broker-${victim} paused`);
        t.diagnostic(`paused broker-${victim}: new leaders after ${Date.now() - started} ms`);
        await producer.waitForMoreAcks(
          ACKS_DURING,
          SETTLE_MS,
          `acks=all on the new leaders, broker-${victim} paused`,
          ledBy(infos, victim),
        );
        const pausedMs = Date.now() - started;
        await docker("unpause", container);
        assert.ok(pausedMs > SESSION_MS, `paused ${pausedMs} ms, longer than the session`);
        const result = await probing;
        t.diagnostic(`the zombie answered the probe: ${result.code} ${result.message}`);
        probeMayBeInLog = await assertNotAcknowledgedByZombie(
          result,
          topic,
          partition,
          victim,
          elected,
        );
        await waitRejoined(topic, victim, elected, `broker-${victim} back in every ISR`);
        t.diagnostic(`broker-${victim} in every ISR after ${Date.now() - started} ms`);
      },
    );
    const logs = await finish(t, topic, producer);
    if (probeMayBeInLog) return;
    for (const v of probeValues)
      assert.ok(!logs.get(partition)!.has(v), `the zombie's unacknowledged ${v} is not in the log`);
  });

  faultCase("docker network disconnect of a leader: fenced, rejoins after reconnect", async (t) => {
    const { topic, infos, producer } = await replicatedTopic("docker-netcut");
    const partition = 2;
    const victim = infos.get(partition)!.leader;
    const container = await project.containerOf(`broker-${victim}`);
    const { network, aliases } = await networkOf(container);
    assert.ok(aliases.includes(`broker-${victim}`), `alias broker-${victim}: ${aliases}`);
    const reconnect = () =>
      docker("network", "connect", ...aliases.flatMap((a) => ["--alias", a]), network, container);
    const insideValuesOf = (i: number) => [`isolated-${i}-0`, `isolated-${i}-1`];
    const insideValues = [0, 1, 2].flatMap(insideValuesOf);
    const armed: InsideProbe[] = [];
    let insideMayBeInLog = false;
    let started = Date.now();
    try {
      await whileFaulted(
        producer,
        () => reconnect().then(() => undefined),
        async () => {
          // Clients on the zombie's side of the cut (inside its container), connected beforehand:
          // one sends at once, while it still leads, one after the election, one the moment the
          // cut heals, before it can have heard from etcd. None may be acknowledged.
          armed.push(
            ...(await Promise.all(
              [0, 1, 2].map((i) => InsideProbe.arm(container, topic, partition, insideValuesOf(i))),
            )),
          );
          const [justCut, afterElection, atReconnect] = armed;
          started = Date.now();
          await docker("network", "disconnect", network, container);
          const stillLeading = justCut!.fire();
          const elected = await waitElected(
            topic,
            victim,
            infos,
            `leaders, broker-${victim} cut off`,
          );
          t.diagnostic(`cut broker-${victim} off: new leaders after ${Date.now() - started} ms`);
          const deposed = afterElection!.fire();
          const answers: Array<readonly [string, string]> = [
            ["just cut off", await stillLeading],
            ["after the election", await deposed],
          ];
          for (const [when, inside] of answers) {
            t.diagnostic(`the isolated leader, ${when}, answered a client beside it: ${inside}`);
            assert.notEqual(
              inside.split(" ")[0],
              ErrorCode[ErrorCode.NONE],
              `the isolated broker-${victim} acknowledged an acks=all produce ${when}`,
            );
          }
          await producer.waitForMoreAcks(
            ACKS_DURING,
            SETTLE_MS,
            `acks=all on the new leaders, broker-${victim} cut off`,
            ledBy(infos, victim),
          );
          await reconnect();
          const reconnectedAt = Date.now();
          const healed = await atReconnect!.fire();
          t.diagnostic(
            `the zombie answered a client beside it ${Date.now() - reconnectedAt} ms after the ` +
              `reconnect: ${healed}`,
          );
          const zombieAnswer: ProbeResult = {
            code: healed.split(" ")[0]!,
            message: healed,
            answered: !healed.startsWith("CALL_FAILED") && !healed.startsWith("NO_ANSWER"),
          };
          insideMayBeInLog = await assertNotAcknowledgedByZombie(
            zombieAnswer,
            topic,
            partition,
            victim,
            elected,
          );
          await waitRejoined(topic, victim, elected, `broker-${victim} back in every ISR`);
          t.diagnostic(`broker-${victim} in every ISR after ${Date.now() - started} ms`);
        },
      );
    } finally {
      for (const p of armed) p.kill();
    }
    const logs = await finish(t, topic, producer);
    for (const v of insideMayBeInLog ? insideValues.slice(0, 4) : insideValues)
      assert.ok(!logs.get(partition)!.has(v), `the isolated leader's ${v} is not in the log`);
  });

  faultCase("after every fault: every case's acknowledged records are still there", async () => {
    // The earlier cases' topics went through the later faults too (other leaders killed, paused,
    // cut off), with no sender: nothing acknowledged may have been lost or moved since.
    assert.equal(checked.length, CASES - 1, "every fault case checked its topic");
    for (const { topic, producer } of checked) {
      await waitForPartitions(
        clients,
        ENDPOINTS,
        topic,
        PARTITIONS,
        full,
        SETTLE_MS,
        `${topic}: every ISR full`,
      );
      await checkComposeOracle(clients, fresh, ENDPOINTS, topic, producer);
    }
  });
});

/** What the inside probe prints once its connection is up and it waits for the go line. */
const INSIDE_PROBE_READY = "READY";

/**
 * A client inside a broker's own container (loopback, the INTERNAL listener), with the image's
 * compiled client code, run as `node -e` by `docker exec -i`: it connects (a Metadata call, whose
 * failure it ignores), prints {@link INSIDE_PROBE_READY}, and on the first line of its standard
 * input sends one acks=all produce and prints the partition's error code name and message (or
 * CALL_FAILED and why).
 */
const INSIDE_PROBE_SCRIPT = `
import { createInterface } from "node:readline";
import { createClient, unary } from "${IMAGE_SERVICES_DIR}/shared/grpc/client.js";
import { brokerService } from "${IMAGE_SERVICES_DIR}/shared/grpc/proto.js";
import { fromProtoErrorCode } from "${IMAGE_SERVICES_DIR}/shared/grpc/errors.js";
import { ErrorCode } from "${IMAGE_SERVICES_DIR}/shared/errors.js";
import { buildBatch } from "${IMAGE_SERVICES_DIR}/shared/record-batch/builder.js";
const [topic, partition, values, timeoutMs, deadlineMs] = JSON.parse(process.argv[1]);
const client = createClient(brokerService.Client, "127.0.0.1:${BROKER_INTERNAL_PORT}");
const records = buildBatch(values.map((v) => ({ key: null, value: Buffer.from(v) })));
await unary(client, "Metadata", { topics: [topic] }, { deadlineMs }).catch(() => undefined);
console.log("${INSIDE_PROBE_READY}");
for await (const _ of createInterface({ input: process.stdin })) break;
try {
  const res = await unary(client, "Produce",
    { partitions: [{ topic, partition, records }], acks: 3, timeoutMs }, { deadlineMs });
  const r = res.partitions[0];
  console.log(ErrorCode[fromProtoErrorCode(r.errorCode)] + " " + r.errorMessage);
} catch (err) {
  console.log("CALL_FAILED " + err.message);
}
client.close();
`;

/**
 * {@link INSIDE_PROBE_SCRIPT} in a container, armed: {@link InsideProbe.arm} resolves once it is
 * connected, {@link InsideProbe.fire} sends the produce (within milliseconds, node being up
 * already) and resolves to what it printed. The process is killed past its time bound.
 */
class InsideProbe {
  private readonly child: ChildProcess;
  private stdout = "";
  private readonly exited: Promise<void>;

  private constructor(container: string, args: string) {
    this.child = spawn(
      "docker",
      ["exec", "-i", container, "node", "--input-type=module", "-e", INSIDE_PROBE_SCRIPT, args],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    this.child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      this.stdout += d;
    });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), INSIDE_PROBE_BOUND_MS);
    this.exited = new Promise((resolve) => {
      this.child.on("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.on("error", () => resolve());
    });
  }

  /** Starts the probe in `container` and waits until it is connected. */
  static async arm(
    container: string,
    topic: string,
    partition: number,
    values: readonly string[],
  ): Promise<InsideProbe> {
    const args = [topic, partition, values, INSIDE_PROBE_TIMEOUT_MS, INSIDE_PROBE_DEADLINE_MS];
    const probe = new InsideProbe(container, JSON.stringify(args));
    let exited = false;
    void probe.exited.then(() => {
      exited = true;
    });
    await waitFor(() => probe.lines().includes(INSIDE_PROBE_READY) || exited, {
      timeoutMs: INSIDE_PROBE_START_MS,
      intervalMs: PROBE_RETRY_MS,
      message: `the probe in ${container} connected`,
    });
    assert.ok(!exited, `the probe in ${container} exited before it was ready: ${probe.stdout}`);
    return probe;
  }

  /** Sends the produce; resolves to the probe's answer. */
  async fire(): Promise<string> {
    this.child.stdin?.end("go\n");
    await this.exited;
    return this.lines().find((l) => l !== INSIDE_PROBE_READY) ?? `NO_ANSWER ${this.stdout}`;
  }

  /** Ends the probe's process if it still runs. */
  kill(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }

  private lines(): string[] {
    return this.stdout.split("\n").map((l) => l.trim());
  }
}

/** The brokers' and controllers' last log lines (more than ComposeProject prints for all). */
async function printBrokerLogs(project: ComposeProject): Promise<void> {
  for (const service of ["controller-1", "controller-2", "broker-1", "broker-2", "broker-3"]) {
    const logs = await project
      .compose(["logs", "--no-color", `--tail=${FAILURE_LOG_LINES}`, service])
      .catch((e: Error) => e);
    process.stderr.write(
      `--- ${service} (last ${FAILURE_LOG_LINES} lines)\n${logs instanceof Error ? logs.message : logs.stdout}\n`,
    );
  }
}

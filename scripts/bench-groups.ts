/**
 * `npm run bench:groups`: consumer group throughput and rebalance times, with members in
 * separate processes. Not a test: it prints its setup and figures, and its last line is
 * machine-readable:
 *
 *   bench:groups records_s=<n> mb_s=<n> leave_rebalance_ms=<n> sigkill_rebalance_ms=<n> session_ms=<n>
 *
 * The cluster is real (etcd, 1 controller, 2 brokers and 1 gateway as processes, see
 * services/local-cluster/local-cluster.ts). A 6-partition topic (RF 1) is filled with
 * `--records` 100-byte records first. Then:
 *
 * Phase 1 (throughput): 3 GroupConsumer processes (this script with `--member`) of one group
 * read the topic from the start, fetching from the partition leaders directly, `eachBatch`
 * counting records, auto-commit every second. The figure is the aggregate rate between 5% and
 * 95% of the records (the joins and the last partition's tail are left out).
 *
 * Phase 2 (graceful leave): member 3 gets SIGTERM (it disconnects: commits, leaves); the figure
 * is the time from the signal until the two others own the 6 partitions between them.
 *
 * Phase 3 (crash): a new member 3 joins; once the 3 share the partitions, it gets SIGKILL; the
 * figure is the time from the signal until the two others own the 6 partitions (the session
 * timeout, `--session-ms`, then a heartbeat or two).
 *
 * `--prof=<dir>` runs the members with `node --cpu-prof --cpu-prof-dir=<dir>`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { AdminClient, GroupConsumer, Producer } from "../services/client/index.js";
import { startLocalCluster } from "../services/local-cluster/local-cluster.js";
import {
  busyWarning,
  fixed,
  human,
  intOption,
  machineLines,
  mbPerSec,
  otherLoadMeter,
  perSec,
  stringOption,
} from "./bench-util.js";

const PARTITIONS = 6;
const MEMBERS = 3;
const RECORD_BYTES = 100;
const RECORDS = intOption("records", "BENCH_RECORDS", 3_000_000, 10_000);
const SESSION_MS = intOption("session-ms", "BENCH_SESSION_MS", 3_000, 1_000);
const HEARTBEAT_MS = intOption("heartbeat-ms", "BENCH_HEARTBEAT_MS", 250, 10);
const COMMIT_INTERVAL_MS = 1_000;
const PARTITION_FETCH_BYTES = intOption("fetch-bytes", "BENCH_FETCH_BYTES", 4 * 1024 * 1024, 1024);
const PROF_DIR = stringOption("prof", "BENCH_PROF_DIR", "");
/** Bounds of each wait, ms. */
const PHASE_MS_MAX = 120_000;
const REBALANCE_WAIT_MS_MAX = 30_000;
const TOPIC = "bench-groups";
const GROUP = "bench-group";

interface MemberSettings {
  gateways: readonly string[];
  bootstrap: readonly string[];
}

/** The member role: consume, print `{n, t}` progress and `{owned, t}` changes as JSON lines. */
async function member(): Promise<void> {
  const s = JSON.parse(process.env.BENCH_MEMBER ?? "{}") as MemberSettings;
  const consumer = new GroupConsumer({
    groupId: GROUP,
    gateways: s.gateways,
    bootstrapServers: s.bootstrap,
    sessionTimeoutMs: SESSION_MS,
    autoOffsetReset: "earliest",
    autoCommitIntervalMs: COMMIT_INTERVAL_MS,
    partitionMaxBytes: PARTITION_FETCH_BYTES,
  });
  consumer.subscribe(TOPIC);
  let n = 0;
  let owned = -1;
  const report = setInterval(() => {
    const now = consumer.assignment().length;
    const line: Record<string, number> = { n, t: Date.now() };
    if (now !== owned) line.owned = owned = now;
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }, 20);
  process.once("SIGTERM", () => {
    void consumer.disconnect().then(() => {
      clearInterval(report);
      process.stdout.write(`${JSON.stringify({ n, owned: 0, t: Date.now() })}\n`);
    });
  });
  await consumer.run({
    eachBatch: ({ batch }) => {
      n += batch.messages.length;
    },
  });
}

/** A member process as the parent sees it. */
class Member {
  count = 0;
  owned = 0;
  readonly child: ChildProcess;

  constructor(settings: MemberSettings, onLine: () => void) {
    const prof = PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROF_DIR}`] : [];
    this.child = spawn(
      process.execPath,
      [
        ...prof,
        "--import",
        "tsx",
        fileURLToPath(import.meta.url),
        "--member",
        ...process.argv.slice(2),
      ],
      {
        env: { ...process.env, BENCH_MEMBER: JSON.stringify(settings) },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    createInterface({ input: this.child.stdout! }).on("line", (text) => {
      const e = JSON.parse(text) as { n: number; owned?: number };
      this.count = e.n;
      if (e.owned !== undefined) this.owned = e.owned;
      onLine();
    });
  }
}

/** Polls `cond` every 5 ms until true (resolves with the time it became true) or `ms` pass. */
async function until(cond: () => boolean, ms: number, what: string): Promise<number> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now();
}

async function fill(bootstrap: readonly string[]): Promise<number> {
  const producer = new Producer({ bootstrapServers: bootstrap, idempotent: false, acks: 1 });
  const value = Buffer.alloc(RECORD_BYTES, 120);
  const started = Date.now();
  for (let i = 0; i < RECORDS; i++) {
    await producer.add(TOPIC, { value, partition: i % PARTITIONS });
  }
  await producer.flush();
  await producer.close();
  return Date.now() - started;
}

async function main(): Promise<void> {
  const lc = await startLocalCluster({
    controllers: 1,
    brokers: 2,
    gateways: 1,
    logLevel: "warn",
    gatewayArgs: [
      "--group.min.session.timeout.ms=1000",
      `--group.consumer.heartbeat.interval.ms=${HEARTBEAT_MS}`,
      "--group.initial.rebalance.delay.ms=0",
    ],
  });
  const admin = new AdminClient({ controllers: lc.controllers });
  const members: Member[] = [];
  try {
    const [created] = await admin.createTopics([
      { name: TOPIC, numPartitions: PARTITIONS, replicationFactor: 1 },
    ]);
    if (created?.error) throw created.error;
    const fillMs = await fill(lc.bootstrap);
    console.log("bench:groups setup");
    for (const line of machineLines()) console.log(`  ${line}`);
    console.log(
      "  cluster: etcd + 1 controller + 2 brokers + 1 gateway, separate processes, gRPC over loopback",
    );
    console.log(
      `  topic: ${PARTITIONS} partitions, RF=1, ${human(RECORDS)} records of ${RECORD_BYTES} B (filled in ${human(fillMs)} ms)`,
    );
    console.log(
      `  group: ${MEMBERS} GroupConsumer processes, eachBatch counting, auto-commit every ${COMMIT_INTERVAL_MS} ms, fetch from the leaders, ${human(PARTITION_FETCH_BYTES)} B per partition fetch; session ${SESSION_MS} ms, heartbeat interval ${HEARTBEAT_MS} ms`,
    );
    const busy = busyWarning();
    if (busy) console.log(`  ${busy}`);
    const settings = { gateways: lc.gateways, bootstrap: lc.bootstrap };
    const total = () => members.reduce((s, m) => s + m.count, 0);
    const others = otherLoadMeter();
    for (let i = 0; i < MEMBERS; i++) members.push(new Member(settings, () => undefined));
    const t5 = await until(() => total() >= RECORDS * 0.05, PHASE_MS_MAX, "5% of the records");
    const n5 = total();
    const t95 = await until(() => total() >= RECORDS * 0.95, PHASE_MS_MAX, "95% of the records");
    const n95 = total();
    await until(() => total() >= RECORDS, PHASE_MS_MAX, "every record");
    const rate = perSec(n95 - n5, t95 - t5);
    const load = others();
    console.log(
      `phase 1: ${human(n95 - n5)} records in ${human(t95 - t5)} ms: ${human(rate)} records/s, ${fixed(mbPerSec((n95 - n5) * RECORD_BYTES, t95 - t5), 1)} MB/s of values (target ≥ 1,000,000 records/s: ${fixed((100 * rate) / 1_000_000, 0)}%); per member ${members.map((m) => human(m.count)).join(" / ")}`,
    );
    if (load.warning) console.log(`  ${load.warning}`);

    const shared = (ms: Member[]) => ms.reduce((s, m) => s + m.owned, 0) === PARTITIONS;
    await until(
      () => members.every((m) => m.owned === 2),
      REBALANCE_WAIT_MS_MAX,
      "2 partitions each",
    );
    const leaving = members.pop()!;
    const leftAt = Date.now();
    leaving.child.kill("SIGTERM");
    const leaveDone = await until(
      () => shared(members),
      REBALANCE_WAIT_MS_MAX,
      "the leave's rebalance",
    );
    const leaveMs = leaveDone - leftAt;
    console.log(
      `phase 2: graceful leave → the 2 others own all 6 partitions after ${leaveMs} ms (target ≤ 1,000 ms)`,
    );

    members.push(new Member(settings, () => undefined));
    await until(
      () => members.every((m) => m.owned === 2),
      REBALANCE_WAIT_MS_MAX,
      "3 members again",
    );
    const killed = members.pop()!;
    const killedAt = Date.now();
    killed.child.kill("SIGKILL");
    const killDone = await until(
      () => shared(members),
      REBALANCE_WAIT_MS_MAX + SESSION_MS,
      "the crash's rebalance",
    );
    const killMs = killDone - killedAt;
    console.log(
      `phase 3: SIGKILL → the 2 others own all 6 partitions after ${killMs} ms (target ≤ session ${SESSION_MS} + 1,000 ms)`,
    );
    console.log(
      `bench:groups records_s=${Math.round(rate)} mb_s=${fixed(mbPerSec((n95 - n5) * RECORD_BYTES, t95 - t5), 1)} leave_rebalance_ms=${leaveMs} sigkill_rebalance_ms=${killMs} session_ms=${SESSION_MS}`,
    );
  } finally {
    for (const m of members) m.child.kill("SIGTERM");
    await Promise.all(
      members.map(
        (m) =>
          new Promise((r) => (m.child.exitCode !== null ? r(undefined) : m.child.once("exit", r))),
      ),
    );
    admin.close();
    await lc.stop();
  }
}

if (process.argv.includes("--member")) await member();
else await main();

/**
 * `npm run bench:group-commits`: how many offset commits per second a cluster takes (committed
 * offsets live in etcd: one fenced transaction per CommitOffsets request). Not a test: it prints
 * its setup and figures, and its last line is machine-readable:
 *
 *   bench:group-commits commits_s=<n> partitions_s=<n> p50_ms=<n> p99_ms=<n> throttled=<n>
 *
 * The cluster is real (one etcd, 1 controller, 1 broker and 1 gateway as processes, see
 * services/local-cluster/local-cluster.ts). `--groups` groups without members (a non-member may
 * commit to an empty group) each commit the offsets of all `--partitions` partitions of one
 * topic in one request, `--inflight` requests in flight in all, for `--seconds`, through the
 * gateway's GroupService from a plain grpc-js client. Each group is held to
 * GROUP_COMMITS_PER_SECOND_MAX by the gateway, so enough groups are used that the per-group
 * bound is not what is measured: the figure is what etcd and the coordinator take.
 */
import { AdminClient } from "../services/client/index.js";
import { GROUP_COMMITS_PER_SECOND_MAX } from "../services/gateway/groups/offset-store.js";
import { startLocalCluster } from "../services/local-cluster/local-cluster.js";
import { ErrorCode } from "../services/shared/errors.js";
import { createClient, unary } from "../services/shared/grpc/client.js";
import { fromServiceError } from "../services/shared/grpc/errors.js";
import { groupService } from "../services/shared/grpc/proto.js";
import {
  busyWarning,
  cpuMeter,
  cpuSummary,
  fixed,
  human,
  intOption,
  machineLines,
  percentiles,
  perSec,
} from "./bench-util.js";

const GROUPS = intOption("groups", "BENCH_GROUPS", 200, 1);
const PARTITIONS = intOption("partitions", "BENCH_PARTITIONS", 6, 1);
const INFLIGHT = intOption("inflight", "BENCH_INFLIGHT", 64, 1);
const SECONDS = intOption("seconds", "BENCH_SECONDS", 10, 1);
/** Commits before the timed part (connections, leases, group ownership). */
const WARMUP_COMMITS = intOption("warmup", "BENCH_WARMUP", 500, 0);
/** Deadline of one CommitOffsets call, ms. */
const CALL_DEADLINE_MS = 10_000;
/** Latencies recorded at most. */
const LATENCIES_MAX = 1_000_000;
const TOPIC = "bench-commits";

async function main(): Promise<void> {
  const lc = await startLocalCluster({ controllers: 1, brokers: 1, gateways: 1, logLevel: "warn" });
  const admin = new AdminClient({ controllers: lc.controllers });
  const client = createClient(groupService.Client, lc.gateways[0]!);
  try {
    const [created] = await admin.createTopics([
      { name: TOPIC, numPartitions: PARTITIONS, replicationFactor: 1 },
    ]);
    if (created?.error) throw created.error;
    console.log("bench:group-commits setup");
    for (const line of machineLines()) console.log(`  ${line}`);
    console.log(
      "  cluster: one etcd (a single member, its data dir on this machine's disk), 1 controller, 1 broker, 1 gateway, separate processes, gRPC over loopback",
    );
    console.log(
      `  load: ${human(GROUPS)} member-less groups, each request commits ${PARTITIONS} partitions of one topic (one etcd txn), ${INFLIGHT} requests in flight, ${SECONDS} s after ${human(WARMUP_COMMITS)} warm-up commits; per-group bound ${GROUP_COMMITS_PER_SECOND_MAX}/s (so at most ${human(GROUPS * GROUP_COMMITS_PER_SECOND_MAX)}/s in all)`,
    );
    const busy = busyWarning();
    if (busy) console.log(`  ${busy}`);

    let next = 0;
    let offset = 0;
    const commitOnce = async (): Promise<{ ms: number; throttled: boolean }> => {
      const group = `bench-commits-${next++ % GROUPS}`;
      offset++;
      const start = performance.now();
      try {
        const res = await unary(
          client,
          "CommitOffsets",
          {
            groupId: group,
            memberId: "",
            memberEpoch: -1,
            topics: [
              {
                topic: TOPIC,
                partitions: Array.from({ length: PARTITIONS }, (_, p) => ({
                  partition: p,
                  offset: String(offset),
                  leaderEpoch: -1,
                })),
              },
            ],
          },
          { deadlineMs: CALL_DEADLINE_MS },
        );
        const bad = res.results.find((r) => Number(r.errorCode) !== ErrorCode.NONE);
        if (bad) throw new Error(`${group}: ${bad.errorMessage} (code ${bad.errorCode})`);
        return { ms: performance.now() - start, throttled: false };
      } catch (err) {
        const e = fromServiceError(err);
        if (e.code === ErrorCode.THROTTLING_QUOTA_EXCEEDED)
          return { ms: performance.now() - start, throttled: true };
        throw e;
      }
    };

    // Warm-up: every group once (its coordinator claims it), then the rest.
    for (let i = 0; i < Math.max(WARMUP_COMMITS, GROUPS); i += INFLIGHT) {
      await Promise.all(Array.from({ length: INFLIGHT }, () => commitOnce()));
    }

    const lat = new Float64Array(LATENCIES_MAX);
    let done = 0;
    let throttled = 0;
    const cpu = cpuMeter();
    const t0 = performance.now();
    const endAt = t0 + SECONDS * 1000;
    const worker = async () => {
      while (performance.now() < endAt) {
        const r = await commitOnce();
        if (r.throttled) throttled++;
        else if (done < LATENCIES_MAX) lat[done++] = r.ms;
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
    const ms = performance.now() - t0;
    const [p50, p99] = percentiles(lat, done, [50, 99]);
    const commitsS = perSec(done, ms);
    console.log(
      `commits: ${human(done)} requests in ${fixed(ms / 1000, 2)} s: ${human(commitsS)} commits/s, ${human(commitsS * PARTITIONS)} partition offsets/s; latency p50=${fixed(p50!, 2)}ms p99=${fixed(p99!, 2)}ms; ${human(throttled)} throttled`,
    );
    console.log(`  bench process: ${cpuSummary(cpu(ms))}`);
    console.log(
      `bench:group-commits commits_s=${fixed(commitsS, 0)} partitions_s=${fixed(commitsS * PARTITIONS, 0)} p50_ms=${fixed(p50!, 2)} p99_ms=${fixed(p99!, 2)} throttled=${throttled}`,
    );
  } finally {
    client.close();
    await admin.close();
    await lc.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

/**
 * `npm run bench:replication`: replicated produce through the TypeScript client, then the
 * unavailability of a partition when its leader dies. Not a test: it prints its setup and
 * figures, and its last line is machine-readable:
 *
 *   bench:replication records_s=<n> mb_s=<n> p50_ms=<n> p99_ms=<n> sigkill_unavailable_ms=<n> sigterm_unavailable_ms=<n> session_ms=<n>
 *
 * The cluster is real (etcd, 1 controller and 3 brokers as separate processes, see
 * services/local-cluster/local-cluster.ts), with a short `broker.session.timeout.ms` so that a
 * killed broker is declared dead in seconds. The topic has 3 partitions, replication factor 3
 * and `min.insync.replicas=2`.
 *
 * Phase 1 (throughput): 100-byte records without keys go one at a time through
 * `Producer.add` (the client's own batching: per-partition batches, linger.ms, batch.size, one
 * call per partition and up to 5 per broker in flight, see services/client/record-accumulator.ts
 * and sender.ts), acks=all, bounded by the producer's buffer.memory (or, with `--inflight=N`, by
 * N records not acknowledged yet: the next `add` then waits for an acknowledgement). Latency is per record, from
 * its `add` to its delivery callback (Kafka's `send(record, callback)`, as its perf test uses).
 * A warm-up runs first and is not counted.
 *
 * Phase 2 (unavailability): one producer sends to partition 0 one record at a time
 * (`producer.send(topic, [record])`, acks=all, the client's own retries and metadata refresh).
 * The leader of partition 0 gets SIGKILL; the figure is the time from the signal to the first
 * acknowledged send whose leader (per the producer's metadata, which the successful attempt was
 * sent by) is another broker. The killed broker is restarted and the ISRs fill up again; then
 * the same with SIGTERM of the new leader (a controlled shutdown moves its leaderships first),
 * which is restarted too. The longest gap between two acknowledgements around the signal is
 * printed beside it (with SIGTERM the old leader may acknowledge a while after the signal).
 *
 * Every loop is bounded in count and time; the cluster is stopped and its temp dir removed at
 * the end, also on error. `--phases=1` runs phase 1 only, e.g. to profile the client:
 * `node --cpu-prof --import tsx scripts/bench-replication.ts --phases=1` (the launcher has no
 * option for the brokers' node flags, and NODE_OPTIONS does not take `--cpu-prof`).
 */
import {
  AdminClient,
  Cluster,
  type PartitionMetadata,
  Producer,
} from "../services/client/index.js";
import {
  BATCH_SIZE_BYTES_DEFAULT,
  BUFFER_MEMORY_BYTES_DEFAULT,
  LINGER_MS_DEFAULT,
} from "../services/client/record-accumulator.js";
import {
  type LocalCluster,
  type ProcessHandle,
  startLocalCluster,
} from "../services/local-cluster/local-cluster.js";
import {
  busyWarning,
  cpuMeter,
  cpuSummary,
  fixed,
  human,
  intOption,
  latencySummary,
  machineLines,
  mbPerSec,
  otherLoadMeter,
  percentiles,
  perSec,
  processCpuMs,
  stringOption,
} from "./bench-util.js";

const RECORDS = intOption("records", "BENCH_RECORDS", 1_000_000, 1000);
const WARMUP_RECORDS = intOption("warmup", "BENCH_WARMUP", 20_000, 0);
const RECORD_BYTES = intOption("record-bytes", "BENCH_RECORD_BYTES", 100, 1);
/**
 * Records added but not acknowledged yet, at most; 0 (the default) = no cap of the bench's own,
 * only the producer's `buffer.memory` (`add` waits for room), as Kafka's
 * `kafka-producer-perf-test --throughput -1` runs.
 */
const INFLIGHT = intOption("inflight", "BENCH_INFLIGHT", 0, 0);
/** Phase 1 stops adding after this long even if the count is not reached, ms. */
const PHASE_MS_MAX = intOption("phase-ms", "BENCH_PHASE_MS", 60_000, 1000);
/** `broker.session.timeout.ms` of every broker (the etcd lease of its registration). */
const SESSION_MS = intOption("session-ms", "BENCH_SESSION_MS", 2000, 1000);
/** Longest wait for the first acknowledgement on a new leader after a signal, ms. */
const OUTAGE_MS_MAX = intOption("outage-ms", "BENCH_OUTAGE_MS", 30_000, 1000);
/** Acknowledged single-record sends before each signal (steady state), and their deadline. */
const STEADY_ACKS = intOption("steady-acks", "BENCH_STEADY_ACKS", 200, 1);
const PHASES = stringOption("phases", "BENCH_PHASES", "1,2")
  .split(",")
  .map((s) => s.trim());
const TOPIC = "bench-replication";
const PARTITIONS = 3;
const REPLICAS = 3;
const MIN_ISR = 2;
/** Distinct record values cycled through. */
const VALUE_POOL = 64;
/** Delivery deadline of one send with its retries, ms (Kafka's delivery.timeout.ms). */
const DELIVERY_TIMEOUT_MS = 30_000;
/** Deadline of one Produce call in phase 2, ms (a dead leader's call fails fast anyway). */
const PHASE2_REQUEST_TIMEOUT_MS = 5_000;
/** Longest wait for a restarted broker to be back in every ISR, ms. */
const ISR_WAIT_MS = 60_000;
/** Longest wait for the preferred replicas to lead again after a restart, ms. */
const PREFERRED_WAIT_MS = 20_000;
/** Longest wait for the steady acknowledgements before a signal, ms. */
const STEADY_WAIT_MS = 30_000;
/** Longest wait for the outstanding records at the end of phase 1, ms. */
const DRAIN_WAIT_MS = DELIVERY_TIMEOUT_MS + 5_000;
const BROKER_ARGS = [`--broker.session.timeout.ms=${SESSION_MS}`];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves `p`, or rejects after `ms` with `what` in the message. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every `intervalMs` until it is true or `ms` pass (then throws). */
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = performance.now() + ms;
  for (;;) {
    try {
      if (await cond()) return;
    } catch {
      // not yet
    }
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

/**
 * Measures the CPU each cluster process uses from now on; call the result at the end: one
 * `name cores` entry per process, and their sum in cores.
 */
function clusterCpuMeter(lc: LocalCluster): (wallMs: number) => { text: string; cores: number } {
  const procs: ProcessHandle[] = [lc.etcd, ...lc.controllerProcesses, ...lc.brokerProcesses];
  const start = procs.map((p) => ({ p, pid: p.pid, ms: processCpuMs(p.pid) }));
  return (wallMs) => {
    let cores = 0;
    const text = start
      .map(({ p, pid, ms }) => {
        const now = p.pid === pid ? processCpuMs(pid) : undefined;
        if (ms === undefined || now === undefined) return `${p.name} ?`;
        cores += (now - ms) / wallMs;
        return `${p.name} ${fixed((now - ms) / wallMs, 2)}`;
      })
      .join(", ");
    return { text, cores };
  };
}

/** Calls handled and handling time, seconds, of one RPC method summed over the brokers. */
type RpcTotals = Map<string, { count: number; seconds: number }>;

/** `samsa_rpc_duration_seconds` of every running broker's `/metrics`, by method, summed. */
async function brokerRpcTotals(lc: LocalCluster): Promise<RpcTotals> {
  const totals: RpcTotals = new Map();
  for (const b of lc.brokerProcesses.filter((p) => p.running)) {
    const res = await fetch(`http://127.0.0.1:${b.metricsPort}/metrics`, {
      signal: AbortSignal.timeout(5_000),
    });
    const text = await res.text();
    for (const m of text.matchAll(/^samsa_rpc_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$/gm)) {
      const method = /method="([^"]*)"/.exec(m[2]!)?.[1] ?? "?";
      const t = totals.get(method) ?? { count: 0, seconds: 0 };
      if (m[1] === "sum") t.seconds += Number(m[3]);
      else t.count += Number(m[3]);
      totals.set(method, t);
    }
  }
  return totals;
}

/** `method N calls, mean X ms` of the difference between two {@link brokerRpcTotals}. */
function rpcDelta(
  before: RpcTotals,
  after: RpcTotals,
  method: string,
): { count: number; meanMs: number } {
  const a = after.get(method) ?? { count: 0, seconds: 0 };
  const b = before.get(method) ?? { count: 0, seconds: 0 };
  const count = a.count - b.count;
  return { count, meanMs: count > 0 ? ((a.seconds - b.seconds) * 1000) / count : Number.NaN };
}

async function partitionsOf(admin: AdminClient): Promise<readonly PartitionMetadata[]> {
  const [t] = await admin.describeTopics([TOPIC]);
  if (t === undefined || t.error !== null) throw t?.error ?? new Error(`no topic ${TOPIC}`);
  return t.partitions;
}

/** Waits until every partition has a leader and all replicas in its ISR. */
async function waitFullIsr(admin: AdminClient, what: string): Promise<void> {
  await until(
    async () => {
      const ps = await partitionsOf(admin);
      return (
        ps.length === PARTITIONS && ps.every((p) => p.leaderId >= 0 && p.isr.length === REPLICAS)
      );
    },
    ISR_WAIT_MS,
    what,
  );
}

/** Waits (bounded) until every partition is led by its first replica; false when it did not happen. */
async function waitPreferredLeaders(admin: AdminClient): Promise<boolean> {
  try {
    await until(
      async () => (await partitionsOf(admin)).every((p) => p.leaderId === p.replicas[0]),
      PREFERRED_WAIT_MS,
      "preferred leaders",
    );
    return true;
  } catch {
    return false;
  }
}

function valuePool(): Buffer[] {
  return Array.from({ length: VALUE_POOL }, (_, b) => {
    const v = Buffer.allocUnsafe(RECORD_BYTES);
    for (let j = 0; j < RECORD_BYTES; j++) v[j] = (b * 31 + j * 7) & 0xff;
    return v;
  });
}

interface ThroughputResult {
  acked: number;
  failed: number;
  ms: number;
  p50: number;
  p99: number;
}

/**
 * Adds `count` records one at a time (at most {@link INFLIGHT} unacknowledged) for at most
 * `maxMs`, then waits for the outstanding ones. Latencies of acknowledged records go to `lat`.
 */
async function addRecords(
  producer: Producer,
  values: Buffer[],
  count: number,
  maxMs: number,
  lat: Float64Array | undefined,
): Promise<{ acked: number; failed: number; ms: number; firstError?: unknown }> {
  let inflight = 0;
  let acked = 0;
  let failed = 0;
  let firstError: unknown;
  let wake: (() => void) | undefined;
  const release = () => {
    inflight--;
    if (wake !== undefined && (INFLIGHT === 0 || inflight < INFLIGHT)) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  let lastAck = performance.now();
  const t0 = performance.now();
  const deadline = t0 + maxMs;
  for (let i = 0; i < count; i++) {
    if (INFLIGHT > 0 && inflight >= INFLIGHT) await new Promise<void>((r) => (wake = r));
    if (performance.now() > deadline) break;
    const start = performance.now();
    inflight++;
    await producer.add(TOPIC, { value: values[i % VALUE_POOL]! }, (err) => {
      if (err === null) {
        lastAck = performance.now();
        if (lat !== undefined) lat[acked] = lastAck - start;
        acked++;
      } else {
        failed++;
        firstError ??= err;
      }
      release();
    });
  }
  await within(
    producer.flush().catch(() => undefined),
    DRAIN_WAIT_MS,
    "the outstanding records",
  );
  return { acked, failed, ms: lastAck - t0, firstError };
}

async function phase1(lc: LocalCluster): Promise<ThroughputResult> {
  const cluster = new Cluster({ bootstrapServers: lc.bootstrap });
  const producer = new Producer({ cluster, acks: "all", deliveryTimeoutMs: DELIVERY_TIMEOUT_MS });
  try {
    const values = valuePool();
    if (WARMUP_RECORDS > 0) {
      const w = await addRecords(producer, values, WARMUP_RECORDS, PHASE_MS_MAX, undefined);
      if (w.failed > 0) throw new Error(`warm-up: ${w.failed} records failed: ${w.firstError}`);
    }
    const lat = new Float64Array(RECORDS);
    const cpu = cpuMeter();
    const others = otherLoadMeter();
    const clusterCpu = clusterCpuMeter(lc);
    const rpc0 = await brokerRpcTotals(lc);
    const r = await addRecords(producer, values, RECORDS, PHASE_MS_MAX, lat);
    const clientCpu = cpu(r.ms);
    const procCpu = clusterCpu(r.ms);
    const load = others();
    const rpc1 = await brokerRpcTotals(lc);
    const produce = rpcDelta(rpc0, rpc1, "Produce");
    const fetches = rpcDelta(rpc0, rpc1, "ReplicaFetch");
    const [p50, p99] = percentiles(lat, r.acked, [50, 99]);
    console.log(
      `phase 1 produce: ${human(r.acked)} records acknowledged in ${fixed(r.ms / 1000, 2)} s: ${human(perSec(r.acked, r.ms))} records/s, ${fixed(mbPerSec(r.acked * RECORD_BYTES, r.ms), 1)} MB/s of values${r.failed > 0 ? `; ${human(r.failed)} FAILED (first: ${r.firstError})` : ""}`,
    );
    console.log(`phase 1 latency (add to acknowledgement): ${latencySummary(lat, r.acked)}`);
    console.log(`phase 1 cpu: client ${cpuSummary(clientCpu)}`);
    console.log(`phase 1 cpu of the cluster (cores): ${procCpu.text}`);
    console.log(
      `phase 1 broker side: ${human(produce.count)} Produce calls (${human(r.acked / Math.max(1, produce.count))} records each on average), ${fixed(produce.meanMs, 2)} ms each on average (the acks=all wait included); ${human(fetches.count)} ReplicaFetch calls, ${fixed(fetches.meanMs, 2)} ms each on average (long polls included)`,
    );
    // The meter counts everything but this process, the cluster's own processes included.
    if (load.cores !== undefined) {
      const outside = Math.max(0, load.cores - procCpu.cores);
      console.log(
        `phase 1 cpu of other processes on the machine: ${fixed(outside, 2)} cores${outside > 0.4 ? " (WARNING: figures are not representative)" : ""}`,
      );
    }
    return { acked: r.acked, failed: r.failed, ms: r.ms, p50: p50!, p99: p99! };
  } finally {
    await producer.close().catch(() => undefined);
    cluster.close();
  }
}

interface Ack {
  at: number;
  leader: number;
}

/** One record at a time to partition 0, acks=all, until stopped; remembers every acknowledgement. */
class SteadySender {
  readonly acks: Ack[] = [];
  errors = 0;
  readonly latencies: number[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly cluster: Cluster;
  private readonly producer: Producer;
  private readonly value = Buffer.alloc(RECORD_BYTES, 0x61);

  constructor(
    lc: LocalCluster,
    private readonly maxMs: number,
  ) {
    this.cluster = new Cluster({ bootstrapServers: lc.bootstrap });
    this.producer = new Producer({
      cluster: this.cluster,
      acks: "all",
      deliveryTimeoutMs: DELIVERY_TIMEOUT_MS,
      requestTimeoutMs: PHASE2_REQUEST_TIMEOUT_MS,
    });
  }

  start(): void {
    const deadline = performance.now() + this.maxMs;
    this.loop = (async () => {
      while (!this.stopped && performance.now() < deadline) {
        const start = performance.now();
        try {
          await this.producer.send(TOPIC, [{ value: this.value, partition: 0 }]);
          const at = performance.now();
          // The attempt that succeeded went to the leader of the producer's current metadata.
          const md = await this.cluster.topic(TOPIC, { timeoutMs: 1000 });
          this.acks.push({ at, leader: md.partitions[0]?.leaderId ?? -1 });
          this.latencies.push(at - start);
        } catch {
          this.errors++;
          await sleep(10);
        }
      }
    })();
  }

  /** Waits until `n` more acknowledgements arrived. */
  async waitForAcks(n: number): Promise<void> {
    const target = this.acks.length + n;
    await until(() => this.acks.length >= target, STEADY_WAIT_MS, `${n} acknowledged sends`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await within(this.loop ?? Promise.resolve(), DELIVERY_TIMEOUT_MS + 5_000, "the sender");
    await this.producer.close().catch(() => undefined);
    this.cluster.close();
  }
}

interface Outage {
  victim: number;
  newLeader: number;
  /** From the signal to the first acknowledgement on another leader, ms. */
  toNewLeaderMs: number;
  /** Longest time without any acknowledgement around the signal, ms. */
  longestGapMs: number;
  /** Failed sends (after the client's retries) during it. */
  errors: number;
  /** Acknowledgements by the old leader after the signal. */
  oldLeaderAcks: number;
}

/** Signals the leader of partition 0 while `sender` sends, and measures until a new leader acks. */
async function outage(
  lc: LocalCluster,
  admin: AdminClient,
  sender: SteadySender,
  signal: "SIGKILL" | "SIGTERM",
): Promise<Outage> {
  const victim = (await partitionsOf(admin))[0]!.leaderId;
  if (victim < 0) throw new Error("partition 0 has no leader");
  await sender.waitForAcks(STEADY_ACKS);
  // The sender must be on the current leader before the signal.
  await until(
    () => sender.acks[sender.acks.length - 1]?.leader === victim,
    STEADY_WAIT_MS,
    `acknowledgements by broker ${victim}, the leader of partition 0`,
  );
  await sender.waitForAcks(STEADY_ACKS);
  const handle = lc.broker(victim);
  const from = sender.acks.length;
  const errors0 = sender.errors;
  const at = performance.now();
  const exited = handle.kill(signal);
  let first: Ack | undefined;
  await until(
    () => {
      first = sender.acks.slice(from).find((a) => a.at > at && a.leader !== victim);
      return first !== undefined;
    },
    OUTAGE_MS_MAX,
    `an acknowledgement on a new leader after ${signal} of broker ${victim}`,
  );
  await within(exited, 30_000, `broker ${victim} to exit after ${signal}`);
  const f = first!;
  const window = sender.acks.slice(from - 1).filter((a) => a.at <= f.at);
  let longestGapMs = 0;
  for (let i = 1; i < window.length; i++) {
    longestGapMs = Math.max(longestGapMs, window[i]!.at - window[i - 1]!.at);
  }
  return {
    victim,
    newLeader: f.leader,
    toNewLeaderMs: f.at - at,
    longestGapMs,
    errors: sender.errors - errors0,
    oldLeaderAcks: window.filter((a) => a.at > at && a.leader === victim).length,
  };
}

async function phase2(lc: LocalCluster, admin: AdminClient): Promise<Outage[]> {
  const sender = new SteadySender(lc, 10 * 60_000);
  const results: Outage[] = [];
  sender.start();
  try {
    for (const signal of ["SIGKILL", "SIGTERM"] as const) {
      const o = await outage(lc, admin, sender, signal);
      results.push(o);
      const target =
        signal === "SIGKILL"
          ? `target ≤ session ${human(SESSION_MS)} + 2,000 = ${human(SESSION_MS + 2000)} ms`
          : "target ≤ 1,000 ms";
      console.log(
        `phase 2 ${signal} of broker ${o.victim} (leader of partition 0): first acknowledged send on broker ${o.newLeader} after ${human(o.toNewLeaderMs)} ms (${target}; broker.session.timeout.ms=${SESSION_MS}); longest gap between acknowledgements ${human(o.longestGapMs)} ms; ${o.oldLeaderAcks} acks by the old leader after the signal; ${o.errors} failed sends`,
      );
      const t = performance.now();
      await lc.broker(o.victim).restart();
      await waitFullIsr(admin, `broker ${o.victim} back in every ISR`);
      const inIsr = performance.now() - t;
      // A returning broker gets its preferred leaderships back (auto.leader.rebalance.enable):
      // wait for that, so the next signal goes to a leader that stays.
      const preferred = await waitPreferredLeaders(admin);
      console.log(
        `  broker ${o.victim} restarted and back in every ISR after ${human(inIsr)} ms; ${preferred ? `every partition led by its preferred replica after ${human(performance.now() - t)} ms` : `not every partition led by its preferred replica within ${human(PREFERRED_WAIT_MS)} ms`}`,
      );
    }
    await sender.waitForAcks(STEADY_ACKS);
  } finally {
    await sender.stop();
  }
  const lat = Float64Array.from(sender.latencies);
  console.log(
    `phase 2 single-record acks=all sends: ${human(sender.acks.length)} acknowledged, latency ${latencySummary(lat, lat.length)} (the failovers included)`,
  );
  return results;
}

async function main(): Promise<void> {
  const lc = await startLocalCluster({
    controllers: 1,
    brokers: 3,
    logLevel: "warn",
    brokerArgs: BROKER_ARGS,
    keepDataDir: process.env.BENCH_KEEP_DIR === "1",
  });
  const admin = new AdminClient({ controllers: lc.controllers });
  try {
    const [created] = await admin.createTopics([
      {
        name: TOPIC,
        numPartitions: PARTITIONS,
        replicationFactor: REPLICAS,
        configs: { "min.insync.replicas": String(MIN_ISR) },
      },
    ]);
    if (created?.error) throw created.error;
    await waitFullIsr(admin, "every replica of the bench topic in its ISR");
    const leaders = (await partitionsOf(admin)).map((p) => `p${p.partition}→${p.leaderId}`);
    console.log("bench:replication setup");
    for (const line of machineLines()) console.log(`  ${line}`);
    console.log(
      "  cluster: etcd + 1 controller + 3 brokers, separate processes, gRPC over loopback",
    );
    console.log(
      `  brokers: ${BROKER_ARGS.join(" ")} (short, for phase 2); other settings default (replica.fetch.wait.max.ms 500, replica.lag.time.max.ms 30000, flush by the OS)`,
    );
    console.log(
      `  topic: ${PARTITIONS} partitions, RF=${REPLICAS}, min.insync.replicas=${MIN_ISR}, leaders ${leaders.join(" ")}`,
    );
    console.log(
      `  phase 1: ${human(RECORDS)} records (≤ ${human(PHASE_MS_MAX / 1000)} s) after ${human(WARMUP_RECORDS)} warm-up, ${RECORD_BYTES} B values, no key (sticky partitioner), uncompressed, acks=all, Producer.add per record with a delivery callback (linger.ms ${LINGER_MS_DEFAULT}, batch.size ${BATCH_SIZE_BYTES_DEFAULT}, buffer.memory ${human(BUFFER_MEMORY_BYTES_DEFAULT)} B), ${INFLIGHT === 0 ? "no cap on unacknowledged records but buffer.memory" : `≤ ${human(INFLIGHT)} records unacknowledged`}`,
    );
    if (PHASES.includes("2")) {
      console.log(
        `  phase 2: one producer.send of 1 record to partition 0 at a time, acks=all, delivery.timeout.ms ${DELIVERY_TIMEOUT_MS}, request timeout ${PHASE2_REQUEST_TIMEOUT_MS} ms; SIGKILL, then SIGTERM, of partition 0's leader after ${STEADY_ACKS} steady acks`,
      );
    }
    const busy = busyWarning();
    if (busy) console.log(`  ${busy}`);

    let p1: ThroughputResult | undefined;
    if (PHASES.includes("1")) {
      p1 = await phase1(lc);
      console.log(
        `  phase 1 target: ≥ 300,000 records/s with RF=3 acks=all (${p1.acked > 0 ? `${fixed((100 * perSec(p1.acked, p1.ms)) / 300_000, 0)}% of it` : "none"})`,
      );
    }
    let p2: Outage[] = [];
    if (PHASES.includes("2")) p2 = await phase2(lc, admin);
    const kill = p2.find((_, i) => i === 0);
    const term = p2.find((_, i) => i === 1);
    console.log(
      `bench:replication records_s=${p1 ? Math.round(perSec(p1.acked, p1.ms)) : "NA"} mb_s=${p1 ? fixed(mbPerSec(p1.acked * RECORD_BYTES, p1.ms), 1) : "NA"} p50_ms=${p1 ? fixed(p1.p50, 2) : "NA"} p99_ms=${p1 ? fixed(p1.p99, 2) : "NA"} sigkill_unavailable_ms=${kill ? Math.round(kill.toNewLeaderMs) : "NA"} sigterm_unavailable_ms=${term ? Math.round(term.toNewLeaderMs) : "NA"} session_ms=${SESSION_MS}`,
    );
  } finally {
    admin.close();
    await lc.stop();
  }
}

await main();

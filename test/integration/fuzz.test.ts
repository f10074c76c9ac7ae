/**
 * The fuzz suite (issue 12): a real local cluster (etcd, 1 controller, 3 brokers, 1 gateway)
 * gets fast-check-generated requests of every RPC of every `samsa.*` service, on every process
 * that serves it (as its health service says): structure-aware requests built from the proto
 * types (fuzz-arbitraries.ts), damaged encodings and raw random bytes, each call with a short
 * deadline; and mutated record batches produced to a replicated topic. Any gRPC status is fine
 * except INTERNAL and UNKNOWN (bugs), and no answer may carry the UNKNOWN error code ("unexpected
 * server error"); an accepted batch must read back. Afterwards: every process still runs, every
 * stored batch of every partition decodes, data produced before the fuzz is unchanged, and a
 * fresh record round-trips.
 *
 * Bounded for CI: `SAMSA_FUZZ_RUNS` runs per property (default 60), the whole fuzz phase within
 * `SAMSA_FUZZ_TIME_MS` (default 60 s; no bound when only `SAMSA_FUZZ_RUNS` is given).
 * `SAMSA_FUZZ_SEED` reproduces a run (the seed is printed); `SAMSA_FUZZ_METHODS=<regex>` fuzzes
 * only the matching RPC paths. Locally:
 * `SAMSA_FUZZ_RUNS=100000 node --import tsx --test test/integration/fuzz.test.ts`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import type { BrokerServiceClient } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import { unary } from "../../services/shared/grpc/client.js";
import { toProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/index.js";
import { waitFor } from "../support/wait-for.js";
import {
  Clients,
  createTopic,
  fetchAll,
  produce,
  type ReadRecord,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";
import {
  damagedRequestArb,
  type FuzzMethod,
  type FuzzPool,
  fuzzMethods,
  type MutatedBatch,
  mutatedBatchArb,
  rawBytesArb,
  requestArb,
} from "./fuzz-arbitraries.js";

/** Runs per property, and whether the run is the CI one (time-bounded by default). */
const RUNS_ENV = process.env.SAMSA_FUZZ_RUNS;
const RUNS = Number(RUNS_ENV ?? 60);
/** Wall-clock bound of the fuzz phase, ms (the cluster's start and the checks come on top). */
const TIME_MS = Number(
  process.env.SAMSA_FUZZ_TIME_MS ?? (RUNS_ENV === undefined ? 60_000 : Number.POSITIVE_INFINITY),
);
const SEED = Number(process.env.SAMSA_FUZZ_SEED ?? (Date.now() ^ (Math.random() * 2 ** 31)) | 0);
/** Only the RPCs whose path matches this (e.g. `GroupService`), to chase one finding. */
const METHODS = new RegExp(process.env.SAMSA_FUZZ_METHODS ?? "");
/** Properties fuzzed at the same time (calls that wait out their deadline overlap). */
const CONCURRENCY = 4;
/** Deadline of one fuzzed call, ms: long polls and streams end by it. */
const FUZZ_CALL_DEADLINE_MS = 1_500;
/** Larger generated requests are skipped, bytes (several 1 MiB strings at once). */
const FUZZ_REQUEST_BYTES_MAX = 4 * 1024 * 1024;
/** Messages read from a fuzzed stream before it is cancelled. */
const STREAM_MESSAGES_MAX = 2;
/** Characters of a request printed with a finding. */
const PRINT_CHARS_MAX = 4_000;
/** Batch-mutation runs per fuzz run of one RPC property. */
const BATCH_RUNS_FACTOR = 10;
/** Attempts at reading a partition whose leader moves (fuzzed ElectLeaders, shutdowns). */
const READ_ATTEMPTS = 20;
/** Acks of the batch fuzz: an accepted batch is then below the high watermark, readable. */
const ACKS_ALL = 3;
/** Records produced to each baseline and pool partition before the fuzz. */
const RECORDS_BEFORE = 9;
const UNKNOWN_CODE = toProtoErrorCode(ErrorCode.UNKNOWN);

/** A bug the fuzz found: what was called, with what, and what came back. */
interface Finding {
  readonly what: string;
  readonly answer: string;
  readonly request: string;
}

/** What a call answered: its status and the response messages it got. */
interface Answer {
  readonly code: grpc.status;
  readonly details: string;
  readonly responses: Buffer[];
}

const identity = (b: Buffer) => b;

/** Calls `m` with encoded request `bodies` (one unless the method streams requests). */
function call(client: grpc.Client, m: FuzzMethod, bodies: Buffer[]): Promise<Answer> {
  const options = { deadline: Date.now() + FUZZ_CALL_DEADLINE_MS };
  return new Promise((resolve) => {
    const responses: Buffer[] = [];
    const done = (err: grpc.ServiceError | null | undefined) =>
      resolve({
        code: err ? err.code : grpc.status.OK,
        details: err?.details ?? "",
        responses,
      });
    const unaryDone = (err: grpc.ServiceError | null, res?: Buffer) => {
      if (res) responses.push(res);
      done(err);
    };
    if (!m.requestStream && !m.responseStream) {
      client.makeUnaryRequest(m.path, identity, identity, bodies[0]!, options, unaryDone);
      return;
    }
    if (!m.responseStream) {
      const c = client.makeClientStreamRequest(m.path, identity, identity, options, unaryDone);
      for (const body of bodies) c.write(body);
      c.end();
      return;
    }
    const onStream = (c: grpc.ClientReadableStream<Buffer>) => {
      c.on("data", (res: Buffer) => {
        responses.push(res);
        if (responses.length >= STREAM_MESSAGES_MAX) c.cancel();
      });
      c.on("error", (err: grpc.ServiceError) => done(err));
      c.on("end", () => done(null));
    };
    if (!m.requestStream) {
      onStream(client.makeServerStreamRequest(m.path, identity, identity, bodies[0]!, options));
      return;
    }
    const c = client.makeBidiStreamRequest(m.path, identity, identity, options);
    onStream(c);
    for (const body of bodies) c.write(body);
    c.end();
  });
}

/** Whether a decoded message holds an `errorCode` of UNKNOWN anywhere. */
function holdsUnknownCode(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(holdsUnknownCode);
  if (value === null || typeof value !== "object" || Buffer.isBuffer(value)) return false;
  return Object.entries(value).some(
    ([k, v]) => (k === "errorCode" && v === UNKNOWN_CODE) || holdsUnknownCode(v),
  );
}

/** The bug in an answer of `m`, if it shows one. */
function bugIn(m: FuzzMethod, answer: Answer): string | undefined {
  if (answer.code === grpc.status.INTERNAL || answer.code === grpc.status.UNKNOWN)
    return `status ${grpc.status[answer.code]}: ${answer.details}`;
  for (const bytes of answer.responses) {
    let decoded: unknown;
    try {
      decoded = m.responseType.toObject(m.responseType.decode(bytes), { longs: String });
    } catch (err) {
      return `response does not decode: ${String(err)}`;
    }
    if (holdsUnknownCode(decoded)) return `response with error code UNKNOWN: ${show(decoded)}`;
  }
  return undefined;
}

/** A request for printing: long strings and bytes summarized, cut at {@link PRINT_CHARS_MAX}. */
function show(value: unknown): string {
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === "string" && v.length > 100)
      return `<${v.length} chars "${v.slice(0, 20)}...">`;
    if (v instanceof Uint8Array || (v as { type?: string })?.type === "Buffer") {
      const b = Buffer.from(v instanceof Uint8Array ? v : (v as { data: number[] }).data);
      return `<${b.length} bytes ${b.subarray(0, 96).toString("hex")}>`;
    }
    if (typeof v === "bigint") return v.toString();
    return v;
  });
  return text.length > PRINT_CHARS_MAX ? `${text.slice(0, PRINT_CHARS_MAX)}...` : text;
}

/** Runs `tasks` with at most `n` at a time. */
async function pool(tasks: (() => Promise<void>)[], n: number): Promise<void> {
  const queue = [...tasks];
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let task = queue.shift(); task; task = queue.shift()) await task();
    }),
  );
}

/** Reads a whole partition from its current leader, retrying while leadership moves. */
async function readPartition(
  cluster: LocalCluster,
  clients: Clients,
  topic: string,
  partition: number,
): Promise<ReadRecord[]> {
  let last: unknown;
  for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
    try {
      const md = await unary(clients.broker(cluster.bootstrap[0]!), "Metadata", {
        topics: [topic],
      });
      const leader = md.topics[0]?.partitions.find((p) => p.partition === partition)?.leaderId;
      if (leader !== undefined && leader >= 0)
        return await fetchAll(clients.broker(cluster.broker(leader).address), topic, partition);
    } catch (err) {
      if (String(err).includes("CORRUPT_MESSAGE") || String(err).includes("CRC")) throw err;
      last = err;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${topic}-${partition} not readable: ${String(last)}`);
}

describe("fuzz: every RPC and record batches against a live cluster", {
  timeout: (Number.isFinite(TIME_MS) ? TIME_MS * 2 : 24 * 3600_000) + 120_000,
}, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  const raw = new Map<string, grpc.Client>();
  const rawClient = (address: string) => {
    let c = raw.get(address);
    if (!c) {
      c = new grpc.Client(address, grpc.credentials.createInsecure());
      raw.set(address, c);
    }
    return c;
  };
  const baselineTopic = uniqueTopic("fuzz-baseline");
  const batchTopic = uniqueTopic("fuzz-batches");
  const poolTopics = [uniqueTopic("fuzz-pool"), uniqueTopic("fuzz-pool-rf3")];
  const baseline = new Map<number, ReadRecord[]>();
  const findings: Finding[] = [];
  let fuzzPool: FuzzPool;

  before(async () => {
    console.log(`fuzz seed ${SEED} (SAMSA_FUZZ_SEED=${SEED} reproduces), ${RUNS} runs/property`);
    cluster = await startTestCluster({ controllers: 1, brokers: 3, gateways: 1, logLevel: "warn" });
    const admin = clients.admin(cluster.controllers[0]!);
    await createTopic(admin, baselineTopic, 2, 3);
    await createTopic(admin, batchTopic, 3, 3);
    await createTopic(admin, poolTopics[0]!, 3, 1);
    await createTopic(admin, poolTopics[1]!, 1, 3);
    for (const topic of [baselineTopic, ...poolTopics]) {
      const partitions = topic === poolTopics[1] ? 1 : topic === baselineTopic ? 2 : 3;
      const leaders = await waitForLeaders(cluster, clients, topic, partitions);
      for (const [partition, leader] of leaders) {
        const broker = clients.broker(cluster.broker(leader).address);
        for (let b = 0; b < 3; b++) {
          const records = [0, 1, 2].map((i) => ({
            key: Buffer.from(`k${partition}-${b}`),
            value: Buffer.from(`${topic}-${partition}-${b}-${i}`),
          }));
          await produce(broker, topic, partition, records);
        }
        // Read once every record is below the high watermark (replicated).
        if (topic === baselineTopic)
          baseline.set(
            partition,
            await waitFor(async () => {
              const records = await fetchAll(broker, topic, partition);
              return records.length === RECORDS_BEFORE ? records : undefined;
            }),
          );
      }
    }
    await waitForLeaders(cluster, clients, batchTopic, 3);
    fuzzPool = {
      strings: [
        ...poolTopics,
        "fuzz-group",
        "fuzz-member",
        "broker-1",
        "gateway-1",
        "controller-1",
        "retention.ms",
        "cleanup.policy",
        ...cluster.bootstrap,
      ],
      batches: [
        buildBatch([{ key: Buffer.from("k"), value: Buffer.from("v") }]),
        buildBatch([{ value: Buffer.from("a") }, { value: null }]),
      ],
    };
  });
  after(async () => {
    for (const c of raw.values()) c.close();
    clients.close();
    await cluster?.stop();
  });

  /** Addresses of the processes whose health service says they serve `service`. */
  async function serving(service: string): Promise<string[]> {
    const addresses = [...cluster.controllers, ...cluster.bootstrap, ...cluster.gateways];
    const request = Buffer.concat([Buffer.from([0x0a, service.length]), Buffer.from(service)]);
    const out: string[] = [];
    for (const address of addresses) {
      const res = await new Promise<Buffer | undefined>((resolve) =>
        rawClient(address).makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          identity,
          identity,
          request,
          { deadline: Date.now() + 5_000 },
          (_err, r) => resolve(r),
        ),
      );
      // HealthCheckResponse { status = 1 (SERVING) }.
      if (res?.equals(Buffer.from([0x08, 0x01]))) out.push(address);
    }
    return out;
  }

  test("fuzzed requests of every RPC: no INTERNAL, no UNKNOWN", async () => {
    const methods = fuzzMethods().filter((m) => METHODS.test(m.path));
    const services = [...new Set(methods.map((m) => m.service))];
    const targets = new Map<string, string[]>();
    for (const s of services) targets.set(s, await serving(s));
    for (const [s, addresses] of targets) assert.ok(addresses.length > 0, `${s} is served`);
    console.log(
      `fuzzing ${methods.length} RPCs of ${services.length} services: ${[...targets]
        .map(([s, a]) => `${s} on ${a.length}`)
        .join(", ")}`,
    );
    const properties = methods.length * 2;
    const propertyMs = Number.isFinite(TIME_MS)
      ? Math.max(1_000, Math.floor((TIME_MS * 0.8 * CONCURRENCY) / properties))
      : undefined;
    const stats = { calls: 0, byCode: new Map<string, number>() };
    const tasks: (() => Promise<void>)[] = [];
    for (const [i, m] of methods.entries()) {
      const addresses = targets.get(m.service)!;
      const messages = m.requestStream
        ? fc.array(requestArb(m.requestType, fuzzPool), { minLength: 1, maxLength: 4 })
        : requestArb(m.requestType, fuzzPool).map((r) => [r]);
      const structured = messages.map((rs) => ({
        shown: rs,
        bodies: rs.map((r) => Buffer.from(m.requestType.encode(r).finish())),
      }));
      const bytes = fc
        .oneof(rawBytesArb(), damagedRequestArb(m.requestType, fuzzPool))
        .map((b) => ({ shown: b as unknown, bodies: [b] }));
      for (const [kind, arb, seed] of [
        ["structured", structured, SEED + 2 * i],
        ["bytes", bytes, SEED + 2 * i + 1],
      ] as const) {
        tasks.push(async () => {
          let first: Finding | undefined;
          const property = fc.asyncProperty(arb, fc.nat(), async (req, which) => {
            fc.pre(req.bodies.reduce((n, b) => n + b.length, 0) <= FUZZ_REQUEST_BYTES_MAX);
            const address = addresses[which % addresses.length]!;
            const answer = await call(rawClient(address), m, req.bodies);
            stats.calls++;
            const name = grpc.status[answer.code]!;
            stats.byCode.set(name, (stats.byCode.get(name) ?? 0) + 1);
            const bug = bugIn(m, answer);
            if (bug === undefined) return true;
            first ??= {
              what: `${m.path} (${kind}) on ${address}`,
              answer: bug,
              request: show(req.shown),
            };
            return false;
          });
          const details = await fc.check(property, {
            seed,
            numRuns: RUNS,
            ...(propertyMs ? { interruptAfterTimeLimit: propertyMs } : {}),
            markInterruptAsFailure: false,
          });
          if (details.failed && first) {
            findings.push(first);
            const shrunk = details.counterexample?.[0] as { shown: unknown } | undefined;
            if (shrunk)
              findings.push({
                what: `${first.what}, shrunk (seed ${seed}, path ${details.counterexamplePath})`,
                answer: String(details.errorInstance ?? "same"),
                request: show(shrunk.shown),
              });
          } else if (details.failed) {
            findings.push({
              what: `${m.path} (${kind})`,
              answer: String(details.errorInstance),
              request: "",
            });
          }
        });
      }
    }
    const started = Date.now();
    await pool(tasks, CONCURRENCY);
    console.log(
      `${stats.calls} fuzzed calls in ${Date.now() - started} ms: ${[...stats.byCode]
        .map(([c, n]) => `${c} ${n}`)
        .join(", ")}`,
    );
    for (const f of findings)
      console.log(`FINDING ${f.what}: ${f.answer}\n  request: ${f.request}`);
    assert.deepEqual(
      findings.map((f) => `${f.what}: ${f.answer}`),
      [],
      "fuzzed requests answered INTERNAL, UNKNOWN or a response with UNKNOWN",
    );
  });

  test("mutated record batches: refused with a typed error, or stored and readable", async () => {
    const leaders = await waitForLeaders(cluster, clients, batchTopic, 3);
    let accepted = 0;
    let first: string | undefined;
    const produceBatch = (broker: BrokerServiceClient, partition: number, records: Buffer) =>
      unary(
        broker,
        "Produce",
        { partitions: [{ topic: batchTopic, partition, records }], acks: ACKS_ALL },
        { deadlineMs: 5_000 },
      );
    const check = async (batch: MutatedBatch, partition: number): Promise<string | undefined> => {
      const leader = leaders.get(partition)!;
      const broker: BrokerServiceClient = clients.broker(cluster.broker(leader).address);
      let res: Awaited<ReturnType<typeof produceBatch>>;
      try {
        res = await produceBatch(broker, partition, batch.bytes);
      } catch (err) {
        if (err instanceof SamsaError && err.code !== ErrorCode.UNKNOWN) return undefined;
        return `produce failed: ${String(err)}`;
      }
      const p = res.partitions[0];
      if (!p) return "no partition result";
      if (p.errorCode === UNKNOWN_CODE) return `UNKNOWN: ${p.errorMessage}`;
      if (p.errorCode !== 0) return undefined;
      accepted++;
      // Accepted: what was stored must read back and decode, CRC and records.
      const fetched = await unary(broker, "Fetch", {
        partitions: [
          { topic: batchTopic, partition, fetchOffset: p.baseOffset, currentLeaderEpoch: -1 },
        ],
        maxWaitMs: 0,
        maxBytes: 4 * 1024 * 1024,
      });
      const f = fetched.partitions[0]!;
      if (f.errorCode !== 0) return `stored, then fetch error ${f.errorCode}: ${f.errorMessage}`;
      try {
        const batches = decodeBatches(f.records as Buffer);
        if (batches.length === 0) return "stored, then nothing to read";
      } catch (err) {
        return `stored, then unreadable: ${String(err)}`;
      }
      return undefined;
    };
    const property = fc.asyncProperty(mutatedBatchArb(), fc.nat(2), async (batch, partition) => {
      const bug = await check(batch, partition);
      if (bug === undefined) return true;
      first ??= `${bug}\n  batch: ${show({ ...batch, bytes: batch.bytes })}`;
      return false;
    });
    const details = await fc.check(property, {
      seed: SEED,
      numRuns: RUNS * BATCH_RUNS_FACTOR,
      ...(Number.isFinite(TIME_MS) ? { interruptAfterTimeLimit: Math.floor(TIME_MS / 4) } : {}),
      markInterruptAsFailure: false,
    });
    console.log(`${details.numRuns} mutated batches, ${accepted} accepted`);
    if (details.failed) {
      const shrunk = details.counterexample?.[0] as MutatedBatch | undefined;
      assert.fail(
        `first: ${first}\nshrunk (path ${details.counterexamplePath}): ${shrunk ? show(shrunk) : "?"}`,
      );
    }
  });

  test("after the fuzz: every process runs, every batch decodes, old data unchanged, new data round-trips", async () => {
    const handles = [
      cluster.etcd,
      ...cluster.controllerProcesses,
      ...cluster.brokerProcesses,
      ...cluster.gatewayProcesses,
    ];
    assert.deepEqual(
      handles.filter((h) => !h.running).map((h) => h.name),
      [],
      "no process exited",
    );
    const md = await unary(clients.broker(cluster.bootstrap[0]!), "Metadata", { topics: [] });
    let partitions = 0;
    for (const t of md.topics) {
      if (t.errorCode !== 0) continue;
      for (const p of t.partitions) {
        // fetchAll decodes every batch (CRC and records) and fails on any error code.
        await readPartition(cluster, clients, t.name, p.partition);
        partitions++;
      }
    }
    console.log(`${md.topics.length} topics, ${partitions} partitions read from offset 0`);
    for (const [partition, records] of baseline)
      assert.deepEqual(
        await readPartition(cluster, clients, baselineTopic, partition),
        records,
        `${baselineTopic}-${partition} unchanged`,
      );
    const leaders = await waitForLeaders(cluster, clients, baselineTopic, 2);
    const broker = clients.broker(cluster.broker(leaders.get(0)!).address);
    const value = `fresh-${SEED}`;
    const offset = await produce(broker, baselineTopic, 0, [{ value: Buffer.from(value) }]);
    // Produced with acks=leader: readable once replicated (below the high watermark).
    const fresh = await waitFor(async () => {
      const records = await readPartition(cluster, clients, baselineTopic, 0);
      return records.at(-1)?.offset === offset ? records.at(-1) : undefined;
    });
    assert.equal(fresh.value, value);
  });
});

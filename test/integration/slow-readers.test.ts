/**
 * Bounded under load (issue 12): streams whose readers never read must cost the servers a bounded
 * amount of memory, not what the readers have not read. A real cluster (etcd, 1 controller,
 * 1 broker, 1 gateway as processes): {@link STUCK_CONSUMES} gateway Consume streams and
 * {@link STUCK_SUBSCRIBES} broker Subscribe streams that never read while {@link LOAD_MIB} MiB are
 * produced. The broker's and the gateway's resident memory (VmRSS of the child processes) stay
 * under stated bounds, producers keep their throughput (loosely, against a run without stuck
 * streams), a normal reader reads everything, and the stuck streams, when they finally read,
 * deliver every record in order.
 *
 * Scaled for CI on a 2-core machine: the issue asks for 1 GiB; {@link LOAD_MIB} (256 MiB by
 * default, `SLOW_READERS_MIB` to change) keeps the test under two minutes with the stuck-stream
 * count of the issue (200, `SLOW_READERS_STREAMS`). Every stuck stream starts at offset 0, so it
 * has all of the load unread: unbounded buffering would hold 200 × 256 MiB.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type * as grpc from "@grpc/grpc-js";
import type { LocalCluster } from "../../services/local-cluster/local-cluster.js";
import type { BrokerServiceClient } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import type { ConsumeResponse__Output } from "../../services/shared/generated/samsa/v1/ConsumeResponse.js";
import type { GatewayServiceClient } from "../../services/shared/generated/samsa/v1/GatewayService.js";
import { SpecialOffset } from "../../services/shared/generated/samsa/v1/SpecialOffset.js";
import type { SubscribeResponse__Output } from "../../services/shared/generated/samsa/v1/SubscribeResponse.js";
import { createClient, stream } from "../../services/shared/grpc/client.js";
import { brokerService, gatewayService } from "../../services/shared/grpc/proto.js";
import { buildBatch, decodeBatches } from "../../services/shared/record-batch/builder.js";
import {
  Clients,
  createTopic,
  produceRaw,
  startTestCluster,
  uniqueTopic,
  waitForLeaders,
} from "./cluster-helpers.js";

const MIB = 1024 * 1024;
/** Stuck gateway Consume streams (the count). */
const STUCK_CONSUMES = Number(process.env.SLOW_READERS_STREAMS ?? 200);
/** Stuck broker Subscribe streams. */
const STUCK_SUBSCRIBES = Math.max(1, Math.round(STUCK_CONSUMES / 10));
/** MiB produced while the streams are stuck. */
const LOAD_MIB = Number(process.env.SLOW_READERS_MIB ?? 256);
/** MiB produced to measure the throughput without stuck streams. */
const BASELINE_MIB = Math.max(16, LOAD_MIB / 4);
const PARTITIONS = 2;
/** Value bytes of one record (large records: the test is about bytes, not record counts). */
const RECORD_BYTES = 16 * 1024;
/** Records of one produced batch (256 KiB). */
const BATCH_RECORDS = 16;
/** Produce calls in flight. */
const PRODUCERS = 4;
/**
 * Resident memory the broker and the gateway may grow by under the load, MB. The gateway holds
 * per stuck Consume, per partition, one HTTP/2 window of the broker's stream (256 KiB), one
 * message read ahead and one being decoded (a 256 KiB batch each here), and per stream its send
 * buffer (256 KiB + one record): measured about 2.5 MB per stuck Consume (560 MB for 200, 315 MB
 * for 100, the same for 128 and 256 MiB produced). The broker holds per stuck stream its send
 * buffer plus one message (about 0.5 MB) and grows by 380 to 530 MB under the produce load
 * alone (allocator high-water mark). The old code held what the streams had not read, up to
 * 64 MiB per Consume of this topic: 10 streams and 50 MiB grew the gateway by 450 MB.
 */
const GATEWAY_RSS_GROWTH_MB_MAX = 800;
/**
 * Measured at 256 MiB: 600–750 MB; at 1 GiB (`SLOW_READERS_MIB=1024`, the size) 1,002 MB
 * and at 2 GiB 989 MB (2 December): the growth does not follow the data.
 */
const BROKER_RSS_GROWTH_MB_MAX = 1_200;
/**
 * The whole run's bound, ms: most of it is the resumed streams reading everything (133 s of a
 * 1 GiB run here), so it grows with the load.
 */
const SUITE_TIMEOUT_MS = Math.max(240_000, LOAD_MIB * 300);
/** Producers with stuck streams must reach at least this share of the baseline's throughput. */
const THROUGHPUT_SHARE_MIN = 0.25;
/** Stuck streams that read everything once resumed (the others read a prefix). */
const FULL_RESUMES = 3;
/** Records every other stuck stream reads in order once resumed. */
const PREFIX_RECORDS = 32;
/** RSS sampling interval, ms. */
const SAMPLE_MS = 200;
/** A client window as third-party clients have it (Node's default): stuck clients hold little. */
const STUCK_CLIENT_WINDOW_BYTES = 65_535;

/** VmRSS of process `pid`, MB. */
async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
  assert.ok(kb, `VmRSS of ${pid}`);
  return Number(kb[1]) / 1024;
}

/** Samples the RSS of the processes; `over()` names the first bound crossed, if any. */
class RssSampler {
  readonly peak = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private crossed: string | undefined;

  constructor(private readonly procs: { name: string; pid: number; limitMb: number }[]) {
    this.timer = setInterval(() => void this.sample(), SAMPLE_MS);
  }

  async sample(): Promise<void> {
    for (const p of this.procs) {
      const mb = await rssMb(p.pid).catch(() => 0);
      this.peak.set(p.name, Math.max(this.peak.get(p.name) ?? 0, mb));
      if (mb > p.limitMb) this.crossed ??= `${p.name} RSS ${mb.toFixed(0)} MB > ${p.limitMb} MB`;
    }
  }

  over(): string | undefined {
    return this.crossed;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** One batch per partition, reused for every produce (the broker assigns the offsets). */
function batches(): Buffer[] {
  const value = Buffer.alloc(RECORD_BYTES, "v");
  return Array.from({ length: PARTITIONS }, (_, p) =>
    buildBatch(
      Array.from({ length: BATCH_RECORDS }, (_, i) => ({ key: Buffer.from(`${p}-${i}`), value })),
    ),
  );
}

/**
 * Produces `mib` MiB round-robin over the partitions with {@link PRODUCERS} calls in flight;
 * stops early when `stop()` says so. Returns MB/s and the batches produced per partition.
 */
async function produceLoad(
  broker: BrokerServiceClient,
  topic: string,
  mib: number,
  stop: () => string | undefined = () => undefined,
): Promise<{ mbPerS: number; batchesPerPartition: number }> {
  const bodies = batches();
  const total = Math.ceil((mib * MIB) / bodies[0]!.length / PARTITIONS) * PARTITIONS;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: PRODUCERS }, async () => {
      while (next < total && stop() === undefined) {
        const p = next++ % PARTITIONS;
        const r = await produceRaw(broker, topic, p, bodies[p]!);
        assert.equal(r.errorCode, 0, r.errorMessage);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    mbPerS: (next * bodies[0]!.length) / MIB / seconds,
    batchesPerPartition: next / PARTITIONS,
  };
}

/** A server stream the test never reads: grpc-js reads one message, then flow control holds. */
function stuck<T>(call: grpc.ClientReadableStream<T>): grpc.ClientReadableStream<T> {
  call.on("error", () => undefined);
  // grpc-js asks HTTP/2 for messages only once read; unread, it would take in everything.
  call.read(0);
  return call;
}

/** Checks that `offsets` of one partition go up by one from `from`. */
function assertInOrder(offsets: number[], from: number, what: string): void {
  for (const [i, o] of offsets.entries()) assert.equal(o, from + i, `${what}: record ${i}`);
}

describe("slow readers: bounded memory under load", { timeout: SUITE_TIMEOUT_MS }, () => {
  let cluster: LocalCluster;
  const clients = new Clients();
  let gateway: GatewayServiceClient;
  let stuckGateway: GatewayServiceClient;
  let stuckBroker: BrokerServiceClient;

  before(async () => {
    cluster = await startTestCluster({ controllers: 1, brokers: 1, gateways: 1 });
    gateway = createClient(gatewayService.Client, cluster.gateways[0]!);
    const small = { flowControlWindowBytes: STUCK_CLIENT_WINDOW_BYTES };
    stuckGateway = createClient(gatewayService.Client, cluster.gateways[0]!, small);
    stuckBroker = createClient(brokerService.Client, cluster.bootstrap[0]!, small);
  });
  after(async () => {
    for (const c of [gateway, stuckGateway, stuckBroker]) c?.close();
    clients.close();
    await cluster?.stop();
  });

  test(`${STUCK_CONSUMES} stuck Consume and ${STUCK_SUBSCRIBES} stuck Subscribe streams, ${LOAD_MIB} MiB`, async () => {
    const admin = clients.admin(cluster.controllers[0]!);
    const broker = clients.broker(cluster.bootstrap[0]!);
    const baselineTopic = uniqueTopic("slow-base");
    const topic = uniqueTopic("slow-load");
    for (const t of [baselineTopic, topic]) {
      await createTopic(admin, t, PARTITIONS);
      await waitForLeaders(cluster, clients, t, PARTITIONS);
    }
    const baseline = await produceLoad(broker, baselineTopic, BASELINE_MIB);

    const brokerPid = cluster.brokerProcesses[0]!.pid;
    const gatewayPid = cluster.gatewayProcesses[0]!.pid;
    const before = { broker: await rssMb(brokerPid), gateway: await rssMb(gatewayPid) };
    const sampler = new RssSampler([
      { name: "broker", pid: brokerPid, limitMb: before.broker + BROKER_RSS_GROWTH_MB_MAX },
      { name: "gateway", pid: gatewayPid, limitMb: before.gateway + GATEWAY_RSS_GROWTH_MB_MAX },
    ]);

    const fromStart = { topic, special: SpecialOffset.SPECIAL_OFFSET_EARLIEST };
    const consumes = Array.from({ length: STUCK_CONSUMES }, () =>
      stuck(stuckGateway.Consume(fromStart)),
    );
    const subscribes = Array.from({ length: STUCK_SUBSCRIBES }, (_, i) =>
      stuck(stuckBroker.Subscribe({ topic, partition: i % PARTITIONS, offset: "0" })),
    );
    // A normal reader alongside: it must read everything, unslowed by the stuck ones.
    const normal = new AbortController();
    const normalOffsets: number[][] = Array.from({ length: PARTITIONS }, () => []);
    let expected = Number.POSITIVE_INFINITY;
    const reading = (async () => {
      let count = 0;
      for await (const m of stream(gateway, "Consume", fromStart, { signal: normal.signal })) {
        normalOffsets[m.partition]!.push(Number(m.offset));
        if (++count >= expected) normal.abort();
      }
    })();

    const load = await produceLoad(broker, topic, LOAD_MIB, () => sampler.over());
    expected = load.batchesPerPartition * BATCH_RECORDS * PARTITIONS;
    const normalCount = () => normalOffsets.reduce((n, o) => n + o.length, 0);
    if (normalCount() >= expected) normal.abort();
    await reading;
    // Let the servers settle into their bounds after the last produce.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await sampler.sample();
    sampler.stop();
    const after = { broker: await rssMb(brokerPid), gateway: await rssMb(gatewayPid) };
    console.log(
      `slow readers: ${STUCK_CONSUMES} Consume + ${STUCK_SUBSCRIBES} Subscribe stuck, ` +
        `${LOAD_MIB} MiB; produce ${baseline.mbPerS.toFixed(1)} MB/s alone, ` +
        `${load.mbPerS.toFixed(1)} MB/s with them; RSS MB broker ${before.broker.toFixed(0)} → ` +
        `peak ${sampler.peak.get("broker")?.toFixed(0)} (end ${after.broker.toFixed(0)}), ` +
        `gateway ${before.gateway.toFixed(0)} → peak ${sampler.peak.get("gateway")?.toFixed(0)} ` +
        `(end ${after.gateway.toFixed(0)})`,
    );
    assert.equal(sampler.over(), undefined, "resident memory stays within its bound");
    assert.ok(
      load.mbPerS >= baseline.mbPerS * THROUGHPUT_SHARE_MIN,
      `producers keep their throughput: ${load.mbPerS} vs ${baseline.mbPerS} MB/s`,
    );
    assert.equal(normalCount(), expected, "the normal reader read everything");
    for (const [p, offsets] of normalOffsets.entries()) assertInOrder(offsets, 0, `normal p${p}`);

    // The stuck streams resume: a few read everything, the others a prefix of each partition.
    const perPartition = load.batchesPerPartition * BATCH_RECORDS;
    const readConsume = async (
      call: grpc.ClientReadableStream<ConsumeResponse__Output>,
      n: number,
    ) => {
      const offsets: number[][] = Array.from({ length: PARTITIONS }, () => []);
      let done = 0;
      for await (const m of call as AsyncIterable<ConsumeResponse__Output>) {
        const list = offsets[m.partition]!;
        if (list.length < n) {
          list.push(Number(m.offset));
          if (list.length === n) done++;
        }
        if (done === PARTITIONS) break;
      }
      call.cancel();
      for (const [p, o] of offsets.entries()) {
        assert.equal(o.length, n, `resumed Consume p${p}`);
        assertInOrder(o, 0, `resumed Consume p${p}`);
      }
    };
    const readSubscribe = async (call: grpc.ClientReadableStream<SubscribeResponse__Output>) => {
      const offsets: number[] = [];
      for await (const m of call as AsyncIterable<SubscribeResponse__Output>) {
        for (const b of decodeBatches(m.records)) offsets.push(...b.records.map((r) => r.offset));
        if (offsets.length >= perPartition) break;
      }
      call.cancel();
      assert.equal(offsets.length, perPartition, "resumed Subscribe read its partition");
      assertInOrder(offsets, 0, "resumed Subscribe");
    };
    const resumed = performance.now();
    await Promise.all(consumes.slice(0, FULL_RESUMES).map((c) => readConsume(c, perPartition)));
    await Promise.all(subscribes.map(readSubscribe));
    for (let i = FULL_RESUMES; i < consumes.length; i += 20)
      await Promise.all(consumes.slice(i, i + 20).map((c) => readConsume(c, PREFIX_RECORDS)));
    console.log(`slow readers: resumed in ${((performance.now() - resumed) / 1000).toFixed(1)} s`);
  });
});

/**
 * An in-process fake Samsa cluster for client and CLI tests: N BrokerService servers and two
 * AdminService servers (a standby answering NOT_CONTROLLER with the active one's address, and
 * the active one) on 127.0.0.1:0, over one shared in-memory log per partition. It is not a
 * broker: no replication, no storage, no etcd. It implements what a client can observe:
 * leaders (NOT_LEADER from the others), leader epochs (fenced / unknown), base offsets stamped
 * into batches, Fetch long polls, ListOffsets, Metadata, and topic administration.
 */
import { Registry } from "prom-client";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import type { AdminServiceHandlers } from "../../services/shared/generated/samsa/v1/AdminService.js";
import type { BrokerServiceHandlers } from "../../services/shared/generated/samsa/v1/BrokerService.js";
import type { FetchPartitionResult } from "../../services/shared/generated/samsa/v1/FetchPartitionResult.js";
import type { PartitionInfo } from "../../services/shared/generated/samsa/v1/PartitionInfo.js";
import type { TopicDescription } from "../../services/shared/generated/samsa/v1/TopicDescription.js";
import { CONTROLLER_METADATA_KEY, toProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { adminService, brokerService } from "../../services/shared/grpc/proto.js";
import {
  createGrpcServer,
  type GrpcServer,
  type ServiceHandlers,
} from "../../services/shared/grpc/server.js";
import {
  decodeBatch,
  lastOffsetOf,
  stampBatch,
  validateBatches,
} from "../../services/shared/record-batch/index.js";

/** Poll interval of a fake Fetch long poll, ms. */
const FAKE_FETCH_POLL_MS = 5;
/** Id of the fake cluster. */
export const FAKE_CLUSTER_ID = "fake-cluster";

/** One partition: its leader and the batches it holds, stamped. */
export interface FakePartition {
  leader: number;
  epoch: number;
  batches: Buffer[];
  /** The log end offset (= high watermark here). */
  next: number;
}

/** A started fake cluster. */
export interface FakeCluster {
  /** Brokers' ids (1..N) and `host:port`s. */
  readonly brokers: readonly { id: number; address: string }[];
  /** `[standby, active]` controller addresses. */
  readonly controllers: readonly string[];
  readonly topics: Map<string, FakePartition[]>;
  /** Calls per `<broker id>.<method>`, and per error code name answered. */
  readonly calls: Map<string, number>;
  /** Creates a topic; partition p led by broker `leaders[p]` (default round robin). */
  createTopic(name: string, partitions: number, leaders?: readonly number[]): void;
  /** Moves a partition's leadership (epoch + 1). */
  setLeader(topic: string, partition: number, leader: number): void;
  stop(): Promise<void>;
}

const bump = (calls: Map<string, number>, key: string): void => {
  calls.set(key, (calls.get(key) ?? 0) + 1);
};

/** Starts `brokerCount` fake brokers and two fake controllers. */
export async function startFakeCluster(brokerCount = 2): Promise<FakeCluster> {
  const topics = new Map<string, FakePartition[]>();
  const calls = new Map<string, number>();
  const servers: GrpcServer[] = [];
  const brokers: { id: number; address: string }[] = [];
  const brokerInfos = () =>
    brokers.map((b) => ({
      id: b.id,
      host: "127.0.0.1",
      port: Number(b.address.split(":")[1]),
      rack: "",
    }));
  const partitionInfos = (ps: FakePartition[]): PartitionInfo[] =>
    ps.map((p, i) => ({
      partition: i,
      errorCode: 0,
      leaderId: p.leader,
      leaderEpoch: p.epoch,
      replicas: [p.leader],
      isr: [p.leader],
      offlineReplicas: [],
    }));
  const createTopic = (name: string, n: number, leaders?: readonly number[]): void => {
    const ps = Array.from({ length: n }, (_, i) => ({
      leader: leaders?.[i] ?? (i % brokerCount) + 1,
      epoch: 0,
      batches: [],
      next: 0,
    }));
    topics.set(name, ps);
  };

  for (let id = 1; id <= brokerCount; id++) {
    const server = createGrpcServer({ registry: new Registry(), shutdownGraceMs: 100 });
    server.addService(
      brokerService,
      brokerHandlers(id, topics, calls, brokerInfos, partitionInfos),
    );
    const port = await server.listen("127.0.0.1", 0);
    servers.push(server);
    brokers.push({ id, address: `127.0.0.1:${port}` });
  }
  const controllers: string[] = [];
  for (const active of [false, true]) {
    const server = createGrpcServer({ registry: new Registry(), shutdownGraceMs: 100 });
    const handlers = adminHandlers(topics, calls, brokerInfos, partitionInfos, createTopic);
    const standby = Object.fromEntries(
      Object.keys(handlers).map((method) => [
        method,
        async () => {
          bump(calls, `standby.${method}`);
          throw new SamsaError(ErrorCode.NOT_CONTROLLER, "this is a standby", {
            metadata: { [CONTROLLER_METADATA_KEY]: controllers[1]! },
          });
        },
      ]),
    ) as unknown as typeof handlers;
    server.addService(adminService, active ? handlers : standby);
    const port = await server.listen("127.0.0.1", 0);
    servers.push(server);
    controllers.push(`127.0.0.1:${port}`);
  }
  return {
    brokers,
    controllers,
    topics,
    calls,
    createTopic,
    setLeader(topic, partition, leader) {
      const p = topics.get(topic)![partition]!;
      p.leader = leader;
      p.epoch++;
    },
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

function brokerHandlers(
  id: number,
  topics: Map<string, FakePartition[]>,
  calls: Map<string, number>,
  brokerInfos: () => { id: number; host: string; port: number; rack: string }[],
  partitionInfos: (ps: FakePartition[]) => PartitionInfo[],
): ServiceHandlers<BrokerServiceHandlers> {
  /** The partition if this broker leads it, else the error code to answer. */
  const lookup = (topic: string, partition: number): FakePartition | ErrorCode => {
    const p = topics.get(topic)?.[partition];
    if (p === undefined) return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
    return p.leader === id ? p : ErrorCode.NOT_LEADER;
  };
  /** Counts an error answer and gives its proto value. */
  const answered = (code: ErrorCode) => {
    if (code !== ErrorCode.NONE) bump(calls, ErrorCode[code]);
    return toProtoErrorCode(code);
  };
  return {
    Metadata: async (request) => {
      bump(calls, `${id}.Metadata`);
      const names = request.topics.length > 0 ? request.topics : [...topics.keys()];
      return {
        clusterId: FAKE_CLUSTER_ID,
        controllerId: "",
        brokers: brokerInfos(),
        topics: names.map((name) => {
          const ps = topics.get(name);
          if (ps === undefined)
            return {
              name,
              errorCode: toProtoErrorCode(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
              topicId: "",
              partitions: [],
            };
          return { name, errorCode: 0, topicId: `id-${name}`, partitions: partitionInfos(ps) };
        }),
      };
    },
    Produce: async (request) => {
      bump(calls, `${id}.Produce`);
      return {
        partitions: request.partitions.map((pr) => {
          const p = lookup(pr.topic, pr.partition);
          const base = { topic: pr.topic, partition: pr.partition, logStartOffset: "0" };
          if (typeof p === "number")
            return { ...base, errorCode: answered(p), errorMessage: "", baseOffset: "-1" };
          const summary = validateBatches(pr.records);
          const first = p.next;
          summary.positions.forEach((pos, i) => {
            const h = summary.headers[i]!;
            const batch = Buffer.from(pr.records.subarray(pos, pos + h.batchLength + 12));
            stampBatch(batch, 0, p.next, p.epoch);
            p.batches.push(batch);
            p.next += h.lastOffsetDelta + 1;
          });
          const acksNone = request.acks === 1;
          return {
            ...base,
            errorCode: 0,
            errorMessage: "",
            baseOffset: acksNone ? "-1" : String(first),
          };
        }),
      };
    },
    Fetch: async (request, _call, ctx) => {
      bump(calls, `${id}.Fetch`);
      const deadline = Date.now() + request.maxWaitMs;
      for (;;) {
        const results: FetchPartitionResult[] = request.partitions.map((fp) => {
          const base = {
            topic: fp.topic,
            partition: fp.partition,
            logStartOffset: "0",
            nextOffset: "0",
          };
          const p = lookup(fp.topic, fp.partition);
          if (typeof p === "number")
            return { ...base, errorCode: answered(p), records: Buffer.alloc(0) };
          const hw = String(p.next);
          const requestEpoch = fp.currentLeaderEpoch ?? -1;
          if (requestEpoch >= 0 && requestEpoch !== p.epoch) {
            const code =
              requestEpoch < p.epoch
                ? ErrorCode.FENCED_LEADER_EPOCH
                : ErrorCode.UNKNOWN_LEADER_EPOCH;
            return {
              ...base,
              errorCode: answered(code),
              highWatermark: hw,
              records: Buffer.alloc(0),
            };
          }
          const offset = Number(fp.fetchOffset);
          if (offset > p.next)
            return {
              ...base,
              errorCode: answered(ErrorCode.OFFSET_OUT_OF_RANGE),
              highWatermark: hw,
              records: Buffer.alloc(0),
            };
          const out: Buffer[] = [];
          let bytes = 0;
          for (const b of p.batches) {
            if (lastOffsetOf(decodeBatch(b).header) < offset) continue;
            if (out.length > 0 && bytes + b.length > (fp.partitionMaxBytes || request.maxBytes))
              break;
            out.push(b);
            bytes += b.length;
          }
          return {
            ...base,
            errorCode: 0,
            highWatermark: hw,
            logEndOffset: hw,
            records: Buffer.concat(out),
          };
        });
        const ready = results.some((r) => r.errorCode !== 0 || (r.records as Buffer).length > 0);
        if (ready || Date.now() >= deadline || ctx.signal.aborted) return { partitions: results };
        await new Promise((resolve) => setTimeout(resolve, FAKE_FETCH_POLL_MS));
      }
    },
    ListOffsets: async (request) => {
      bump(calls, `${id}.ListOffsets`);
      return {
        partitions: request.partitions.map((lp) => {
          const base = {
            topic: lp.topic,
            partition: lp.partition,
            timestamp: "-1",
            leaderEpoch: -1,
          };
          const p = lookup(lp.topic, lp.partition);
          if (typeof p === "number")
            return { ...base, errorCode: answered(p), errorMessage: "", offset: "-1" };
          const ts = Number(lp.timestamp);
          let offset = ts === -2 ? 0 : ts === -1 ? p.next : -1;
          if (ts >= 0) {
            const hit = p.batches
              .flatMap((b) => decodeBatch(b).records)
              .find((r) => r.timestamp >= ts);
            offset = hit?.offset ?? -1;
          }
          return {
            ...base,
            errorCode: 0,
            errorMessage: "",
            offset: String(offset),
            leaderEpoch: p.epoch,
          };
        }),
      };
    },
    OffsetsForLeaderEpoch: async () => ({ partitions: [] }),
    Subscribe: async () => {
      throw new SamsaError(ErrorCode.INVALID_REQUEST, "the fake broker does not stream");
    },
  };
}

function adminHandlers(
  topics: Map<string, FakePartition[]>,
  calls: Map<string, number>,
  brokerInfos: () => { id: number; host: string; port: number; rack: string }[],
  partitionInfos: (ps: FakePartition[]) => PartitionInfo[],
  createTopic: (name: string, n: number) => void,
): ServiceHandlers<AdminServiceHandlers> {
  return {
    CreateTopics: async (request) => {
      bump(calls, "controller.CreateTopics");
      return {
        topics: request.topics.map((t) => {
          const n = t.numPartitions < 0 ? 1 : t.numPartitions;
          const result = {
            name: t.name,
            topicId: `id-${t.name}`,
            numPartitions: n,
            replicationFactor: 1,
          };
          if (topics.has(t.name))
            return {
              ...result,
              errorCode: toProtoErrorCode(ErrorCode.TOPIC_ALREADY_EXISTS),
              errorMessage: `topic ${t.name} already exists`,
            };
          if (!request.validateOnly) createTopic(t.name, n);
          return { ...result, errorCode: 0, errorMessage: "" };
        }),
      };
    },
    DeleteTopics: async (request) => ({
      topics: request.names.map((name) => {
        const existed = topics.delete(name);
        return {
          name,
          errorCode: existed ? 0 : ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
          errorMessage: existed ? "" : `topic ${name} does not exist`,
        };
      }),
    }),
    DescribeTopics: async (request) => {
      const names = request.names.length > 0 ? request.names : [...topics.keys()];
      return {
        topics: names.map((name): TopicDescription => {
          const ps = topics.get(name);
          if (ps === undefined)
            return {
              name,
              errorCode: toProtoErrorCode(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
              errorMessage: `topic ${name} does not exist`,
              partitions: [],
              configs: {},
            };
          return {
            name,
            errorCode: 0,
            errorMessage: "",
            topicId: `id-${name}`,
            partitions: partitionInfos(ps),
            configs: { "retention.ms": "1000" },
          };
        }),
      };
    },
    DescribeCluster: async () => ({
      clusterId: FAKE_CLUSTER_ID,
      controllerId: "c1",
      controllerEpoch: "7",
      controllerAddress: "",
      brokers: brokerInfos(),
    }),
  };
}

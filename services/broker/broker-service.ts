/**
 * The BrokerService gRPC handlers: thin translations between requests and the replica manager.
 * Record data stays opaque bytes end to end; per-partition failures become per-partition error
 * codes, call-level failures are thrown and mapped to gRPC status once, in the server wrapper.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { FetchPartitionResult } from "../shared/generated/samsa/v1/FetchPartitionResult.js";
import type { FetchRequest__Output } from "../shared/generated/samsa/v1/FetchRequest.js";
import type { ProducePartitionResult } from "../shared/generated/samsa/v1/ProducePartitionResult.js";
import type { ProduceRequest__Output } from "../shared/generated/samsa/v1/ProduceRequest.js";
import type { BrokerServiceHandlers } from "../shared/generated/samsa/v1/BrokerService.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import type { Logger } from "../shared/logger.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import type { BrokerMetrics } from "./broker-metrics.js";
import { describeMetadata } from "../shared/metadata/metadata-answer.js";
import type { Partition } from "./partition.js";
import type { ReplicaManager } from "./replica-manager.js";
import {
  checkTopicPartition,
  errorResult,
  limit,
  NO_ERROR,
  parseInt64,
} from "../shared/request-parsing.js";
import { subscribe } from "./subscribe.js";

/** Acks values of the proto. */
const ACKS_NONE = 1;
const ACKS_ALL = 3;
/** Partitions in one produce or fetch request at most. */
export const REQUEST_PARTITIONS_MAX = 10_000;
/** Longest long-poll wait, ms (Kafka's fetch.max.wait.ms is 500 by default). */
export const FETCH_MAX_WAIT_MS_MAX = 30_000;
/** Default and cap of a fetch's total bytes (Kafka's fetch.max.bytes: 50 MiB). */
export const FETCH_MAX_BYTES_DEFAULT = 50 * 1024 * 1024;
/** Default bytes per partition in a fetch (Kafka's max.partition.fetch.bytes: 1 MiB). */
export const FETCH_PARTITION_MAX_BYTES_DEFAULT = 1024 * 1024;
/** Default acks=all wait, ms (Kafka's request.timeout.ms). */
export const PRODUCE_TIMEOUT_MS_DEFAULT = 30_000;
/** ListOffsets sentinels. */
export const EARLIEST_TIMESTAMP = -2;
export const LATEST_TIMESTAMP = -1;

/** What the handlers need. */
export interface BrokerServiceDeps {
  brokerId: number;
  clusterId: string;
  replicas: ReplicaManager;
  metadata: ClusterMetadata;
  metrics: BrokerMetrics;
  logger: Logger;
  minInsyncReplicas: (topic: string) => number;
  controllerId: () => string;
}

function checkCount(n: number, what: string): void {
  if (n === 0) throw new SamsaError(ErrorCode.INVALID_REQUEST, `no ${what} in the request`);
  if (n > REQUEST_PARTITIONS_MAX) {
    throw new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `${n} ${what} exceed the limit of ${REQUEST_PARTITIONS_MAX}`,
    );
  }
}

/** Builds the handlers. */
export function brokerServiceHandlers(
  deps: BrokerServiceDeps,
): ServiceHandlers<BrokerServiceHandlers> {
  const { replicas, metrics, logger } = deps;
  const logUnexpected = (err: unknown, topic: string, partition: number) => {
    if (!(err instanceof SamsaError))
      logger.error("unexpected error", { topic, partition, error: String(err) });
  };

  async function producePartition(
    p: { topic: string; partition: number; records: Buffer },
    acks: number,
  ): Promise<ProducePartitionResult> {
    const base = { topic: p.topic, partition: p.partition };
    try {
      checkTopicPartition(p.topic, p.partition);
      const part = replicas.partitionFor(p.topic, p.partition, true);
      const minIsr = deps.minInsyncReplicas(p.topic);
      const result = await part.appendAsLeader(p.records, minIsr, acks === ACKS_ALL);
      metrics.recordProduce(p.topic, p.records.length, result.recordCount);
      return {
        ...base,
        errorCode: NO_ERROR,
        baseOffset: String(result.baseOffset),
        logStartOffset: String(part.log.logStartOffset),
      };
    } catch (err) {
      logUnexpected(err, p.topic, p.partition);
      metrics.recordProduceError(p.topic, err);
      return { ...base, ...errorResult(err), baseOffset: "-1", logStartOffset: "-1" };
    }
  }

  async function produce(request: ProduceRequest__Output) {
    checkCount(request.partitions.length, "partitions");
    const work = request.partitions.map((p) => producePartition(p, request.acks));
    if (request.acks === ACKS_NONE) {
      // acks=0: the producer does not wait; failures only show in logs and metrics.
      void Promise.all(work);
      return {
        partitions: request.partitions.map((p) => ({
          topic: p.topic,
          partition: p.partition,
          errorCode: NO_ERROR,
          baseOffset: "-1",
          logStartOffset: "-1",
        })),
      };
    }
    return { partitions: await Promise.all(work) };
  }

  async function readPartition(
    fp: FetchRequest__Output["partitions"][number],
    maxBytes: number,
  ): Promise<{ result: FetchPartitionResult; part?: Partition; offset: number }> {
    const base = { topic: fp.topic, partition: fp.partition };
    let offset = -1;
    try {
      checkTopicPartition(fp.topic, fp.partition);
      offset = parseInt64(fp.fetchOffset, "fetch_offset");
      const part = replicas.partitionFor(fp.topic, fp.partition, true);
      part.checkEpoch(fp.currentLeaderEpoch ?? -1);
      const r = await part.log.read(offset, maxBytes);
      return {
        part,
        offset,
        result: {
          ...base,
          errorCode: NO_ERROR,
          highWatermark: String(r.highWatermark),
          logStartOffset: String(r.logStartOffset),
          logEndOffset: String(r.logEndOffset),
          records: r.bytes,
          nextOffset: String(r.nextOffset),
        },
      };
    } catch (err) {
      logUnexpected(err, fp.topic, fp.partition);
      return {
        offset,
        result: {
          ...base,
          ...errorResult(err),
          highWatermark: "-1",
          logStartOffset: "-1",
          logEndOffset: "-1",
          records: Buffer.alloc(0),
          nextOffset: String(offset),
        },
      };
    }
  }

  async function fetchOnce(request: FetchRequest__Output) {
    const total = limit(request.maxBytes, FETCH_MAX_BYTES_DEFAULT, 1, FETCH_MAX_BYTES_DEFAULT);
    let budget = total;
    const out = [];
    for (const fp of request.partitions) {
      const partMax = limit(
        fp.partitionMaxBytes,
        FETCH_PARTITION_MAX_BYTES_DEFAULT,
        1,
        FETCH_MAX_BYTES_DEFAULT,
      );
      // Once the budget is spent the rest get no bytes (but still their offsets and errors).
      const r = await readPartition(fp, budget > 0 ? Math.min(partMax, budget) : 0);
      if (budget <= 0) r.result.records = Buffer.alloc(0);
      budget -= (r.result.records as Buffer).length;
      out.push(r);
    }
    return out;
  }

  return {
    Produce: async (request) => produce(request),

    Fetch: async (request, _call, ctx) => {
      checkCount(request.partitions.length, "partitions");
      const minBytes = Math.max(request.minBytes, 0);
      const deadline = Date.now() + Math.min(Math.max(request.maxWaitMs, 0), FETCH_MAX_WAIT_MS_MAX);
      for (;;) {
        const results = await fetchOnce(request);
        const bytes = results.reduce((n, r) => n + (r.result.records as Buffer).length, 0);
        const failed = results.some((r) => r.result.errorCode !== 0);
        const wait = deadline - Date.now();
        if (bytes >= Math.max(minBytes, 1) || failed || wait <= 0 || ctx.signal.aborted) {
          metrics.recordFetch(results.map((r) => r.result));
          return { partitions: results.map((r) => r.result) };
        }
        // Long poll: park until any partition's high watermark moves past what we read; then
        // release the other partitions' waiters at once rather than at their timeout.
        const woken = new AbortController();
        const signal = AbortSignal.any([ctx.signal, woken.signal]);
        await Promise.race(results.map((r) => r.part!.waitForData(r.offset, wait, signal)));
        woken.abort();
      }
    },

    Subscribe: (request, _call, send, ctx) =>
      subscribe(request, send, ctx.signal, replicas, metrics),

    ListOffsets: async (request) => {
      checkCount(request.partitions.length, "partitions");
      const partitions = await Promise.all(
        request.partitions.map(async (lp) => {
          const base = { topic: lp.topic, partition: lp.partition };
          try {
            checkTopicPartition(lp.topic, lp.partition);
            const ts = parseInt64(lp.timestamp, "timestamp");
            const part = replicas.partitionFor(lp.topic, lp.partition, true);
            const log = part.log;
            if (ts === EARLIEST_TIMESTAMP)
              return {
                ...base,
                errorCode: NO_ERROR,
                offset: String(log.logStartOffset),
                timestamp: "-1",
                leaderEpoch: part.leaderEpoch,
              };
            if (ts === LATEST_TIMESTAMP)
              return {
                ...base,
                errorCode: NO_ERROR,
                offset: String(log.highWatermark),
                timestamp: "-1",
                leaderEpoch: part.leaderEpoch,
              };
            if (ts < 0)
              throw new SamsaError(
                ErrorCode.INVALID_REQUEST,
                `timestamp ${ts} is neither -2, -1 nor a time`,
              );
            const found = await log.offsetForTimestamp(ts);
            return {
              ...base,
              errorCode: NO_ERROR,
              offset: String(found?.offset ?? -1),
              timestamp: String(found?.timestamp ?? -1),
              leaderEpoch: part.leaderEpoch,
            };
          } catch (err) {
            logUnexpected(err, lp.topic, lp.partition);
            return { ...base, ...errorResult(err), offset: "-1", timestamp: "-1", leaderEpoch: -1 };
          }
        }),
      );
      return { partitions };
    },

    Metadata: async (request) =>
      describeMetadata(deps.metadata, deps.clusterId, deps.controllerId(), request.topics),

    OffsetsForLeaderEpoch: async (request) => {
      checkCount(request.partitions.length, "partitions");
      return {
        partitions: request.partitions.map((q) => {
          const base = { topic: q.topic, partition: q.partition };
          try {
            checkTopicPartition(q.topic, q.partition);
            const part = replicas.partitionFor(q.topic, q.partition, true);
            part.checkEpoch(q.currentLeaderEpoch ?? -1);
            const r = part.log.endOffsetForEpoch(q.leaderEpoch);
            return {
              ...base,
              errorCode: NO_ERROR,
              leaderEpoch: r.epoch,
              endOffset: String(r.endOffset),
            };
          } catch (err) {
            return { ...base, ...errorResult(err), leaderEpoch: -1, endOffset: "-1" };
          }
        }),
      };
    },
  };
}

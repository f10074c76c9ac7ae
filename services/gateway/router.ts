/**
 * The routed BrokerService calls: Produce, Fetch and ListOffsets go partition by partition to
 * each partition's current leader (one call per leader, concurrently) and come back merged in
 * request order, with leader changes retried within the deadline (see `routing.ts`); Metadata is
 * answered from the gateway's own etcd mirror, exactly as a broker answers it. Requests are
 * checked as the broker checks them, so a bad request gets the same codes here as at a broker.
 */
import type { Deadline } from "../shared/retry.js";
import { FETCH_WAIT_MS_MAX, NO_OFFSET } from "../shared/protocol-limits.js";
import type { SamsaError } from "../shared/errors.js";
import type { EpochEndOffset__Output } from "../shared/generated/samsa/v1/EpochEndOffset.js";
import type { EpochQuery__Output } from "../shared/generated/samsa/v1/EpochQuery.js";
import type { OffsetsForLeaderEpochRequest__Output } from "../shared/generated/samsa/v1/OffsetsForLeaderEpochRequest.js";
import type { FetchPartition__Output } from "../shared/generated/samsa/v1/FetchPartition.js";
import type { FetchPartitionResult__Output } from "../shared/generated/samsa/v1/FetchPartitionResult.js";
import type { FetchRequest__Output } from "../shared/generated/samsa/v1/FetchRequest.js";
import type { FetchResponse__Output } from "../shared/generated/samsa/v1/FetchResponse.js";
import type { ListOffsetsPartition__Output } from "../shared/generated/samsa/v1/ListOffsetsPartition.js";
import type { ListOffsetsPartitionResult__Output } from "../shared/generated/samsa/v1/ListOffsetsPartitionResult.js";
import type { ListOffsetsRequest__Output } from "../shared/generated/samsa/v1/ListOffsetsRequest.js";
import type { MetadataResponse } from "../shared/generated/samsa/v1/MetadataResponse.js";
import type { PartitionRecords__Output } from "../shared/generated/samsa/v1/PartitionRecords.js";
import type { ProducePartitionResult__Output } from "../shared/generated/samsa/v1/ProducePartitionResult.js";
import type { ProduceRequest__Output } from "../shared/generated/samsa/v1/ProduceRequest.js";
import { unary } from "../shared/grpc/client.js";
import { toProtoErrorCode } from "../shared/grpc/errors.js";
import { describeMetadata } from "../shared/metadata/metadata-answer.js";
import { checkPartitionCount, checkTopicPartition, parseInt64 } from "../shared/request-parsing.js";
import type { BrokerTarget } from "./broker-pool.js";
import { ROUTE_TIMEOUT_MS_DEFAULT, type Routing, routePartitions } from "./routing.js";

/** A Fetch's time on top of its long-poll wait before the gateway gives up on the leader, ms. */
export const FETCH_CALL_MARGIN_MS = 5_000;
/** How long before the deadline a leader's long poll must end, so its answer arrives in time, ms. */
export const FETCH_ANSWER_SLACK_MS = 50;

/** The fields of a per-partition error result. */
function errorFields(err: SamsaError) {
  return { errorCode: toProtoErrorCode(err.code), errorMessage: err.message };
}

/** What a produce of some partitions needs besides the partitions. */
export interface ProduceOptions {
  readonly acks: ProduceRequest__Output["acks"];
  readonly timeoutMs: number;
  /** The RPC, for the retries metric (`Produce` or `Publish`). */
  readonly method: string;
}

export class Router {
  constructor(
    private readonly routing: Routing,
    private readonly clusterId: string,
  ) {}

  /** Produce: each partition's batches to its leader. */
  async produce(
    request: ProduceRequest__Output,
    deadline: Deadline,
    signal: AbortSignal,
  ): Promise<{ partitions: ProducePartitionResult__Output[] }> {
    checkPartitionCount(request.partitions.length);
    const options = { acks: request.acks, timeoutMs: request.timeoutMs, method: "Produce" };
    return { partitions: await this.produceParts(request.partitions, options, deadline, signal) };
  }

  /** Produces record batches to their partitions' leaders; one result per part, in order. */
  produceParts(
    parts: readonly PartitionRecords__Output[],
    options: ProduceOptions,
    deadline: Deadline,
    signal: AbortSignal,
  ): Promise<ProducePartitionResult__Output[]> {
    const { metrics } = this.routing.deps;
    return routePartitions(this.routing, {
      method: options.method,
      parts,
      deadline,
      signal,
      check: (p) => checkTopicPartition(p.topic, p.partition),
      send: async (target, some, d) => {
        const request = { partitions: some, acks: options.acks, timeoutMs: options.timeoutMs };
        const res = await unary(target.client, "Produce", request, {
          deadlineMs: d.requestMs(ROUTE_TIMEOUT_MS_DEFAULT),
          signal,
        });
        for (const p of some) metrics.recordBytes(p.topic, "in", p.records.length);
        return res.partitions;
      },
      failed: (p, err) => ({
        topic: p.topic,
        partition: p.partition,
        ...errorFields(err),
        baseOffset: "-1",
        logStartOffset: "-1",
      }),
    });
  }

  /**
   * Fetch: each partition from its leader. Every leader gets the request's long-poll wait; the
   * first leader that answers with data (or an error) ends the wait for the others, which are
   * then read again without waiting, so the answer comes as soon as any partition has data.
   * Each leader may return up to `max_bytes`.
   */
  async fetch(
    request: FetchRequest__Output,
    deadline: Deadline,
    signal: AbortSignal,
  ): Promise<FetchResponse__Output> {
    checkPartitionCount(request.partitions.length);
    const { metrics } = this.routing.deps;
    const waitMs = Math.min(Math.max(request.maxWaitMs, 0), FETCH_WAIT_MS_MAX);
    const minBytes = Math.max(request.minBytes, 1);
    // Aborted by the first answer that ends the long poll.
    const pollEnd = new AbortController();
    const call = async (target: BrokerTarget, some: FetchPartition__Output[], d: Deadline) => {
      const once = (maxWaitMs: number, s: AbortSignal) =>
        unary(
          target.client,
          "Fetch",
          { ...request, partitions: some, maxWaitMs },
          { deadlineMs: d.requestMs(maxWaitMs + FETCH_CALL_MARGIN_MS), signal: s },
        );
      if (pollEnd.signal.aborted) return once(0, signal);
      // The leader must answer (empty) before the deadline, not be cut off by it.
      const wait = Math.min(waitMs, Math.max(0, d.remainingMs() - FETCH_ANSWER_SLACK_MS));
      try {
        return await once(wait, AbortSignal.any([signal, pollEnd.signal]));
      } catch (err) {
        if (!pollEnd.signal.aborted || signal.aborted) throw err;
        return once(0, signal);
      }
    };
    const partitions = await routePartitions(this.routing, {
      method: "Fetch",
      parts: request.partitions,
      deadline,
      signal,
      check: (p) => {
        checkTopicPartition(p.topic, p.partition);
        parseInt64(p.fetchOffset, "fetch_offset");
      },
      send: async (target, some, d, attempt) => {
        // A retry is for partitions whose leader moved: they are read without waiting.
        if (attempt > 0) pollEnd.abort();
        const res = await call(target, some, d);
        const bytes = res.partitions.reduce((n, p) => n + p.records.length, 0);
        if (bytes >= minBytes || res.partitions.some((p) => p.errorCode !== 0)) pollEnd.abort();
        for (const p of res.partitions) metrics.recordBytes(p.topic, "out", p.records.length);
        return res.partitions;
      },
      failed: (p, err): FetchPartitionResult__Output => ({
        topic: p.topic,
        partition: p.partition,
        ...errorFields(err),
        highWatermark: "-1",
        logStartOffset: "-1",
        logEndOffset: "-1",
        records: Buffer.alloc(0),
        nextOffset: p.fetchOffset,
      }),
    });
    pollEnd.abort();
    return { partitions };
  }

  /** ListOffsets: each partition from its leader. */
  async listOffsets(
    request: ListOffsetsRequest__Output,
    deadline: Deadline,
    signal: AbortSignal,
  ): Promise<{ partitions: ListOffsetsPartitionResult__Output[] }> {
    checkPartitionCount(request.partitions.length);
    return { partitions: await this.listOffsetParts(request, deadline, signal, "ListOffsets") };
  }

  /** ListOffsets of some partitions (also how streams resolve their start). */
  listOffsetParts(
    request: ListOffsetsRequest__Output,
    deadline: Deadline,
    signal: AbortSignal,
    method: string,
  ): Promise<ListOffsetsPartitionResult__Output[]> {
    return routePartitions(this.routing, {
      method,
      parts: request.partitions,
      deadline,
      signal,
      // A negative timestamp other than -2 and -1 is the leader's to refuse, after it checked
      // the partition exists (the broker's order, so the codes match).
      check: (p: ListOffsetsPartition__Output) => {
        checkTopicPartition(p.topic, p.partition);
        parseInt64(p.timestamp, "timestamp");
      },
      send: async (target, some, d) => {
        const res = await unary(
          target.client,
          "ListOffsets",
          { partitions: some, isolationLevel: request.isolationLevel },
          { deadlineMs: d.requestMs(ROUTE_TIMEOUT_MS_DEFAULT), signal },
        );
        return res.partitions;
      },
      failed: (p, err) => ({
        topic: p.topic,
        partition: p.partition,
        ...errorFields(err),
        offset: "-1",
        timestamp: "-1",
        leaderEpoch: -1,
      }),
    });
  }

  /** OffsetsForLeaderEpoch: each partition from its leader (the leader's epoch cache answers). */
  async offsetsForLeaderEpoch(
    request: OffsetsForLeaderEpochRequest__Output,
    deadline: Deadline,
    signal: AbortSignal,
  ): Promise<{ partitions: EpochEndOffset__Output[] }> {
    checkPartitionCount(request.partitions.length);
    const partitions = await routePartitions(this.routing, {
      method: "OffsetsForLeaderEpoch",
      parts: request.partitions,
      deadline,
      signal,
      check: (p: EpochQuery__Output) => checkTopicPartition(p.topic, p.partition),
      send: async (target, some, d) => {
        const res = await unary(
          target.client,
          "OffsetsForLeaderEpoch",
          { partitions: some },
          { deadlineMs: d.requestMs(ROUTE_TIMEOUT_MS_DEFAULT), signal },
        );
        return res.partitions;
      },
      failed: (p, err) => ({
        topic: p.topic,
        partition: p.partition,
        ...errorFields(err),
        leaderEpoch: -1,
        endOffset: String(NO_OFFSET),
      }),
    });
    return { partitions };
  }

  /** Metadata: from the gateway's etcd mirror, as a broker answers it. */
  metadata(topics: readonly string[]): MetadataResponse {
    const { metadata } = this.routing.deps;
    const controllerId = (metadata.activeController()?.id ?? "").toString();
    return describeMetadata(metadata, this.clusterId, controllerId, topics);
  }
}

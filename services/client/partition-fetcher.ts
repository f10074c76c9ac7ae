/**
 * One partition's fetch loop for the {@link GroupConsumer}: long-polls the partition's leader
 * (Fetch, straight to the broker or through a gateway, whatever the {@link Cluster} was
 * bootstrapped from) from a position, decodes each answer into the records at or after the
 * position, and keeps at most {@link FETCH_BUFFERED_ANSWERS_MAX} answers waiting to be
 * processed: a partition whose records are not taken (paused, or a slow handler) stops fetching
 * by itself. An answer is kept as the bytes it came in: the loop reads only its batch headers
 * (for the next fetch's position) and fetches again at once; its records are checked and
 * decoded when {@link take} hands them out, whole batches of about
 * {@link TAKE_RECORDS_MIN} records at a time, so that they die young (a 4 MiB answer decoded at
 * once keeps some 40,000 record objects alive long enough to be promoted, which the garbage
 * collector pays for) and records dropped by a seek or a revocation are never decoded. NOT_LEADER and the other stale-metadata codes refresh the metadata and retry with
 * a backoff; OFFSET_OUT_OF_RANGE resets the position as `autoOffsetReset` says (or fails).
 * {@link seek} drops what was buffered and cancels a fetch in flight.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { IsolationLevel } from "../shared/generated/samsa/v1/IsolationLevel.js";
import { unary } from "../shared/grpc/client.js";
import { fromProtoErrorCode } from "../shared/grpc/errors.js";
import { FETCH_BYTES_MAX_DEFAULT } from "../shared/protocol-limits.js";
import {
  BATCH_HEADER_BYTES,
  batchSizeBytes,
  decodeBatch,
  LOG_OVERHEAD_BYTES,
  lastOffsetOf,
  readBatchHeader,
} from "../shared/record-batch/index.js";
import { backoffMs, sleep } from "../shared/retry.js";
import { listOffsets } from "./list-offsets.js";
import { type Cluster, needsMetadataRefresh } from "./metadata.js";
import { asSamsaError } from "./produce-job.js";
import type { ConsumerRecord } from "./records.js";

/** Fetch answers decoded and waiting per partition before its fetching pauses. */
export const FETCH_BUFFERED_ANSWERS_MAX = 2;
/** {@link PartitionFetcher.take} decodes whole batches until it has at least this many records. */
export const TAKE_RECORDS_MIN = 1_000;
/** Fetch's replica id for consumers. */
const CONSUMER_REPLICA_ID = -1;

/** How a {@link PartitionFetcher} fetches. */
export interface PartitionFetchSettings {
  readonly maxWaitMs: number;
  readonly minBytes: number;
  readonly partitionMaxBytes: number;
  readonly requestTimeoutMs: number;
  /** What to do when the position is outside the log. */
  readonly autoOffsetReset: "earliest" | "latest" | "none";
}

/** One fetch answer waiting to be handed out. */
interface Answer {
  readonly data: Buffer;
  /** Where the next batch to decode starts. */
  pos: number;
  /** Records before this offset (the start of the first batch) are skipped. */
  readonly from: number;
}

/** Reads one partition into a small buffer of fetch answers. */
export class PartitionFetcher {
  private readonly queue: Answer[] = [];
  private readonly stopped = new AbortController();
  /** Cancels the fetch in flight (a seek). */
  private current = new AbortController();
  private wakeLoop: (() => void) | undefined;
  private generation = 0;
  private attempt = 0;

  /**
   * @param position The first offset to read.
   * @param onData Called when records were buffered.
   * @param onError Called once with a non-retriable error; the loop then ends.
   * @param onReset Called when `autoOffsetReset` moved an out-of-range position to `offset`.
   */
  constructor(
    private readonly cluster: Cluster,
    readonly topic: string,
    readonly partition: number,
    private position: number,
    private readonly settings: PartitionFetchSettings,
    private readonly onData: () => void,
    private readonly onError: (err: SamsaError) => void,
    private readonly onReset: (offset: number) => void = () => undefined,
  ) {
    void this.loop();
  }

  /** Whether records are buffered. */
  get ready(): boolean {
    return this.queue.length > 0;
  }

  /** The next offset fetching will ask for. */
  get fetchPosition(): number {
    return this.position;
  }

  /**
   * The next buffered records (whole batches of the oldest answer, at least
   * {@link TAKE_RECORDS_MIN} records where it has them), or undefined. A batch that fails its
   * check (CORRUPT_MESSAGE) ends the fetcher through `onError`.
   */
  take(): ConsumerRecord[] | undefined {
    while (this.queue.length > 0) {
      const answer = this.queue[0]!;
      let records: ConsumerRecord[];
      try {
        records = this.decode(answer);
      } catch (err) {
        this.close();
        this.onError(asSamsaError(err));
        return undefined;
      }
      if (answer.pos >= answer.data.length) {
        this.queue.shift();
        this.wake();
      }
      if (records.length > 0) return records;
    }
    return undefined;
  }

  /** Reads from `offset` on: the buffer is dropped and a fetch in flight cancelled. */
  seek(offset: number): void {
    this.queue.length = 0;
    this.position = offset;
    this.generation++;
    this.current.abort();
    this.wake();
  }

  /** Stops fetching for good. */
  close(): void {
    this.stopped.abort();
    this.current.abort();
    this.queue.length = 0;
    this.wake();
  }

  private wake(): void {
    const w = this.wakeLoop;
    this.wakeLoop = undefined;
    w?.();
  }

  private async loop(): Promise<void> {
    while (!this.stopped.signal.aborted) {
      if (this.queue.length >= FETCH_BUFFERED_ANSWERS_MAX) {
        await new Promise<void>((resolve) => {
          this.wakeLoop = resolve;
        });
        continue;
      }
      try {
        await this.fetchOnce();
      } catch (err) {
        if (this.stopped.signal.aborted) return;
        const e = asSamsaError(err);
        if (this.current.signal.aborted) continue; // a seek cancelled the call
        if (!e.retriable) {
          this.onError(e);
          return;
        }
        if (needsMetadataRefresh(e.code)) this.cluster.invalidate(this.topic);
        await sleep(backoffMs(this.attempt++), this.stopped.signal);
      }
    }
  }

  private async fetchOnce(): Promise<void> {
    if (this.current.signal.aborted) this.current = new AbortController();
    const signal = AbortSignal.any([this.stopped.signal, this.current.signal]);
    const s = this.settings;
    const metadata = await this.cluster.topic(this.topic, { signal });
    const leader = this.cluster.leaderOf(metadata, this.partition);
    if (leader instanceof SamsaError) throw leader;
    const generation = this.generation;
    const response = await unary(
      this.cluster.client(leader.address),
      "Fetch",
      {
        partitions: [
          {
            topic: this.topic,
            partition: this.partition,
            fetchOffset: String(this.position),
            currentLeaderEpoch: leader.leaderEpoch,
            partitionMaxBytes: s.partitionMaxBytes,
          },
        ],
        maxWaitMs: s.maxWaitMs,
        minBytes: s.minBytes,
        maxBytes: FETCH_BYTES_MAX_DEFAULT,
        isolationLevel: IsolationLevel.ISOLATION_LEVEL_READ_COMMITTED,
        replicaId: CONSUMER_REPLICA_ID,
      },
      { deadlineMs: s.maxWaitMs + s.requestTimeoutMs, signal },
    );
    if (generation !== this.generation || this.stopped.signal.aborted) return;
    const result = response.partitions.find(
      (p) => p.topic === this.topic && p.partition === this.partition,
    );
    if (result === undefined)
      throw new SamsaError(ErrorCode.UNKNOWN, "fetch answer lacks the partition");
    const code = fromProtoErrorCode(result.errorCode);
    if (code === ErrorCode.OFFSET_OUT_OF_RANGE && s.autoOffsetReset !== "none") {
      const offsets = await listOffsets(
        this.cluster,
        this.topic,
        [this.partition],
        s.autoOffsetReset,
        {
          requestTimeoutMs: s.requestTimeoutMs,
          signal,
        },
      );
      const to = offsets.get(this.partition);
      if (generation === this.generation && to !== undefined) {
        this.queue.length = 0;
        this.position = to;
        this.onReset(to);
      }
      return;
    }
    if (code === ErrorCode.OFFSET_OUT_OF_RANGE) {
      throw new SamsaError(
        code,
        `${this.topic}-${this.partition}: offset ${this.position} is out of range and autoOffsetReset is none`,
        {
          metadata: {
            "samsa-topic": this.topic,
            "samsa-partition": String(this.partition),
            "samsa-offset": String(this.position),
          },
        },
      );
    }
    if (code !== ErrorCode.NONE) {
      throw new SamsaError(
        code,
        `${this.topic}-${this.partition}: ${result.errorMessage || ErrorCode[code]}`,
      );
    }
    this.attempt = 0;
    const data = result.records;
    if (data.length === 0) return;
    const from = this.position;
    this.position = this.nextPosition(data);
    this.queue.push({ data, pos: 0, from });
    this.onData();
  }

  /** The offset after the answer's last batch, from the batch headers alone. */
  private nextPosition(data: Buffer): number {
    let next = this.position;
    for (let pos = 0; pos < data.length; ) {
      const h = readBatchHeader(data, pos);
      const size = batchSizeBytes(h);
      if (h.batchLength < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES || pos + size > data.length) {
        throw new SamsaError(
          ErrorCode.CORRUPT_MESSAGE,
          `${this.topic}-${this.partition}: a batch at byte ${pos} of the fetch answer is truncated or too short`,
        );
      }
      next = Math.max(next, lastOffsetOf(h) + 1);
      pos += size;
    }
    return next;
  }

  /** Decodes whole batches of `answer` until {@link TAKE_RECORDS_MIN} records or its end. */
  private decode(answer: Answer): ConsumerRecord[] {
    const out: ConsumerRecord[] = [];
    const { topic, partition } = this;
    const { data, from } = answer;
    while (answer.pos < data.length && out.length < TAKE_RECORDS_MIN) {
      const batch = decodeBatch(data, answer.pos);
      answer.pos += batchSizeBytes(batch.header);
      for (const r of batch.records) {
        if (r.offset < from) continue;
        out.push({
          topic,
          partition,
          offset: r.offset,
          timestamp: r.timestamp,
          key: r.key,
          value: r.value,
          headers: r.headers,
        });
      }
    }
    return out;
  }
}

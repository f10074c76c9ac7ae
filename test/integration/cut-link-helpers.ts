/**
 * What the cut-link tests (replication-cut-link.test.ts) add to the replication oracle
 * (replication-helpers.ts): a local cluster whose brokers each run in a network namespace of a
 * {@link NetLab}, partition states as etcd holds them (the ISR a leader wrote, not a broker's
 * view of it), a leader's high watermark, a broker's counters from its `/metrics`, and a sender
 * pinned to one broker that keeps sending acks=all batches to it whatever the metadata says (to
 * ask a cut-off or deposed leader for acknowledgements).
 */
import { readFile } from "node:fs/promises";
import type { Etcd3 } from "etcd3";
import type {
  LocalCluster,
  LocalClusterOptions,
} from "../../services/local-cluster/local-cluster.js";
import { ErrorCode, SamsaError } from "../../services/shared/errors.js";
import { createEtcdClient } from "../../services/shared/etcd/client.js";
import {
  decodePartitionState,
  EtcdKeys,
  type PartitionState,
  toEtcdKeyValue,
} from "../../services/shared/etcd/keys.js";
import { unary } from "../../services/shared/grpc/client.js";
import { fromProtoErrorCode } from "../../services/shared/grpc/errors.js";
import { buildBatch } from "../../services/shared/record-batch/builder.js";
import type { NetLab } from "../support/netns.js";
import { waitFor } from "../support/wait-for.js";
import { type Clients, listOffset, startTestCluster } from "./cluster-helpers.js";
import type { Acked } from "./replication-helpers.js";

/** The launcher's `cluster.id` (the services' default). */
const CLUSTER_ID = "samsa";
/** The proto's ACKS_ALL. */
const ACKS_ALL = 3;
/** Deadline of one probe call (ListOffsets, `/metrics`, an etcd get), ms. */
const PROBE_DEADLINE_MS = 2_000;
/** Pause between polls of etcd, ms. */
const POLL_INTERVAL_MS = 100;
/** Records per batch a {@link PinnedSender} sends. */
const PINNED_BATCH_RECORDS = 3;
/** Pause after a failed pinned send before the next one, ms. */
const PINNED_RETRY_PAUSE_MS = 100;

/**
 * Starts a test cluster on `lab`: etcd and the controllers in the root namespace on the bridge
 * address, broker `i` inside member `i`'s namespace, bound to and advertising its address.
 */
export function startNetnsCluster(
  lab: NetLab,
  options: LocalClusterOptions = {},
): Promise<LocalCluster> {
  return startTestCluster({
    ...options,
    brokers: lab.members.length,
    host: lab.rootAddress,
    etcdHost: lab.rootAddress,
    brokerHosts: lab.members.map((m) => m.address),
    brokerCommandPrefixes: lab.members.map((m) => m.commandPrefix),
  });
}

/** Partition states read straight from etcd (`partitions/<topic>/<p>`). */
export class EtcdPartitions {
  private readonly client: Etcd3;
  private readonly keys = EtcdKeys.forCluster(CLUSTER_ID);

  constructor(endpoint: string) {
    this.client = createEtcdClient({ endpoints: [endpoint] });
  }

  /** Every partition of `topic` by number. */
  async states(topic: string): Promise<Map<number, PartitionState>> {
    const res = await this.client
      .getAll()
      .prefix(this.keys.partitionsPrefix(topic))
      .options({ deadline: Date.now() + PROBE_DEADLINE_MS })
      .exec();
    const out = new Map<number, PartitionState>();
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      out.set(
        Number(key.slice(key.lastIndexOf("/") + 1)),
        decodePartitionState(toEtcdKeyValue(kv)),
      );
    }
    return out;
  }

  /** Waits until partition `partition` of `topic` satisfies `ok` in etcd; returns its state. */
  async waitFor(
    topic: string,
    partition: number,
    ok: (s: PartitionState) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<PartitionState> {
    let last: PartitionState | undefined;
    try {
      return await waitFor(
        async () => {
          last = (await this.states(topic)).get(partition);
          return last !== undefined && ok(last) ? last : undefined;
        },
        { timeoutMs, intervalMs: POLL_INTERVAL_MS, message: what },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; etcd had ${JSON.stringify(last)}`, {
        cause: err,
      });
    }
  }

  close(): void {
    this.client.close();
  }
}

/** The high watermark `address` answers for a partition it leads (ListOffsets latest). */
export async function highWatermark(
  clients: Clients,
  address: string,
  topic: string,
  partition: number,
): Promise<number> {
  const lo = await listOffset(clients.broker(address), topic, partition, -1, PROBE_DEADLINE_MS);
  if (lo.errorCode !== 0) {
    throw new SamsaError(fromProtoErrorCode(lo.errorCode), `ListOffsets: ${lo.errorMessage}`);
  }
  return Number(lo.offset);
}

/**
 * The sum of the samples of counter `name` on `host:port/metrics`: those labelled
 * `topic="<topic>"` when `topic` is given, else all of them.
 */
export async function counterSum(
  host: string,
  port: number,
  name: string,
  topic?: string,
): Promise<number> {
  const res = await fetch(`http://${host}:${port}/metrics`, {
    signal: AbortSignal.timeout(PROBE_DEADLINE_MS),
  });
  const text = await res.text();
  let sum = 0;
  for (const line of text.split("\n")) {
    const labels = line.startsWith(`${name}{`)
      ? line.slice(name.length, line.indexOf("}") + 1)
      : "";
    if (!line.startsWith(`${name} `) && labels === "") continue;
    if (topic !== undefined && !labels.includes(`topic="${topic}"`)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** A follower's "truncating by leader epoch" log entry (services/broker/partition.ts). */
export interface TruncationEntry {
  readonly topic: string;
  readonly partition: number;
  /** The follower's log end offset before the truncation. */
  readonly logEndOffset: number;
  /** Where it truncated to. */
  readonly truncateTo: number;
}

/** The truncations of `topic`-`partition` a broker logged in `logFile`, oldest first. */
export async function loggedTruncations(
  logFile: string,
  topic: string,
  partition: number,
): Promise<TruncationEntry[]> {
  const text = await readFile(logFile, "utf8");
  const out: TruncationEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.includes('"message":"truncating by leader epoch"')) continue;
    const e = JSON.parse(line) as TruncationEntry;
    if (e.topic === topic && e.partition === partition) out.push(e);
  }
  return out;
}

/**
 * Sends acks=all batches of unique values (`<prefix>-<n>`) to one partition on one broker,
 * whatever the metadata says, one at a time, until stopped or after `sendsMax` sends; remembers
 * what was acknowledged and why the other sends failed.
 */
export class PinnedSender {
  /** Acknowledged records, in send order. */
  readonly acked: Acked[] = [];
  /** Failed sends by error code name. */
  readonly failures = new Map<string, number>();
  /** Every value sent (acknowledged or not). */
  readonly sent: string[] = [];
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly clients: Clients,
    private readonly address: string,
    private readonly topic: string,
    private readonly partition: number,
    private readonly prefix: string,
    /** The acks=all wait each send asks for, ms. */
    private readonly timeoutMs: number,
    /** Most sends (bounds the loop). */
    private readonly sendsMax: number,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  /** Stops sending; resolves once the last send ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Failed sends with `code` so far. */
  failed(code: ErrorCode): number {
    return this.failures.get(ErrorCode[code]) ?? 0;
  }

  private async run(): Promise<void> {
    for (let i = 0; i < this.sendsMax && !this.stopped; i++) {
      const n = this.sent.length;
      const values = Array.from(
        { length: PINNED_BATCH_RECORDS },
        (_, k) => `${this.prefix}-${n + k}`,
      );
      this.sent.push(...values);
      try {
        const base = await this.send(values);
        for (const [k, value] of values.entries()) this.acked.push({ offset: base + k, value });
      } catch (err) {
        const code = err instanceof SamsaError ? ErrorCode[err.code] : "OTHER";
        this.failures.set(code, (this.failures.get(code) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, PINNED_RETRY_PAUSE_MS));
      }
    }
  }

  private async send(values: string[]): Promise<number> {
    const records = buildBatch(values.map((v) => ({ key: null, value: Buffer.from(v) })));
    const res = await unary(
      this.clients.broker(this.address),
      "Produce",
      {
        partitions: [{ topic: this.topic, partition: this.partition, records }],
        acks: ACKS_ALL,
        timeoutMs: this.timeoutMs,
      },
      { deadlineMs: this.timeoutMs + PROBE_DEADLINE_MS },
    );
    const r = res.partitions[0]!;
    const code = fromProtoErrorCode(r.errorCode);
    if (code !== ErrorCode.NONE) throw new SamsaError(code, r.errorMessage);
    return Number(r.baseOffset);
  }
}

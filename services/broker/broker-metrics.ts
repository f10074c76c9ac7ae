/**
 * The broker's Prometheus metrics (prefix `samsa_`): bytes and messages in and out per topic,
 * produce errors by code, hosted partitions and leaders, log size and end offsets per partition.
 * Gauges about partitions are computed at scrape time from the replica manager, so they are never
 * stale and cost nothing on the hot path.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { ReplicaManager } from "./replica-manager.js";

export class BrokerMetrics {
  private readonly bytesIn: Counter<"topic">;
  private readonly messagesIn: Counter<"topic">;
  private readonly bytesOut: Counter<"topic">;
  private readonly produceErrors: Counter<"topic" | "code">;

  constructor(
    registry: Registry,
    replicas: () => ReplicaManager | undefined,
    logDirs: () => ReadonlyArray<{ logDir: string; offline: boolean }> = () => [],
  ) {
    new Gauge({
      name: "samsa_log_dir_offline",
      help: "1 for a log dir taken offline by a failed write (disk full, I/O error), else 0.",
      labelNames: ["dir"],
      registers: [registry],
      collect() {
        for (const d of logDirs()) this.set({ dir: d.logDir }, d.offline ? 1 : 0);
      },
    });
    this.bytesIn = new Counter({
      name: "samsa_broker_bytes_in_total",
      help: "Record batch bytes appended, by topic.",
      labelNames: ["topic"],
      registers: [registry],
    });
    this.messagesIn = new Counter({
      name: "samsa_broker_messages_in_total",
      help: "Records appended, by topic.",
      labelNames: ["topic"],
      registers: [registry],
    });
    this.bytesOut = new Counter({
      name: "samsa_broker_bytes_out_total",
      help: "Record batch bytes served to consumers, by topic.",
      labelNames: ["topic"],
      registers: [registry],
    });
    this.produceErrors = new Counter({
      name: "samsa_broker_produce_errors_total",
      help: "Failed partition appends, by topic and error code.",
      labelNames: ["topic", "code"],
      registers: [registry],
    });
    new Gauge({
      name: "samsa_broker_partitions",
      help: "Partitions hosted by this broker.",
      registers: [registry],
      collect() {
        this.set(replicas()?.hosted().length ?? 0);
      },
    });
    new Gauge({
      name: "samsa_broker_leader_partitions",
      help: "Partitions this broker leads.",
      registers: [registry],
      collect() {
        this.set(
          replicas()
            ?.hosted()
            .filter((p) => p.isLeader).length ?? 0,
        );
      },
    });
    const perPartition = (
      name: string,
      help: string,
      value: (p: ReturnType<ReplicaManager["hosted"]>[number]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["topic", "partition"],
        registers: [registry],
        collect() {
          this.reset();
          for (const p of replicas()?.hosted() ?? [])
            this.set({ topic: p.topic, partition: String(p.partition) }, value(p));
        },
      });
    perPartition(
      "samsa_log_size_bytes",
      "Bytes of all segments of a partition's log.",
      (p) => p.log.sizeBytes,
    );
    perPartition(
      "samsa_log_end_offset",
      "Log end offset of a partition.",
      (p) => p.log.logEndOffset,
    );
    perPartition(
      "samsa_log_start_offset",
      "Log start offset of a partition.",
      (p) => p.log.logStartOffset,
    );
    perPartition(
      "samsa_log_high_watermark",
      "High watermark of a partition.",
      (p) => p.log.highWatermark,
    );
    perPartition("samsa_log_segments", "Segments of a partition's log.", (p) => p.log.segmentCount);
    perPartition(
      "samsa_producer_ids_active",
      "Idempotent producer ids with state in a partition (docs/idempotence.md).",
      (p) => p.log.producerStateStats().activeProducers,
    );
    perPartition(
      "samsa_producer_duplicate_batches",
      "Re-sent idempotent batches answered with their first offsets, not written again, since the log was opened.",
      (p) => p.log.producerStateStats().duplicates,
    );
    perPartition(
      "samsa_producer_fenced_epoch_batches",
      "Idempotent batches refused with INVALID_PRODUCER_EPOCH (a zombie fenced) since the log was opened.",
      (p) => p.log.producerStateStats().fencedEpochs,
    );
  }

  recordProduce(topic: string, bytes: number, records: number): void {
    this.bytesIn.inc({ topic }, bytes);
    this.messagesIn.inc({ topic }, records);
  }

  recordProduceError(topic: string, err: unknown): void {
    const code = err instanceof SamsaError ? err.codeName : ErrorCode[ErrorCode.UNKNOWN];
    this.produceErrors.inc({ topic, code });
  }

  recordBytesOut(topic: string, bytes: number): void {
    if (bytes > 0) this.bytesOut.inc({ topic }, bytes);
  }

  recordFetch(
    results: ReadonlyArray<{ topic?: string; records?: Buffer | Uint8Array | string }>,
  ): void {
    for (const r of results) {
      if (r.topic && r.records && typeof r.records !== "string")
        this.recordBytesOut(r.topic, r.records.length);
    }
  }
}

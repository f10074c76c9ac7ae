/**
 * The gateway's own Prometheus metrics (prefix `samsa_`). Requests per RPC, their codes and
 * latencies come from the shared server wrapper (`samsa_rpc_*`); these add what only the gateway
 * knows: how often it retried a routed call, why, and how many record bytes it routed per topic.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import { ErrorCode } from "../shared/errors.js";

/** Name of the retries counter. */
export const GATEWAY_RETRIES_METRIC = "samsa_gateway_retries_total";
/** Name of the routed bytes counter. */
export const GATEWAY_ROUTED_BYTES_METRIC = "samsa_gateway_routed_bytes_total";

/** Name of the counter of appends Publish calls were coalesced into. */
export const GATEWAY_PUBLISH_APPENDS_METRIC = "samsa_gateway_publish_appends_total";
/** Name of the counter of Publish calls' partition shares those appends carried. */
export const GATEWAY_PUBLISH_SHARES_METRIC = "samsa_gateway_publish_shares_total";

/** Name of the gauge of producer ids the gateway holds for Publish (docs/idempotence.md). */
export const GATEWAY_PRODUCER_IDS_METRIC = "samsa_gateway_producer_ids_active";

/** Direction of routed bytes: `in` = to brokers (produce), `out` = to clients (fetch, streams). */
export type RoutedDirection = "in" | "out";

export class GatewayMetrics {
  private readonly retries: Counter<"method" | "code">;
  private readonly routedBytes: Counter<"topic" | "direction">;
  private readonly publishAppends: Counter;
  private readonly publishShares: Counter;

  constructor(private readonly registry: Registry) {
    this.retries = new Counter({
      name: GATEWAY_RETRIES_METRIC,
      help: "Routed calls retried by the gateway, by RPC method and the error code that caused it.",
      labelNames: ["method", "code"],
      registers: [registry],
    });
    this.routedBytes = new Counter({
      name: GATEWAY_ROUTED_BYTES_METRIC,
      help: "Record batch bytes routed, by topic and direction (in = produced, out = served).",
      labelNames: ["topic", "direction"],
      registers: [registry],
    });
    this.publishAppends = new Counter({
      name: GATEWAY_PUBLISH_APPENDS_METRIC,
      help: "Appends (one partition each) that Publish calls were coalesced into.",
      registers: [registry],
    });
    this.publishShares = new Counter({
      name: GATEWAY_PUBLISH_SHARES_METRIC,
      help: "Publish calls' partition shares carried by those appends (shares / appends = coalescing).",
      registers: [registry],
    });
  }

  /** Exports `activeProducerIds()` (read when scraped) as {@link GATEWAY_PRODUCER_IDS_METRIC}. */
  watchProducerIds(activeProducerIds: () => number): void {
    new Gauge({
      name: GATEWAY_PRODUCER_IDS_METRIC,
      help: "Producer ids the gateway holds for its idempotent Publish appends (one per partition published to).",
      registers: [this.registry],
      collect() {
        this.set(activeProducerIds());
      },
    });
  }

  /** Counts one coalesced append carrying `shares` callers' records. */
  recordPublishAppend(shares: number): void {
    this.publishAppends.inc();
    this.publishShares.inc(shares);
  }

  /** Counts one retry of `method` caused by `code`. */
  recordRetry(method: string, code: ErrorCode): void {
    this.retries.inc({ method, code: ErrorCode[code] ?? ErrorCode[ErrorCode.UNKNOWN] });
  }

  /** Counts record bytes routed for `topic`. */
  recordBytes(topic: string, direction: RoutedDirection, bytes: number): void {
    if (bytes > 0) this.routedBytes.inc({ topic, direction }, bytes);
  }
}

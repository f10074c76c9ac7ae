/**
 * The load bounds of one gRPC server (issue 12, "Bounded under load"): how many client
 * connections it holds, how many calls each may have open, and how many unary calls are in
 * flight per connection and in all. Past the connection bound a new connection is closed at
 * accept; past an in-flight bound a call is answered at once, its handler not run, with TOO_MANY_REQUESTS
 * (gRPC RESOURCE_EXHAUSTED, retriable). Each refusal is logged and counted by reason.
 */
import type * as http2 from "node:http2";
import type { Socket } from "node:net";
import { Counter, Gauge, type Registry } from "prom-client";
import {
  SERVER_CONCURRENT_STREAMS_PER_CONNECTION_MAX_DEFAULT,
  SERVER_CONNECTIONS_MAX_DEFAULT,
  SERVER_INFLIGHT_REQUESTS_MAX_DEFAULT,
  SERVER_INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT,
} from "../config/schema.js";
import type { ServerLimits } from "../config/services.js";
import { assert, ErrorCode, SamsaError } from "../errors.js";
import type { Logger } from "../logger.js";

export type { ServerLimits } from "../config/services.js";

/** Gauge: client connections the process's gRPC servers hold now. */
export const SERVER_CONNECTIONS_METRIC = "samsa_server_connections";
/** Counter: connections and calls refused by a bound, by `reason` ({@link RefusalReason}). */
export const SERVER_REFUSED_METRIC = "samsa_server_refused_total";

/**
 * Why a server refused: `connections` (a connection past `max.connections`), `inflight_connection`
 * (a call past `max.inflight.requests.per.connection`), `inflight_server` (a call past
 * `max.inflight.requests`).
 */
export type RefusalReason = "connections" | "inflight_connection" | "inflight_server";

/** The defaults of every bound (the config keys' defaults). */
export const SERVER_LIMITS_DEFAULT: ServerLimits = Object.freeze({
  connectionsMax: SERVER_CONNECTIONS_MAX_DEFAULT,
  concurrentStreamsPerConnectionMax: SERVER_CONCURRENT_STREAMS_PER_CONNECTION_MAX_DEFAULT,
  inflightRequestsPerConnectionMax: SERVER_INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT,
  inflightRequestsMax: SERVER_INFLIGHT_REQUESTS_MAX_DEFAULT,
});

/** Checks every bound is a positive integer; returns them frozen. */
export function validateServerLimits(limits: ServerLimits): ServerLimits {
  for (const [name, value] of Object.entries(limits)) {
    assert(Number.isSafeInteger(value) && value > 0, `server limit ${name} > 0: ${value}`);
  }
  return Object.freeze({ ...limits });
}

/** What {@link InflightLimiter.acquire} gives: a release to call once, or the bound that refused. */
export type Admission =
  | { readonly admitted: true; readonly release: () => void }
  | { readonly admitted: false; readonly reason: "inflight_connection" | "inflight_server" };

/**
 * Counts the unary calls in flight per connection and in all, and admits a new one only below
 * both bounds. Pure bookkeeping (no I/O), so that it is unit-tested on its own.
 */
export class InflightLimiter {
  private readonly perConnection = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly perConnectionMax: number,
    private readonly serverMax: number,
  ) {
    assert(Number.isSafeInteger(perConnectionMax) && perConnectionMax > 0, "per-connection > 0");
    assert(Number.isSafeInteger(serverMax) && serverMax > 0, "per-server > 0");
  }

  /** Calls in flight on `connection` (0 for an unknown one). */
  inflight(connection?: string): number {
    return connection === undefined ? this.total : (this.perConnection.get(connection) ?? 0);
  }

  /** Admits a call of `connection` if both bounds allow; its release is idempotent. */
  acquire(connection: string): Admission {
    const mine = this.perConnection.get(connection) ?? 0;
    if (mine >= this.perConnectionMax) return { admitted: false, reason: "inflight_connection" };
    if (this.total >= this.serverMax) return { admitted: false, reason: "inflight_server" };
    this.perConnection.set(connection, mine + 1);
    this.total += 1;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.total -= 1;
      const left = (this.perConnection.get(connection) ?? 0) - 1;
      assert(left >= 0 && this.total >= 0, "in-flight counts stay ≥ 0");
      if (left === 0) this.perConnection.delete(connection);
      else this.perConnection.set(connection, left);
    };
    return { admitted: true, release };
  }
}

/** The error a refused call gets, naming the bound (also as `samsa-limit` metadata). */
export function tooManyRequests(reason: "inflight_connection" | "inflight_server", max: number) {
  const scope = reason === "inflight_connection" ? "on this connection" : "on this server";
  return new SamsaError(
    ErrorCode.TOO_MANY_REQUESTS,
    `${max} requests are already in flight ${scope}; retry after a backoff`,
    { metadata: { "samsa-limit": reason } },
  );
}

/** The limit metrics, created once per registry (several servers may share one). */
export interface LimitMetrics {
  readonly connections: Gauge;
  readonly refused: Counter<"reason">;
}

/** Gets or registers the limit metrics on `registry`. */
export function limitMetrics(registry: Registry): LimitMetrics {
  const connections =
    (registry.getSingleMetric(SERVER_CONNECTIONS_METRIC) as Gauge | undefined) ??
    new Gauge({
      name: SERVER_CONNECTIONS_METRIC,
      help: "Client connections the gRPC servers of this process hold now",
      registers: [registry],
    });
  const refused =
    (registry.getSingleMetric(SERVER_REFUSED_METRIC) as Counter<"reason"> | undefined) ??
    new Counter({
      name: SERVER_REFUSED_METRIC,
      help: "Connections and calls refused by a server bound, by reason (connections, inflight_connection, inflight_server)",
      labelNames: ["reason"] as const,
      registers: [registry],
    });
  return { connections, refused };
}

/**
 * Bounds the connections of one HTTP/2 server at `max` with Node's own `net.Server.maxConnections`
 * (a connection past it is destroyed at accept, before any TLS or HTTP/2 work, and the server
 * emits `drop`), and counts the open ones on the gauge.
 */
export function limitConnections(
  http2Server: http2.Http2Server,
  max: number,
  metrics: LimitMetrics,
  logger: Logger,
): void {
  http2Server.maxConnections = max;
  http2Server.on("connection", (socket: Socket) => {
    metrics.connections.inc();
    socket.once("close", () => metrics.connections.dec());
  });
  http2Server.on("drop", (data?: { remoteAddress?: string; remotePort?: number }) => {
    metrics.refused.inc({ reason: "connections" });
    logger.warn("connection refused: max.connections reached", {
      max,
      remote: `${data?.remoteAddress ?? "?"}:${data?.remotePort ?? "?"}`,
    });
  });
}

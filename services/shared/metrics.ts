/**
 * Prometheus metrics and health over plain HTTP: every service creates one registry with
 * {@link createRegistry} (default process metrics, `samsa_` prefix, `service`/`id` labels),
 * registers its own metrics on it, and serves it with {@link startMetricsServer}:
 * `GET /metrics` (text exposition format) and `GET /healthz` (200 or 503 JSON).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, type Histogram, Registry } from "prom-client";

/** Prefix of every Samsa metric name, default process metrics included. */
export const METRIC_PREFIX = "samsa_";
/** Path of the Prometheus scrape endpoint. */
export const METRICS_PATH = "/metrics";
/** Path of the health endpoint. */
export const HEALTH_PATH = "/healthz";
/** Default bind address of the metrics server. */
export const METRICS_HOST_DEFAULT = "0.0.0.0";

/** What a health check answers; `detail` is copied into the JSON body. */
export interface HealthStatus {
  readonly ok: boolean;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** TCP port; 0 = ephemeral (read the bound one from {@link MetricsServer.port}). */
  port: number;
  /** Bind address. Default "0.0.0.0". */
  host?: string;
  /** The registry served on `/metrics`. */
  registry: Registry;
  /** Called on every `/healthz`; 200 when ok, 503 otherwise. Default: always ok. */
  health?: () => HealthStatus | Promise<HealthStatus>;
}

/** A running metrics server. */
export interface MetricsServer {
  /** The port actually bound. */
  readonly port: number;
  /** The address bound. */
  readonly host: string;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Label values of a metric with label names `L`. */
export type Labels<L extends string> = Partial<Record<L, string | number>>;

/**
 * A registry with Node's default process metrics (prefixed `samsa_`) and default labels
 * `service` plus `labels` (e.g. `{ id: "1" }`) on every metric it exports.
 */
export function createRegistry(
  service: string,
  labels: Readonly<Record<string, string>> = {},
): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service, ...labels });
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  return registry;
}

/** Starts the HTTP server; resolves once it listens (rejects e.g. on EADDRINUSE). */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? METRICS_HOST_DEFAULT;
  const server = createServer((req, res) => {
    handle(options, req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, "text/plain; charset=utf-8", `${String(err)}\n`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    host,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function handle(
  options: MetricsServerOptions,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== METRICS_PATH && path !== HEALTH_PATH) {
    send(res, 404, "text/plain; charset=utf-8", "not found\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    send(res, 405, "text/plain; charset=utf-8", "method not allowed\n");
    return;
  }
  if (path === METRICS_PATH) {
    const body = await options.registry.metrics();
    send(res, 200, options.registry.contentType, body);
    return;
  }
  let status: HealthStatus;
  try {
    status = options.health ? await options.health() : { ok: true };
  } catch (err) {
    status = { ok: false, detail: { error: String(err) } };
  }
  const body = JSON.stringify({ ok: status.ok, ...(status.detail && { detail: status.detail }) });
  send(res, status.ok ? 200 : 503, "application/json", `${body}\n`);
}

function send(res: ServerResponse, code: number, contentType: string, body: string): void {
  res.writeHead(code, {
    "Content-Type": contentType,
    "Content-Length": Buffer.byteLength(body),
    "Cache-Control": "no-store",
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

/**
 * Runs `fn` and observes its duration in seconds on `histogram` (with `labels`), whether it
 * returns or throws.
 */
export async function timed<T, L extends string>(
  histogram: Histogram<L>,
  labels: Labels<L>,
  fn: () => T | Promise<T>,
): Promise<T> {
  const end = histogram.startTimer(labels);
  try {
    return await fn();
  } finally {
    end();
  }
}

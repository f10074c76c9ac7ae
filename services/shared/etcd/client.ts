/**
 * The one place an etcd client is built, with every option explicit: call deadlines,
 * gRPC keepalive and reconnect backoff, retry and circuit-breaker policies, and an optional
 * latency observer feeding the `samsa_etcd_request_duration_seconds` histogram.
 *
 * Note: etcd3 1.1.2 declares a `dialTimeout` option but never reads it, and gRPC calls that are
 * not `waitForReady` fail fast while the channel is down. So the connect timeout is enforced by
 * {@link connectEtcd}, which probes etcd under that deadline, and every unary call carries a
 * deadline of its own.
 */
import { type InterceptingCall as Call, InterceptingCall, type Interceptor } from "@grpc/grpc-js";
import {
  circuitBreaker,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleWhen,
  type IBackoff,
  retry,
} from "cockatiel";
import {
  type CallContext,
  ClientRuntimeError,
  Etcd3,
  GRPCGenericError,
  type IOptions,
  isRecoverableError,
} from "etcd3";
import { Histogram, type Registry } from "prom-client";
import { ETCD_CONNECTION_TIMEOUT_MS_DEFAULT } from "../config/schema.js";
import { ErrorCode, SamsaError } from "../errors.js";

/** Default deadline of one unary etcd call (get, put, txn, lease grant...), ms. */
export const etcdCallTimeoutMsDefault = 5_000;
/** gRPC keepalive ping interval on etcd channels, ms (etcd refuses pings under 5 s apart). */
export const etcdKeepaliveTimeMs = 10_000;
/** A keepalive ping unanswered this long declares the connection dead (finds a hung etcd), ms. */
export const etcdKeepaliveTimeoutMs = 5_000;
/** Smallest gRPC reconnect backoff, ms. */
export const etcdReconnectBackoffMsMin = 100;
/** Largest gRPC reconnect backoff, ms: a restarted etcd is found again quickly. */
export const etcdReconnectBackoffMsMax = 2_000;
/** Extra attempts of a call that failed with a recoverable error (on another endpoint if any). */
export const etcdCallRetriesMax = 2;
/** Consecutive recoverable failures after which an endpoint is skipped for a while. */
export const etcdBreakerFailuresMax = 5;
/** How long a failing endpoint is skipped, ms (etcd3's default is 5 s). */
export const etcdBreakerOpenMs = 1_000;
/** Name of the etcd latency histogram. */
export const etcdLatencyMetricName = "samsa_etcd_request_duration_seconds";

/** One finished unary etcd call, as seen by {@link EtcdClientOptions.onCall}. */
export interface EtcdCallSample {
  /** etcd gRPC service, e.g. `KV`, `Lease`. */
  readonly service: string;
  /** Method, e.g. `range`, `txn`, `leaseGrant`. */
  readonly method: string;
  readonly seconds: number;
  /** gRPC status code (0 = OK). */
  readonly code: number;
}

/** Options of {@link createEtcdClient}. */
export interface EtcdClientOptions {
  /** Client URLs, e.g. `["http://127.0.0.1:2379"]` (`etcd.endpoints`). */
  endpoints: readonly string[];
  /** Used by {@link connectEtcd}. Default {@link ETCD_CONNECTION_TIMEOUT_MS_DEFAULT} (ms). */
  connectTimeoutMs?: number;
  /** Deadline of every unary call. Default {@link etcdCallTimeoutMsDefault} (ms). */
  callTimeoutMs?: number;
  /** Registers (or reuses) the {@link etcdLatencyMetricName} histogram here. */
  registry?: Registry;
  /** Called after every unary call (streams are not timed). Must not throw. */
  onCall?: (sample: EtcdCallSample) => void;
}

/** Gets or registers the etcd latency histogram in `registry` (labels: method, result). */
export function etcdLatencyHistogram(registry: Registry): Histogram<"method" | "result"> {
  const existing = registry.getSingleMetric(etcdLatencyMetricName);
  if (existing) return existing as Histogram<"method" | "result">;
  return new Histogram({
    name: etcdLatencyMetricName,
    help: "Latency of unary etcd calls, by method (Service.method) and result (ok|error).",
    labelNames: ["method", "result"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
}

function timingInterceptor(
  context: CallContext,
  observe: (sample: EtcdCallSample) => void,
): Interceptor {
  return (options, nextCall): Call => {
    const started = process.hrtime.bigint();
    return new InterceptingCall(nextCall(options), {
      start(metadata, _listener, next) {
        next(metadata, {
          onReceiveStatus(status, nextStatus) {
            const seconds = Number(process.hrtime.bigint() - started) / 1e9;
            observe({
              service: context.service,
              method: context.method,
              seconds,
              code: status.code,
            });
            nextStatus(status);
          },
        });
      },
    });
  };
}

/** Builds the etcd3 options of {@link createEtcdClient} (exposed for tests and tools). */
export function etcdClientOptions(options: EtcdClientOptions): IOptions {
  if (options.endpoints.length === 0) {
    throw new SamsaError(ErrorCode.INVALID_CONFIG, "etcd.endpoints must not be empty");
  }
  const callTimeoutMs = options.callTimeoutMs ?? etcdCallTimeoutMsDefault;
  const histogram = options.registry ? etcdLatencyHistogram(options.registry) : undefined;
  const observers = [options.onCall].filter((f) => f !== undefined);
  if (histogram) {
    observers.push((s) =>
      histogram.observe(
        { method: `${s.service}.${s.method}`, result: s.code === 0 ? "ok" : "error" },
        s.seconds,
      ),
    );
  }
  const observe = (sample: EtcdCallSample) => {
    for (const o of observers) o(sample);
  };
  return {
    hosts: [...options.endpoints],
    dialTimeout: options.connectTimeoutMs ?? ETCD_CONNECTION_TIMEOUT_MS_DEFAULT, // unused by etcd3 1.1.2
    grpcOptions: {
      "grpc.keepalive_time_ms": etcdKeepaliveTimeMs,
      "grpc.keepalive_timeout_ms": etcdKeepaliveTimeoutMs,
      "grpc.initial_reconnect_backoff_ms": etcdReconnectBackoffMsMin,
      "grpc.max_reconnect_backoff_ms": etcdReconnectBackoffMsMax,
    },
    // Streams (watch, lease keep-alive) live forever: no deadline, not timed.
    defaultCallOptions: (context) =>
      context.isStream
        ? {}
        : {
            deadline: Date.now() + callTimeoutMs,
            interceptors: observers.length > 0 ? [timingInterceptor(context, observe)] : [],
          },
    faultHandling: {
      global: retry(handleWhen(isRecoverableError), {
        maxAttempts: etcdCallRetriesMax,
        backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }),
      }),
      // etcd3's default keeps an endpoint's breaker open 5 s: longer than a lease keep-alive
      // can afford after etcd restarts. One second is enough to steer calls to other endpoints.
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: etcdBreakerOpenMs,
          breaker: new ConsecutiveBreaker(etcdBreakerFailuresMax),
        }),
      // etcd3 types this as an IBackoff but calls `.next()` on it as a factory at run time.
      watchBackoff: new ExponentialBackoff({
        initialDelay: etcdReconnectBackoffMsMin,
        maxDelay: etcdReconnectBackoffMsMax,
      }) as unknown as IBackoff<unknown>,
    },
  };
}

/**
 * Creates an etcd client. Connection is lazy: nothing is dialled until the first call. Close it
 * with `client.close()` once everything built on it (caches, leases, campaigns) is stopped.
 */
export function createEtcdClient(options: EtcdClientOptions): Etcd3 {
  return new Etcd3(etcdClientOptions(options));
}

/**
 * Creates a client and checks etcd answers within `connectTimeoutMs` (polling a `get` of a key
 * that need not exist). Throws SamsaError(REQUEST_TIMED_OUT) and closes the client otherwise.
 */
export async function connectEtcd(options: EtcdClientOptions): Promise<Etcd3> {
  const client = createEtcdClient(options);
  const timeoutMs = options.connectTimeoutMs ?? ETCD_CONNECTION_TIMEOUT_MS_DEFAULT;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      await client.get("/samsa-connect-probe").options({ deadline });
      return client;
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setTimeout(resolve, etcdReconnectBackoffMsMin));
    }
  }
  client.close();
  throw new SamsaError(
    ErrorCode.REQUEST_TIMED_OUT,
    `etcd not reachable at ${options.endpoints.join(",")} within ${timeoutMs} ms`,
    { cause: lastError },
  );
}

/**
 * An etcd client failure (a gRPC error from etcd, a closed or failing client, the connection
 * pool's open circuit breaker) as a retriable REQUEST_TIMED_OUT naming `what`; anything else is
 * returned as it is, so a bug stays a bug (UNKNOWN) rather than passing for an outage.
 */
export function asEtcdUnavailable(what: string, err: unknown): unknown {
  const fromEtcd =
    err instanceof GRPCGenericError ||
    err instanceof ClientRuntimeError ||
    // cockatiel's (etcd3's circuit breaker) BrokenCircuitError, not exported by etcd3.
    (err instanceof Error && err.constructor.name === "BrokenCircuitError");
  if (!fromEtcd) return err;
  return new SamsaError(
    ErrorCode.REQUEST_TIMED_OUT,
    `cannot ${what}: etcd is not available (${(err as Error).message})`,
    { cause: err },
  );
}

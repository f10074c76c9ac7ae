/**
 * The gRPC server every Samsa service runs: explicit limits, `grpc.health.v1.Health`, server
 * reflection, and services whose handlers are plain async functions wrapped by `handlers.ts`
 * (error mapping through the one table, metrics, cancellation). Tests start it on port 0 with
 * the same code as production.
 */
import type * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { Registry } from "prom-client";
import { SOCKET_REQUEST_MAX_BYTES_DEFAULT } from "../config/schema.js";
import { assert, ErrorCode, SamsaError } from "../errors.js";
import { errorCodeNameOf, toServiceError } from "./errors.js";
import { type Logger, silentLogger } from "../logger.js";
import {
  MalformedRequest,
  rpcMetrics,
  type BidiStreamHandler,
  type ServerStreamHandler,
  type ServiceHandlers,
  type UnaryHandler,
  type WrapEnv,
  wrapBidiStream,
  wrapServerStream,
  PreEncoded,
  wrapUnary,
} from "./handlers.js";
import {
  InflightLimiter,
  type LimitMetrics,
  limitConnections,
  limitMetrics,
  SERVER_LIMITS_DEFAULT,
  type ServerLimits,
  tooManyRequests,
  validateServerLimits,
} from "./limits.js";
import { packageDefinition, type ServiceSpec } from "./proto.js";

export type { ServingStatus } from "grpc-health-check";
export type { RpcContext, ServerStreamHandler, ServiceHandlers, UnaryHandler } from "./handlers.js";

/** Default largest response message, bytes (fetch answers are bounded by max_bytes below it). */
export const SERVER_SEND_MESSAGE_MAX_BYTES_DEFAULT = 104_857_600;
/** Interval of the server's keepalive pings, which find dead clients of long streams, ms. */
export const SERVER_KEEPALIVE_TIME_MS = 30_000;
/** How long a keepalive ping may go unanswered before the connection is closed, ms. */
export const SERVER_KEEPALIVE_TIMEOUT_MS = 10_000;
/** Shortest interval between two log lines about refused calls (each is counted), ms. */
export const SERVER_REFUSAL_LOG_INTERVAL_MS = 10_000;
/** How long stop() lets in-flight calls finish before it forces the server down, ms. */
export const SERVER_SHUTDOWN_GRACE_MS = 5_000;
/**
 * HTTP/2 flow-control window the server grants each client connection and each call, bytes.
 * Node's default of 64 KiB lets a client send only 64 KiB before it must wait for a
 * WINDOW_UPDATE, which the server sends from its event loop: a 110 KB produce request then
 * waits for the server's event loop twice, and eight of them in flight share one 64 KiB
 * connection window, capping produce at about half of what the broker can append. 16 MiB (the
 * largest window grpc-go's BDP estimator grows to) holds many produce requests at once. It costs
 * no memory bound: grpc-js reads every call's messages whole anyway, up to the receive limit.
 */
export const SERVER_FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;
/** The health service name that stands for the whole server. */
export const HEALTH_SERVER_WIDE = "";

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  /** Registry the RPC metrics are registered on (shared registries are fine). */
  registry: Registry;
  /** Logger for unexpected handler errors (logged with their stack). Default: silent. */
  logger?: Logger;
  /** Config `socket.request.max.bytes`: largest request accepted, bytes. Default
   * {@link SOCKET_REQUEST_MAX_BYTES_DEFAULT} (100 MiB). */
  socketRequestMaxBytes?: number;
  /** Largest response sent, bytes. Default {@link SERVER_SEND_MESSAGE_MAX_BYTES_DEFAULT}. */
  sendMessageMaxBytes?: number;
  /** Grace period of {@link GrpcServer.stop}, ms. Default {@link SERVER_SHUTDOWN_GRACE_MS}. */
  shutdownGraceMs?: number;
  /**
   * Config `max.connections`, `max.concurrent.streams.per.connection`,
   * `max.inflight.requests.per.connection`, `max.inflight.requests`. Default
   * {@link SERVER_LIMITS_DEFAULT} (4096, 1000, 500, 10000).
   */
  limits?: ServerLimits;
}

/** A gRPC server with health, reflection, wrapped handlers and graceful stop. */
export interface GrpcServer {
  /** The underlying grpc-js server (for tests and special cases only). */
  readonly server: grpc.Server;
  /** The bound port once {@link listen} resolved. */
  readonly port: number | undefined;
  /**
   * Adds a service; every handler is wrapped (error mapping, metrics, cancellation). Call before
   * {@link listen}. The service is reported SERVING by health from then on.
   */
  addService<H extends grpc.UntypedServiceImplementation, C extends grpc.Client>(
    spec: ServiceSpec<H, C>,
    handlers: ServiceHandlers<H>,
  ): void;
  /** Sets the health status of a service name ({@link HEALTH_SERVER_WIDE} = the server). */
  setStatus(service: string, status: ServingStatus): void;
  /** Binds `host:port` (port 0 = any free port), starts serving, resolves with the port. */
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops: health turns NOT_SERVING, in-flight calls' signals abort (streams end with a
   * retriable LEADER_NOT_AVAILABLE), then a graceful shutdown, forced after the grace period.
   * Idempotent.
   */
  stop(): Promise<void>;
}

/** Creates a {@link GrpcServer} with Samsa's limits, health and reflection. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const receiveMaxBytes = options.socketRequestMaxBytes ?? SOCKET_REQUEST_MAX_BYTES_DEFAULT;
  const sendMaxBytes = options.sendMessageMaxBytes ?? SERVER_SEND_MESSAGE_MAX_BYTES_DEFAULT;
  const shutdownGraceMs = options.shutdownGraceMs ?? SERVER_SHUTDOWN_GRACE_MS;
  assert(Number.isSafeInteger(receiveMaxBytes) && receiveMaxBytes > 0, "receive limit > 0");
  assert(Number.isSafeInteger(sendMaxBytes) && sendMaxBytes > 0, "send limit > 0");
  const limits = validateServerLimits(options.limits ?? SERVER_LIMITS_DEFAULT);
  const logger = options.logger ?? silentLogger();
  const server = new grpc.Server({
    "grpc.max_receive_message_length": receiveMaxBytes,
    "grpc.max_send_message_length": sendMaxBytes,
    "grpc.keepalive_time_ms": SERVER_KEEPALIVE_TIME_MS,
    "grpc.keepalive_timeout_ms": SERVER_KEEPALIVE_TIMEOUT_MS,
    "grpc.max_concurrent_streams": limits.concurrentStreamsPerConnectionMax,
  });
  const health = new HealthImplementation({ [HEALTH_SERVER_WIDE]: "NOT_SERVING" });
  health.addToServer(server);
  const serviceNames: string[] = [];
  const live = new Set<AbortController>();
  const env: WrapEnv = {
    metrics: rpcMetrics(options.registry),
    logger,
    track: (controller) => {
      live.add(controller);
      return () => live.delete(controller);
    },
  };
  const admission: Admission = {
    limiter: new InflightLimiter(
      limits.inflightRequestsPerConnectionMax,
      limits.inflightRequestsMax,
    ),
    limits,
    metrics: limitMetrics(options.registry),
    env,
    lastLogMs: Number.NEGATIVE_INFINITY,
    unlogged: 0,
  };
  let port: number | undefined;
  let stopping: Promise<void> | undefined;

  const setAll = (status: ServingStatus): void => {
    for (const name of [HEALTH_SERVER_WIDE, ...serviceNames]) health.setStatus(name, status);
  };

  return {
    server,
    get port() {
      return port;
    },
    addService(spec, handlers) {
      assert(port === undefined && stopping === undefined, "addService before listen");
      assert(!serviceNames.includes(spec.name), `service ${spec.name} added twice`);
      server.addService(
        guardDeserializers(spec.definition),
        wrapService(admission, spec, handlers),
      );
      serviceNames.push(spec.name);
      health.setStatus(spec.name, "SERVING");
    },
    setStatus(service, status) {
      health.setStatus(service, status);
    },
    async listen(host, requestedPort) {
      assert(port === undefined && stopping === undefined, "listen once");
      // Reflection describes exactly the services this server runs.
      new ReflectionService(packageDefinition, { services: [...serviceNames] }).addToServer(server);
      port = await bind(server, host, requestedPort);
      for (const http2Server of http2ServersOf(server)) {
        widenFlowControlWindows(http2Server, SERVER_FLOW_CONTROL_WINDOW_BYTES);
        limitConnections(http2Server, limits.connectionsMax, admission.metrics, logger);
      }
      health.setStatus(HEALTH_SERVER_WIDE, "SERVING");
      return port;
    },
    stop() {
      stopping ??= (async () => {
        setAll("NOT_SERVING");
        const reason = new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "the server is stopping");
        for (const controller of live) controller.abort(reason);
        await shutdown(server, shutdownGraceMs);
      })();
      return stopping;
    },
  };
}

/**
 * The service definition with every request deserializer made total: bytes that are not a valid
 * message become a {@link MalformedRequest} instead of a throw. grpc-js answers a throwing
 * deserializer with INTERNAL ("Error deserializing request"), which would make a client's bad
 * bytes look like a server bug; the handler wrappers answer a MalformedRequest with
 * INVALID_REQUEST (gRPC INVALID_ARGUMENT) instead, counted and logged like any other. Response
 * serializers pass a {@link PreEncoded} message's bytes through.
 */
function guardDeserializers(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const guarded: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [method, d] of Object.entries(definition)) {
    const deserialize = d.requestDeserialize;
    const serialize = d.responseSerialize;
    guarded[method] = {
      ...d,
      responseSerialize: (value: unknown) =>
        value instanceof PreEncoded ? value.bytes : serialize(value),
      requestDeserialize: (bytes: Buffer) => {
        try {
          return deserialize(bytes);
        } catch (err) {
          return new MalformedRequest(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return guarded as grpc.ServiceDefinition;
}

/** Wraps every handler of a service by the method's kind (from the definition). */
function wrapService<H extends grpc.UntypedServiceImplementation, C extends grpc.Client>(
  admission: Admission,
  spec: ServiceSpec<H, C>,
  handlers: ServiceHandlers<H>,
): grpc.UntypedServiceImplementation {
  const env = admission.env;
  const table = handlers as unknown as Record<string, unknown>;
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [method, definition] of Object.entries(spec.definition)) {
    const handler = table[method];
    assert(typeof handler === "function", `${spec.name}.${method} has a handler`);
    assert(
      !definition.requestStream || definition.responseStream,
      `${spec.name}.${method}: client streams are unsupported (bidirectional ones are)`,
    );
    wrapped[method] = definition.requestStream
      ? wrapBidiStream(env, spec.name, method, handler as BidiStreamHandler<unknown, unknown>)
      : definition.responseStream
        ? wrapServerStream(env, spec.name, method, handler as ServerStreamHandler<unknown, unknown>)
        : admitUnary(
            admission,
            spec.name,
            method,
            wrapUnary(env, spec.name, method, handler as UnaryHandler<unknown, unknown>),
          );
  }
  return wrapped;
}

/** What {@link admitUnary} needs: the limiter, its bounds, metrics and the refusal log's pace. */
interface Admission {
  readonly limiter: InflightLimiter;
  readonly limits: ServerLimits;
  readonly metrics: LimitMetrics;
  readonly env: WrapEnv;
  /** When a refusal was last logged, ms (performance.now()). */
  lastLogMs: number;
  /** Refusals since that line. */
  unlogged: number;
}

/**
 * Puts the in-flight bounds in front of a wrapped unary handler: past either bound the call is
 * answered at once with TOO_MANY_REQUESTS, without running the handler; otherwise its slot is
 * held until its answer is sent or the client cancels (whichever is first). A connection is
 * known by its peer address (`ip:port`), which is unique per TCP connection.
 */
function admitUnary(
  admission: Admission,
  service: string,
  method: string,
  inner: grpc.handleUnaryCall<unknown, unknown>,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const admitted = admission.limiter.acquire(call.getPeer());
    if (!admitted.admitted) {
      const { reason } = admitted;
      const max =
        reason === "inflight_connection"
          ? admission.limits.inflightRequestsPerConnectionMax
          : admission.limits.inflightRequestsMax;
      const serviceError = toServiceError(tooManyRequests(reason, max));
      admission.metrics.refused.inc({ reason });
      admission.env.metrics.requests.inc({ service, method, code: errorCodeNameOf(serviceError) });
      logRefusal(admission, reason, max, call.getPeer());
      callback(serviceError);
      return;
    }
    // wrapUnary sends nothing for a call the client cancelled, so the cancel releases too.
    call.once("cancelled", admitted.release);
    inner(call, (...answer: Parameters<typeof callback>) => {
      call.off("cancelled", admitted.release);
      admitted.release();
      callback(...answer);
    });
  };
}

/** Logs a refused call, at most once per {@link SERVER_REFUSAL_LOG_INTERVAL_MS} (with a count). */
function logRefusal(admission: Admission, reason: string, max: number, peer: string): void {
  admission.unlogged += 1;
  const now = performance.now();
  if (now - admission.lastLogMs < SERVER_REFUSAL_LOG_INTERVAL_MS) return;
  admission.env.logger.warn("requests refused: too many in flight", {
    reason,
    max,
    peer,
    refused: admission.unlogged,
  });
  admission.lastLogMs = now;
  admission.unlogged = 0;
}

function bind(server: grpc.Server, host: string, port: number): Promise<number> {
  // IPv6 literals need brackets in a gRPC address.
  const address =
    host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, boundPort) => {
      if (err) reject(err);
      else resolve(boundPort);
    });
  });
}

/**
 * The HTTP/2 servers under a bound grpc-js server. grpc-js 1.14 has no server option for the
 * flow-control window (its client has `grpc-node.flow_control_window`; the server side is
 * grpc/grpc-node#3058) nor for a connection bound, so both hook the HTTP/2 servers grpc-js keeps
 * in its private `http2Servers` map. The assertion fails loudly if an upgrade removes the map.
 */
function http2ServersOf(server: grpc.Server): http2.Http2Server[] {
  const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  assert(http2Servers instanceof Map, "grpc-js keeps its HTTP/2 servers in `http2Servers`");
  return [...(http2Servers.keys() as Iterable<http2.Http2Server>)];
}

/**
 * Grants every client connection of `http2Server` a flow-control window of `bytes`, for the
 * connection (a WINDOW_UPDATE) and for each call (SETTINGS_INITIAL_WINDOW_SIZE).
 */
function widenFlowControlWindows(http2Server: http2.Http2Server, bytes: number): void {
  http2Server.on("session", (session: http2.ServerHttp2Session) => {
    session.setLocalWindowSize(bytes);
    session.settings({ initialWindowSize: bytes });
  });
}

function shutdown(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

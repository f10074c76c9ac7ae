/**
 * Wrapping of async RPC handlers into grpc-js handlers. Every wrapped call: gets an
 * {@link RpcContext} whose signal aborts when the client cancels or the server stops; maps a
 * thrown or rejected error through {@link toServiceError} exactly once; records
 * `samsa_rpc_requests_total{service,method,code}` and `samsa_rpc_duration_seconds{service,method}`.
 * Used by `server.ts`; services only write the async handlers typed here.
 */
import type * as grpc from "@grpc/grpc-js";
import { Counter, Histogram, type Registry } from "prom-client";
import { ErrorCode, SamsaError } from "../errors.js";
import type { Logger } from "../logger.js";
import { errorCodeNameOf, toServiceError } from "./errors.js";

/** Per-call context given to every handler. */
export interface RpcContext {
  /** Fully-qualified service name, e.g. `samsa.v1.BrokerService`. */
  readonly service: string;
  /** Method name as in the proto, e.g. `Produce`. */
  readonly method: string;
  /**
   * Aborts when the client cancels (or its deadline passes) or the server stops. Long polls and
   * streams stop waiting on it; its `reason` is a {@link SamsaError}.
   */
  readonly signal: AbortSignal;
}

/** A unary handler: resolve with the response, or throw a {@link SamsaError}. */
export type UnaryHandler<Req, Res> = (
  request: Req,
  call: grpc.ServerUnaryCall<Req, Res>,
  ctx: RpcContext,
) => Promise<Res>;

/**
 * Sends one message of a stream: resolves once the stream may take the next one (see
 * {@link STREAM_SEND_BUFFER_BYTES_MAX}); rejects once the call is cancelled or the server stops.
 * `bytes` is the message's payload size (e.g. its record bytes), counted against the byte bound;
 * 0 (the default) counts the message against the message bound only.
 */
export type StreamSend<Res> = (message: Res | PreEncoded<Res>, bytes?: number) => Promise<void>;

/**
 * A response message already in its protobuf encoding: the server sends its bytes as they are
 * (the service definitions' serializers pass it through), for hot paths that write the wire
 * format straight from record batches. `Res` only types it.
 */
export class PreEncoded<Res> {
  declare readonly messageType?: Res;
  constructor(readonly bytes: Buffer) {}
}

/**
 * A server-streaming handler: either `await send(message, bytes)` for each message and resolve
 * when done, or be an async generator yielding the messages. `send` waits while the stream's
 * send buffer is full (backpressure: a client that does not read stops the handler).
 */
export type ServerStreamHandler<Req, Res> = (
  request: Req,
  call: grpc.ServerWritableStream<Req, Res>,
  send: StreamSend<Res>,
  ctx: RpcContext,
) => Promise<void> | AsyncIterable<Res>;

/**
 * A bidirectional-streaming handler: reads the client's messages from `requests` (each one a
 * request, or a {@link MalformedRequest} for bytes that are not one; the iteration ends when the
 * client half-closes), `await send(message)` for each answer, and resolves when done (the
 * server then ends the stream) or throws (the stream ends with that error).
 */
export type BidiStreamHandler<Req, Res> = (
  requests: AsyncIterable<Req | MalformedRequest>,
  call: grpc.ServerDuplexStream<Req, Res>,
  send: StreamSend<Res>,
  ctx: RpcContext,
) => Promise<void>;

/**
 * The async handlers of a service, derived from its generated `...Handlers` interface `H`: one
 * {@link UnaryHandler}, {@link ServerStreamHandler} or {@link BidiStreamHandler} per RPC, all
 * required.
 */
export type ServiceHandlers<H> = {
  [K in keyof H as string extends K ? never : K]: H[K] extends grpc.handleBidiStreamingCall<
    infer Req,
    infer Res
  >
    ? BidiStreamHandler<Req, Res>
    : H[K] extends grpc.handleServerStreamingCall<infer Req, infer Res>
      ? ServerStreamHandler<Req, Res>
      : H[K] extends grpc.handleUnaryCall<infer Req, infer Res>
        ? UnaryHandler<Req, Res>
        : never;
};

/**
 * Payload bytes one server stream may have written but not yet handed to HTTP/2 (whose
 * flow-control window then bounds what is in flight), bytes. grpc-js's own buffer is bounded by
 * message count only (16), which for 1 MiB Subscribe messages let every stream whose client does
 * not read hold 16 MiB in the server; past this bound `send` waits for the transport instead.
 */
export const STREAM_SEND_BUFFER_BYTES_MAX = 256 * 1024;

/** Name of the RPC counter. */
export const RPC_REQUESTS_METRIC = "samsa_rpc_requests_total";
/** Name of the RPC latency histogram. */
export const RPC_DURATION_METRIC = "samsa_rpc_duration_seconds";
/** `code` label of an RPC the client cancelled (the normal end of a Subscribe stream). */
export const RPC_CODE_CANCELLED = "CANCELLED";
/** Latency buckets, seconds: sub-millisecond reads up to long polls and acks=all waits. */
export const RPC_DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

/** The RPC metrics, created once per registry (several servers may share one registry). */
export interface RpcMetrics {
  readonly requests: Counter<"service" | "method" | "code">;
  readonly duration: Histogram<"service" | "method">;
}

/** Gets or registers the RPC metrics on `registry`. */
export function rpcMetrics(registry: Registry): RpcMetrics {
  const requests =
    (registry.getSingleMetric(RPC_REQUESTS_METRIC) as RpcMetrics["requests"] | undefined) ??
    new Counter({
      name: RPC_REQUESTS_METRIC,
      help: "RPCs handled, by service, method and result code (an ErrorCode name, NONE = ok)",
      labelNames: ["service", "method", "code"] as const,
      registers: [registry],
    });
  const duration =
    (registry.getSingleMetric(RPC_DURATION_METRIC) as RpcMetrics["duration"] | undefined) ??
    new Histogram({
      name: RPC_DURATION_METRIC,
      help: "RPC handling time in seconds (a stream's whole lifetime), by service and method",
      labelNames: ["service", "method"] as const,
      buckets: [...RPC_DURATION_BUCKETS_SECONDS],
      registers: [registry],
    });
  return { requests, duration };
}

/** What the wrappers need from the server. */
export interface WrapEnv {
  readonly metrics: RpcMetrics;
  readonly logger: Logger;
  /** Registers a live call so that the server's stop() can abort it; returns the unregister. */
  readonly track: (controller: AbortController) => () => void;
}

/** One call in flight: its context, and `finish` to record it exactly once. */
interface CallScope {
  readonly ctx: RpcContext;
  /** Records the outcome (`NONE`, an ErrorCode name or CANCELLED) and unregisters the call. */
  finish(code: string): void;
  /** Maps an error once: logs unexpected ones, records the metrics, returns what to send. */
  fail(err: unknown, cancelled: boolean): grpc.ServiceError | undefined;
}

function openScope(env: WrapEnv, service: string, method: string, call: CallLike): CallScope {
  const endTimer = env.metrics.duration.startTimer({ service, method });
  const controller = new AbortController();
  const untrack = env.track(controller);
  const onCancel = (): void =>
    controller.abort(new SamsaError(ErrorCode.REQUEST_TIMED_OUT, "the client cancelled the call"));
  call.once("cancelled", onCancel);
  if (call.cancelled) onCancel();
  let finished = false;
  const finish = (code: string): void => {
    if (finished) return;
    finished = true;
    call.off("cancelled", onCancel);
    untrack();
    endTimer();
    env.metrics.requests.inc({ service, method, code });
  };
  const fail = (err: unknown, cancelled: boolean): grpc.ServiceError | undefined => {
    if (cancelled) {
      finish(RPC_CODE_CANCELLED);
      return undefined;
    }
    const serviceError = toServiceError(err);
    const code = errorCodeNameOf(serviceError);
    // UNKNOWN is a bug: the client only hears "unexpected server error", the log gets the rest.
    if (code === ErrorCode[ErrorCode.UNKNOWN]) {
      const e = err instanceof Error ? err : new Error(String(err));
      env.logger.error("unexpected error in RPC handler", {
        service,
        method,
        error: e.message,
        stack: e.stack,
      });
    }
    finish(code);
    return serviceError;
  };
  return { ctx: { service, method, signal: controller.signal }, finish, fail };
}

/** A request whose bytes are not a valid message (see the server's guarded deserializers). */
export class MalformedRequest {
  constructor(readonly reason: string) {}

  /** The caller's error: INVALID_REQUEST, with what the decoder said. */
  error(method: string): SamsaError {
    return new SamsaError(
      ErrorCode.INVALID_REQUEST,
      `the ${method} request is not a valid message: ${this.reason}`,
    );
  }
}

/** The parts of a grpc-js server call the scope listens to. */
type CallLike = Pick<grpc.ServerUnaryCall<unknown, unknown>, "cancelled" | "once" | "off">;

/** Wraps an async unary handler into a grpc-js one. */
export function wrapUnary<Req, Res>(
  env: WrapEnv,
  service: string,
  method: string,
  handler: UnaryHandler<Req, Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const scope = openScope(env, service, method, call);
    // Promise.resolve().then() also catches a handler that throws synchronously.
    Promise.resolve()
      .then(() => {
        if (call.request instanceof MalformedRequest) throw call.request.error(method);
        return handler(call.request, call, scope.ctx);
      })
      .then(
        (response) => {
          scope.finish(call.cancelled ? RPC_CODE_CANCELLED : ErrorCode[ErrorCode.NONE]);
          callback(null, response);
        },
        (err: unknown) => {
          const serviceError = scope.fail(err, call.cancelled);
          if (serviceError !== undefined) callback(serviceError);
        },
      );
  };
}

/** Wraps an async server-streaming handler (send-style or async generator) into a grpc-js one. */
export function wrapServerStream<Req, Res>(
  env: WrapEnv,
  service: string,
  method: string,
  handler: ServerStreamHandler<Req, Res>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const scope = openScope(env, service, method, call);
    const { signal } = scope.ctx;
    const send = streamSender(call, signal);
    runStream(scope, call, signal, async () => {
      if (call.request instanceof MalformedRequest) throw call.request.error(method);
      const result = handler(call.request, call, send, scope.ctx);
      if (isAsyncIterable(result)) {
        for await (const message of result) await send(message);
      } else {
        await result;
      }
    });
  };
}

/**
 * Runs a stream handler's `body` and ends the stream once, by its outcome: an error status for
 * a failure, a normal end otherwise. A handler that returns because the server is stopping did
 * not finish the stream: the client must hear that (a retriable status), not a normal end.
 */
function runStream(
  scope: CallScope,
  call: {
    readonly cancelled: boolean;
    emit(event: "error", err: unknown): unknown;
    end(): unknown;
  },
  signal: AbortSignal,
  body: () => Promise<void>,
): void {
  void (async () => {
    try {
      await body();
      if (signal.aborted && !call.cancelled) throw signal.reason;
    } catch (err) {
      const serviceError = scope.fail(err, call.cancelled);
      if (serviceError !== undefined) call.emit("error", serviceError);
      return;
    }
    scope.finish(call.cancelled ? RPC_CODE_CANCELLED : ErrorCode[ErrorCode.NONE]);
    if (!call.cancelled) call.end();
  })();
}

/**
 * The `send` of one stream. A write is outstanding until grpc-js has handed it to HTTP/2 (its
 * callback); `send` resolves when grpc-js's buffer has room (no `drain` pending) and the
 * outstanding payload is at most {@link STREAM_SEND_BUFFER_BYTES_MAX}, so a stream holds at
 * most that much (plus one message) however slowly its client reads.
 */
function streamSender<Res>(
  call: grpc.ServerWritableStream<unknown, Res>,
  signal: AbortSignal,
): StreamSend<Res> {
  let outstandingBytes = 0;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  call.on("drain", notify);
  const full = (): boolean =>
    call.writableNeedDrain || outstandingBytes > STREAM_SEND_BUFFER_BYTES_MAX;
  return async (message, bytes = 0) => {
    if (signal.aborted) throw signal.reason;
    outstandingBytes += bytes;
    // A PreEncoded message reaches the definition's serializer, which passes its bytes through.
    call.write(message as Res, () => {
      outstandingBytes -= bytes;
      notify();
    });
    while (full()) {
      if (signal.aborted) throw signal.reason;
      await new Promise<void>((resolve) => {
        const onAbort = (): void => resolve();
        wake = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
    if (signal.aborted) throw signal.reason;
  };
}

function isAsyncIterable<T>(value: unknown): value is AsyncIterable<T> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] === "function"
  );
}

/** Wraps an async bidirectional-streaming handler into a grpc-js one. */
export function wrapBidiStream<Req, Res>(
  env: WrapEnv,
  service: string,
  method: string,
  handler: BidiStreamHandler<Req, Res>,
): grpc.handleBidiStreamingCall<Req, Res> {
  return (call) => {
    const scope = openScope(env, service, method, call as unknown as CallLike);
    const { signal } = scope.ctx;
    const send = streamSender(call as unknown as grpc.ServerWritableStream<unknown, Res>, signal);
    // Not `for await (… of call)`: that destroys the stream when the requests end, and with it
    // the answers still to be written.
    const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterable<
      Req | MalformedRequest
    >;
    runStream(scope, call, signal, () => handler(requests, call, send, scope.ctx));
  };
}

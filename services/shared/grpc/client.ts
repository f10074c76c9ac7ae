/**
 * gRPC clients of Samsa services: channels with explicit limits, and promise / async-iterable
 * wrappers whose failures are always {@link SamsaError}s (through `fromServiceError`), so that
 * callers retry by `err.retriable` alone and refresh metadata on NOT_LEADER.
 */
import * as grpc from "@grpc/grpc-js";
import { assert } from "../errors.js";
import { fromServiceError } from "./errors.js";
import type { ServiceClientConstructor } from "./proto.js";

/** Interval of the client's keepalive pings, which find dead servers on idle channels, ms. */
export const CLIENT_KEEPALIVE_TIME_MS = 30_000;
/** How long a keepalive ping may go unanswered before the channel reconnects, ms. */
export const CLIENT_KEEPALIVE_TIMEOUT_MS = 10_000;
/** Largest response accepted by default, bytes (matches the server's send limit). */
export const CLIENT_RECEIVE_MESSAGE_MAX_BYTES_DEFAULT = 104_857_600;
/** Largest request sent by default, bytes (matches `socket.request.max.bytes`' default). */
export const CLIENT_SEND_MESSAGE_MAX_BYTES_DEFAULT = 104_857_600;
/** First reconnect delay after a connection failure, ms (short: failover should be quick). */
export const CLIENT_RECONNECT_BACKOFF_INITIAL_MS = 100;
/** Longest reconnect delay, ms. */
export const CLIENT_RECONNECT_BACKOFF_MAX_MS = 5_000;
/**
 * HTTP/2 flow-control window the client grants the server, per connection and per call, bytes.
 * Node's default of 64 KiB makes the server stop every 64 KiB of a fetch answer until this
 * process's event loop, busy decoding the previous answer, sends a WINDOW_UPDATE: an 8 MiB
 * answer waited for one up to 128 times. 16 MiB (the largest window grpc-go's BDP estimator
 * grows to) lets a typical answer flow without stopping. It costs no memory bound: grpc-js reads
 * every answer whole anyway, up to the receive limit.
 */
export const CLIENT_FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;
/**
 * Messages a server stream's reader buffers ahead of its consumer. grpc-js's readable buffers 16
 * (Node's object-mode default) before it stops reading the HTTP/2 stream: with 1 MiB Subscribe
 * messages a gateway held 16 MiB per partition of every Consume whose client did not read.
 * With 1 the HTTP/2 flow-control window alone bounds what is in flight; it still pipelines.
 */
export const STREAM_READ_AHEAD_MESSAGES = 1;
/** Deadline of a unary call when the caller gives none, ms (every call is bounded). */
export const UNARY_DEADLINE_MS_DEFAULT = 30_000;

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** Largest response accepted, bytes. Default {@link CLIENT_RECEIVE_MESSAGE_MAX_BYTES_DEFAULT}. */
  receiveMessageMaxBytes?: number;
  /** Largest request sent, bytes. Default {@link CLIENT_SEND_MESSAGE_MAX_BYTES_DEFAULT}. */
  sendMessageMaxBytes?: number;
  /**
   * HTTP/2 flow-control window granted to the server, per connection and per call, bytes: what
   * one server stream can have in flight to this process when it does not read. Default
   * {@link CLIENT_FLOW_CONTROL_WINDOW_BYTES}.
   */
  flowControlWindowBytes?: number;
  /** Extra channel options, applied last (tests, special cases). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * Creates a client of a service on `address` (`host:port`), insecure, with Samsa's channel
 * options. `Ctor` is a generated client class, e.g. `brokerService.Client`. Close it with
 * `client.close()`.
 */
export function createClient<C extends grpc.Client>(
  Ctor: ServiceClientConstructor<C>,
  address: string,
  options: ClientOptions = {},
): C {
  return new Ctor(address, grpc.credentials.createInsecure(), {
    "grpc.keepalive_time_ms": CLIENT_KEEPALIVE_TIME_MS,
    "grpc.keepalive_timeout_ms": CLIENT_KEEPALIVE_TIMEOUT_MS,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.max_receive_message_length":
      options.receiveMessageMaxBytes ?? CLIENT_RECEIVE_MESSAGE_MAX_BYTES_DEFAULT,
    "grpc.max_send_message_length":
      options.sendMessageMaxBytes ?? CLIENT_SEND_MESSAGE_MAX_BYTES_DEFAULT,
    "grpc.initial_reconnect_backoff_ms": CLIENT_RECONNECT_BACKOFF_INITIAL_MS,
    "grpc.max_reconnect_backoff_ms": CLIENT_RECONNECT_BACKOFF_MAX_MS,
    "grpc-node.flow_control_window":
      options.flowControlWindowBytes ?? CLIENT_FLOW_CONTROL_WINDOW_BYTES,
    ...options.channelOptions,
  });
}

/** Options of one call. */
export interface CallOptions {
  /** Deadline from now, ms. Unary default {@link UNARY_DEADLINE_MS_DEFAULT}; streams: none. */
  deadlineMs?: number;
  /** Request metadata. */
  metadata?: grpc.Metadata;
  /** Cancels the call when aborted. */
  signal?: AbortSignal;
}

/** Names of the unary methods of client `C` (matched on the generated callback overload). */
export type UnaryMethod<C> = {
  [K in keyof C]: C[K] extends (
    arg: infer _Req,
    cb: grpc.requestCallback<infer _Res>,
  ) => grpc.ClientUnaryCall
    ? K
    : never;
}[keyof C];
/** Names of the server-streaming methods of client `C`. */
export type StreamMethod<C> = {
  [K in keyof C]: C[K] extends (
    arg: infer _Req,
    opts?: grpc.CallOptions,
  ) => grpc.ClientReadableStream<infer _Res>
    ? K
    : never;
}[keyof C];
/** Request type of method `M` of client `C`. */
export type RequestOf<C, M extends keyof C> = C[M] extends (
  arg: infer Req,
  ...rest: infer _Rest
) => unknown
  ? Req
  : never;
/** Response type of unary method `M` of client `C`. */
export type UnaryResponseOf<C, M extends keyof C> = C[M] extends (
  arg: infer _Req,
  cb: grpc.requestCallback<infer Res>,
) => grpc.ClientUnaryCall
  ? Res
  : never;
/** Message type of server-streaming method `M` of client `C`. */
export type StreamMessageOf<C, M extends keyof C> = C[M] extends (
  arg: infer _Req,
  opts?: grpc.CallOptions,
) => grpc.ClientReadableStream<infer Res>
  ? Res
  : never;

type AnyMethod = (...args: unknown[]) => unknown;

function deadlineOf(deadlineMs: number | undefined): grpc.Deadline | undefined {
  if (deadlineMs === undefined) return undefined;
  assert(Number.isFinite(deadlineMs) && deadlineMs >= 0, "deadlineMs >= 0");
  return Date.now() + deadlineMs;
}

/**
 * Calls unary method `method` (e.g. `"Metadata"`) and resolves with the response; rejects with
 * a {@link SamsaError} (mapped by `fromServiceError`), never a raw gRPC error.
 */
export function unary<C extends grpc.Client, M extends UnaryMethod<C>>(
  client: C,
  method: M,
  request: RequestOf<C, M>,
  options: CallOptions = {},
): Promise<UnaryResponseOf<C, M>> {
  const deadline = deadlineOf(options.deadlineMs ?? UNARY_DEADLINE_MS_DEFAULT);
  return new Promise((resolve, reject) => {
    const fn = client[method] as unknown as AnyMethod;
    const call = fn.call(
      client,
      request,
      options.metadata ?? new grpc.Metadata(),
      { deadline },
      (err: grpc.ServiceError | null, response: UnaryResponseOf<C, M>) => {
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(fromServiceError(err));
        else resolve(response);
      },
    ) as grpc.ClientUnaryCall;
    const onAbort = (): void => call.cancel();
    if (options.signal?.aborted) call.cancel();
    else options.signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Calls server-streaming method `method` (e.g. `"Subscribe"`) and yields its messages. A
 * failure is thrown as a {@link SamsaError}; leaving the loop early (or aborting `signal`)
 * cancels the call, and an aborted call just ends the iteration. Pull-based: at most
 * {@link STREAM_READ_AHEAD_MESSAGES} message is read ahead of the loop, so a loop that stops
 * pulling stops the server (HTTP/2 flow control) instead of buffering here.
 */
export async function* stream<C extends grpc.Client, M extends StreamMethod<C>>(
  client: C,
  method: M,
  request: RequestOf<C, M>,
  options: CallOptions = {},
): AsyncGenerator<StreamMessageOf<C, M>, void, undefined> {
  const fn = client[method] as unknown as AnyMethod;
  const call = fn.call(client, request, options.metadata ?? new grpc.Metadata(), {
    deadline: deadlineOf(options.deadlineMs),
  }) as grpc.ClientReadableStream<StreamMessageOf<C, M>>;
  limitReadAhead(call, STREAM_READ_AHEAD_MESSAGES);
  const onAbort = (): void => call.cancel();
  if (options.signal?.aborted) call.cancel();
  else options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const message of call) yield message as StreamMessageOf<C, M>;
  } catch (err) {
    if (options.signal?.aborted) return;
    throw fromServiceError(err);
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    call.cancel();
  }
}

/**
 * Lowers the read-ahead of a grpc-js client stream to `messages`. grpc-js creates its readable
 * with Node's default and offers no option, so this sets the readable state's high-water mark
 * before anything is read (grpc-js asks HTTP/2 for a message only when the readable is below it).
 */
function limitReadAhead(call: grpc.ClientReadableStream<unknown>, messages: number): void {
  const state = (call as unknown as { _readableState?: { highWaterMark?: unknown } })
    ._readableState;
  assert(typeof state?.highWaterMark === "number", "a grpc-js stream is a Node readable");
  state.highWaterMark = messages;
}

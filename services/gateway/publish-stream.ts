/**
 * PublishStream: Publish for clients that send many records, as one bidirectional stream. Each
 * PublishRequest is handled as a Publish (through the same per-partition coalescing, so the
 * requests of one stream and of every other client share appends) and answered by one
 * PublishResponse, in the order the requests came, echoing the request's `request_id`.
 *
 * Flow control: the stream stops reading requests while its unanswered requests hold more than
 * {@link PUBLISH_STREAM_UNACKED_BYTES_MAX} record bytes or number more than
 * {@link PUBLISH_STREAM_UNACKED_REQUESTS_MAX}; gRPC's own flow control then stops the client's
 * writes. So one stream holds a bounded amount of memory in the gateway, however fast its client
 * writes.
 *
 * Errors: per-record errors are in the results, as with Publish. A call-level error of one
 * request (an illegal topic name, no records, too many, an unknown topic, a message that is not
 * a valid PublishRequest) ends the stream with that error's code, after the responses of the
 * requests before it; the requests after it are not answered (some may have been appended, as
 * with any Publish whose answer the client did not get). Each request has its own deadline,
 * {@link PUBLISH_STREAM_REQUEST_TIMEOUT_MS}, for its retries.
 */
import type { PublishRequest__Output } from "../shared/generated/samsa/v1/PublishRequest.js";
import type { PublishResponse } from "../shared/generated/samsa/v1/PublishResponse.js";
import { MalformedRequest } from "../shared/grpc/handlers.js";
import { Deadline } from "../shared/retry.js";
import { type PublishDeps, publish } from "./publish.js";
import type { PublishAccumulator } from "./publish-accumulator.js";
import { ROUTE_TIMEOUT_MS_DEFAULT } from "./routing.js";

/** Record bytes (keys, values, headers) of unanswered requests one stream may hold. */
export const PUBLISH_STREAM_UNACKED_BYTES_MAX = 8 * 1024 * 1024;
/** Unanswered requests one stream may hold. */
export const PUBLISH_STREAM_UNACKED_REQUESTS_MAX = 10_000;
/** Retry deadline of each request of a stream, ms (a unary Publish has the client's deadline). */
export const PUBLISH_STREAM_REQUEST_TIMEOUT_MS = ROUTE_TIMEOUT_MS_DEFAULT;

/** One request read and not answered yet. */
interface Unanswered {
  readonly requestId: string;
  readonly bytes: number;
  readonly answer: Promise<{ results: PublishResponse["results"] }>;
}

/** Runs one PublishStream until its client half-closes (resolves) or a call-level error (throws). */
export async function publishStream(
  requests: AsyncIterable<PublishRequest__Output | MalformedRequest>,
  send: (response: PublishResponse) => Promise<void>,
  deps: PublishDeps,
  appends: PublishAccumulator,
  signal: AbortSignal,
): Promise<void> {
  const queue: Unanswered[] = [];
  let unackedBytes = 0;
  let failure: { error: unknown } | undefined;
  /** Wakes the reader waiting for room, once an answer went out or the stream failed. */
  let roomWaiter: (() => void) | undefined;
  const wakeReader = () => {
    const w = roomWaiter;
    roomWaiter = undefined;
    w?.();
  };
  /** Sends the answers at the head of the queue as they come, in order (one writer at a time). */
  const writeAnswers = async (): Promise<void> => {
    while (queue.length > 0 && failure === undefined) {
      const head = queue[0]!;
      try {
        const { results } = await head.answer;
        await send({ results, requestId: head.requestId });
      } catch (error) {
        failure ??= { error };
        break;
      }
      queue.shift();
      unackedBytes -= head.bytes;
      wakeReader();
    }
    wakeReader();
  };
  let writer: Promise<void> = Promise.resolve();
  let writerRunning = false;
  const startWriter = () => {
    if (writerRunning) return;
    writerRunning = true;
    writer = writeAnswers().finally(() => {
      writerRunning = false;
    });
  };
  const full = () =>
    unackedBytes > PUBLISH_STREAM_UNACKED_BYTES_MAX ||
    queue.length >= PUBLISH_STREAM_UNACKED_REQUESTS_MAX;

  for await (const request of requests) {
    if (failure !== undefined || signal.aborted) break;
    if (request instanceof MalformedRequest) {
      failure = { error: request.error("PublishStream") };
      break;
    }
    const answer = publish(
      request,
      deps,
      appends,
      new Deadline(PUBLISH_STREAM_REQUEST_TIMEOUT_MS),
      signal,
    );
    // Read in order by the writer; until then a rejection must not count as unhandled.
    answer.catch(() => undefined);
    const bytes = recordBytesOf(request);
    queue.push({ requestId: request.requestId, bytes, answer });
    unackedBytes += bytes;
    startWriter();
    // Stop reading (and so, through HTTP/2's flow control, the client) while the stream is full.
    while (full() && failure === undefined && !signal.aborted) {
      await new Promise<void>((resolve) => {
        roomWaiter = resolve;
      });
    }
  }
  // The client half-closed (or the stream failed): the answers still owed go out first.
  for (;;) {
    await writer;
    if (failure !== undefined || queue.length === 0 || signal.aborted) break;
    startWriter();
  }
  if (failure !== undefined) throw failure.error;
}

/** Record bytes of a request (keys, values, header keys and values), for the flow control. */
function recordBytesOf(request: PublishRequest__Output): number {
  let n = 0;
  for (const r of request.records) {
    n += (r.key?.length ?? 0) + (r.value?.length ?? 0);
    for (const h of r.headers) n += h.key.length + (h.value?.length ?? 0);
  }
  return n;
}

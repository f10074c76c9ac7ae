/**
 * The Subscribe stream: resolves the starting point (offset, earliest, latest or timestamp), then
 * sends whole batches below the high watermark as they become available, parking between reads,
 * until the client cancels. A client that stops reading stops the stream: `send` waits once the
 * stream's send buffer holds its bound, so a stuck subscriber costs the broker at most
 * `STREAM_SEND_BUFFER_BYTES_MAX` plus one message. Leadership loss ends the stream with NOT_LEADER so the client can
 * re-resolve the leader and resume from its next offset.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import { SpecialOffset } from "../shared/generated/samsa/v1/SpecialOffset.js";
import type { SubscribeRequest__Output } from "../shared/generated/samsa/v1/SubscribeRequest.js";
import type { SubscribeResponse } from "../shared/generated/samsa/v1/SubscribeResponse.js";
import type { BrokerMetrics } from "./broker-metrics.js";
import type { Partition } from "./partition.js";
import type { ReplicaManager } from "./replica-manager.js";
import type { StreamSend } from "../shared/grpc/handlers.js";
import { checkTopicPartition, limit, parseInt64 } from "../shared/request-parsing.js";

/** Default and cap of one streamed message's record bytes. */
export const SUBSCRIBE_MAX_BYTES_DEFAULT = 1024 * 1024;
export const SUBSCRIBE_MAX_BYTES_MAX = 16 * 1024 * 1024;
/** How long a subscription parks before re-checking leadership, ms. */
export const SUBSCRIBE_PARK_MS = 1_000;

async function startOffset(request: SubscribeRequest__Output, part: Partition): Promise<number> {
  const log = part.log;
  switch (request.start) {
    case "offset":
      return parseInt64(request.offset, "offset");
    case "timestamp": {
      const found = await log.offsetForTimestamp(parseInt64(request.timestamp, "timestamp"));
      return found?.offset ?? log.highWatermark;
    }
    case "special":
      if (request.special === SpecialOffset.SPECIAL_OFFSET_EARLIEST) return log.logStartOffset;
      if (request.special === SpecialOffset.SPECIAL_OFFSET_LATEST) return log.highWatermark;
      throw new SamsaError(ErrorCode.INVALID_REQUEST, `unknown special offset ${request.special}`);
    default:
      return log.highWatermark;
  }
}

/** Runs one subscription until the signal aborts; throws call-level errors. */
export async function subscribe(
  request: SubscribeRequest__Output,
  send: StreamSend<SubscribeResponse>,
  signal: AbortSignal,
  replicas: ReplicaManager,
  metrics: BrokerMetrics,
): Promise<void> {
  checkTopicPartition(request.topic, request.partition);
  const maxBytes = limit(request.maxBytes, SUBSCRIBE_MAX_BYTES_DEFAULT, 1, SUBSCRIBE_MAX_BYTES_MAX);
  let part = replicas.partitionFor(request.topic, request.partition, true);
  let offset = await startOffset(request, part);
  if (offset < part.log.logStartOffset || offset > part.log.logEndOffset) {
    throw new SamsaError(
      ErrorCode.OFFSET_OUT_OF_RANGE,
      `offset ${offset} is outside [${part.log.logStartOffset}, ${part.log.logEndOffset}]`,
    );
  }
  while (!signal.aborted) {
    part = replicas.partitionFor(request.topic, request.partition, true);
    const r = await part.log.read(offset, maxBytes);
    if (r.bytes.length > 0) {
      // The record bytes count against the stream's send buffer bound: a client that does not
      // read stops this loop (no read ahead of what the transport can take), see handlers.ts.
      const message = {
        records: r.bytes,
        highWatermark: String(r.highWatermark),
        nextOffset: String(r.nextOffset),
      };
      await send(message, r.bytes.length);
      metrics.recordBytesOut(request.topic, r.bytes.length);
      offset = r.nextOffset;
      continue;
    }
    await part.waitForData(offset, SUBSCRIBE_PARK_MS, signal);
  }
}

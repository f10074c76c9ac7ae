/**
 * InitProducerId through the gateway: forwarded to a live broker (any: ids are unique in the
 * whole cluster), the next one after a retriable failure, within the call's deadline. The
 * gateway's own idempotent Publish gets its producer ids the same way (`idempotence.ts`).
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type { InitProducerIdResponse__Output } from "../shared/generated/samsa/v1/InitProducerIdResponse.js";
import { unary } from "../shared/grpc/client.js";
import { type Deadline, sleep } from "../shared/retry.js";
import { asSamsaError, ROUTE_TIMEOUT_MS_DEFAULT, type Routing } from "./routing.js";

/** Pause after a round over every live broker failed, ms. */
export const INIT_PRODUCER_ID_RETRY_PAUSE_MS = 100;

/**
 * Asks live brokers in turn for a producer id.
 * @throws SamsaError the last failure once the deadline passed or the signal aborted; at once a
 *   non-retriable one
 */
export async function initProducerId(
  routing: Routing,
  deadline: Deadline,
  signal: AbortSignal,
): Promise<InitProducerIdResponse__Output> {
  let last = new SamsaError(ErrorCode.LEADER_NOT_AVAILABLE, "no live broker for InitProducerId");
  for (let round = 0; ; round++) {
    const brokers = routing.deps.metadata.brokers();
    for (let i = 0; i < brokers.length; i++) {
      const b = brokers[(i + round) % brokers.length]!;
      const target = routing.deps.pool.get(b.id);
      if (target === undefined) continue;
      try {
        return await unary(
          target.client,
          "InitProducerId",
          {},
          { deadlineMs: deadline.requestMs(ROUTE_TIMEOUT_MS_DEFAULT), signal },
        );
      } catch (err) {
        last = asSamsaError(err);
        if (!last.retriable) throw last;
      }
      if (deadline.expired || signal.aborted) throw last;
    }
    if (deadline.expired || signal.aborted) throw last;
    await sleep(INIT_PRODUCER_ID_RETRY_PAUSE_MS, signal, deadline);
  }
}

/**
 * The GatewayService gRPC handlers: thin translations to the router (Produce, Fetch,
 * ListOffsets, Metadata), Publish and the streams (Subscribe, Consume). Each unary call's retry
 * deadline is the client's deadline less a margin (so the client hears the last error, not
 * DEADLINE_EXCEEDED), at most {@link ROUTE_TIMEOUT_MS_DEFAULT}. Errors are thrown as SamsaErrors
 * and mapped to gRPC once, in the server wrapper.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Partitioner } from "../shared/partitioner.js";
import { Deadline } from "../shared/retry.js";
import type { GatewayServiceHandlers } from "../shared/generated/samsa/v1/GatewayService.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import { consume, subscribe } from "./consume.js";
import { initProducerId } from "./producer-id.js";
import type { GatewayProducers } from "./idempotence.js";
import { appendThroughRouter, publish } from "./publish.js";
import { PublishAccumulator } from "./publish-accumulator.js";
import { publishStream } from "./publish-stream.js";
import type { Router } from "./router.js";
import { ROUTE_DEADLINE_MARGIN_MS, ROUTE_TIMEOUT_MS_DEFAULT, type Routing } from "./routing.js";

/** What the handlers need. */
export interface GatewayServiceDeps {
  readonly routing: Routing;
  readonly router: Router;
  readonly partitioner: Partitioner;
  /** The gateway's idempotent producer for Publish. */
  readonly producers?: GatewayProducers;
}

/** The retry deadline of a unary call: the client's deadline less the margin, capped. */
export function routeDeadline(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, "getDeadline">) {
  const clientDeadline = call.getDeadline();
  const atMs = clientDeadline instanceof Date ? clientDeadline.getTime() : clientDeadline;
  const leftMs = Number.isFinite(atMs) ? atMs - Date.now() - ROUTE_DEADLINE_MARGIN_MS : Infinity;
  return new Deadline(Math.max(0, Math.min(leftMs, ROUTE_TIMEOUT_MS_DEFAULT)));
}

/** Builds the handlers. */
export function gatewayServiceHandlers(
  deps: GatewayServiceDeps,
): ServiceHandlers<GatewayServiceHandlers> {
  const { router } = deps;
  const appends = new PublishAccumulator(appendThroughRouter(deps), (callers) =>
    deps.routing.deps.metrics.recordPublishAppend(callers),
  );
  return {
    Produce: (request, call, ctx) => router.produce(request, routeDeadline(call), ctx.signal),
    Fetch: (request, call, ctx) => router.fetch(request, routeDeadline(call), ctx.signal),
    ListOffsets: (request, call, ctx) =>
      router.listOffsets(request, routeDeadline(call), ctx.signal),
    Metadata: async (request) => router.metadata(request.topics),
    InitProducerId: (_request, call, ctx) =>
      initProducerId(deps.routing, routeDeadline(call), ctx.signal),
    Publish: (request, call, ctx) =>
      publish(request, deps, appends, routeDeadline(call), ctx.signal),
    PublishStream: (requests, _call, send, ctx) =>
      publishStream(requests, send, deps, appends, ctx.signal),
    Subscribe: (request, _call, send, ctx) => subscribe(request, deps, send, ctx.signal),
    Consume: (request, _call, send, ctx) => consume(request, deps, send, ctx.signal),
  };
}

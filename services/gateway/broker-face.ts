/**
 * The gateway's BrokerService: the same service a broker serves, so that a Kafka-style client
 * (the TypeScript client, the CLI) given the gateway as its bootstrap works unchanged. Metadata
 * answers with the real brokers, partitions, leaders and epochs, but every broker's address is
 * the gateway's own, as the client dialled it (the call's HTTP/2 `:authority`) — so the client
 * sends everything back to the gateway, which routes each partition to its leader (as Kafka
 * proxies rewrite broker addresses). Produce, Fetch, ListOffsets, Subscribe and
 * OffsetsForLeaderEpoch are routed like the GatewayService's.
 */
import type * as grpc from "@grpc/grpc-js";
import type { BrokerServiceHandlers } from "../shared/generated/samsa/v1/BrokerService.js";
import type { MetadataResponse } from "../shared/generated/samsa/v1/MetadataResponse.js";
import { splitAddress } from "../shared/grpc/addresses.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import type { HostPort } from "../shared/config/index.js";
import { subscribe } from "./consume.js";
import { type GatewayServiceDeps, routeDeadline } from "./gateway-service.js";
import { initProducerId } from "./producer-id.js";

/** Metadata with every broker's address replaced by `self`. */
export function asSeenThroughGateway(answer: MetadataResponse, self: HostPort): MetadataResponse {
  const brokers = (answer.brokers ?? []).map((b) => ({ ...b, host: self.host, port: self.port }));
  return { ...answer, brokers };
}

/**
 * The gateway address a call came in on: its `:authority` when that is a `host:port`, else the
 * gateway's advertised address (a client that sent no usable authority still gets one it can
 * dial when it is on the advertised network).
 */
export function addressDialled(
  call: Pick<grpc.ServerUnaryCall<unknown, unknown>, "getHost">,
  advertised: HostPort,
): HostPort {
  return splitAddress(call.getHost()) ?? advertised;
}

/** Builds the BrokerService handlers of the gateway. */
export function brokerFaceHandlers(
  deps: GatewayServiceDeps,
  advertised: () => HostPort,
): ServiceHandlers<BrokerServiceHandlers> {
  const { router } = deps;
  return {
    Produce: (request, call, ctx) => router.produce(request, routeDeadline(call), ctx.signal),
    Fetch: (request, call, ctx) => router.fetch(request, routeDeadline(call), ctx.signal),
    ListOffsets: (request, call, ctx) =>
      router.listOffsets(request, routeDeadline(call), ctx.signal),
    OffsetsForLeaderEpoch: (request, call, ctx) =>
      router.offsetsForLeaderEpoch(request, routeDeadline(call), ctx.signal),
    Metadata: async (request, call) =>
      asSeenThroughGateway(router.metadata(request.topics), addressDialled(call, advertised())),
    Subscribe: (request, _call, send, ctx) => subscribe(request, deps, send, ctx.signal),
    InitProducerId: (_request, call, ctx) =>
      initProducerId(deps.routing, routeDeadline(call), ctx.signal),
  };
}

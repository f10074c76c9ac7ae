/**
 * The GroupService handlers of a gateway (proto/samsa/v1/groups.proto): thin translations to
 * {@link GroupCalls} (served here or forwarded to the group's owner) and to the ConsumeGroup
 * stream. Errors are thrown as SamsaErrors and mapped to gRPC once, in the server wrapper.
 */
import type * as grpc from "@grpc/grpc-js";
import type { GroupServiceHandlers } from "../../shared/generated/samsa/v1/GroupService.js";
import type { ServiceHandlers } from "../../shared/grpc/handlers.js";
import { unary } from "../../shared/grpc/client.js";
import { consumeGroup } from "./consume-group.js";
import {
  type Caller,
  CLIENT_HOST_METADATA_KEY,
  FORWARD_TIMEOUT_MS,
  FORWARDED_METADATA_KEY,
  type GroupCalls,
} from "./group-calls.js";
import { resetOffsets } from "./group-admin.js";

/** The caller's deadline (epoch ms), or undefined when it set none. */
function deadlineAtMs(call: { getDeadline(): grpc.Deadline }): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/** The caller of a gRPC call. */
function callerOf(
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
  signal: AbortSignal,
): Caller {
  const forwarded = call.metadata.get(FORWARDED_METADATA_KEY).length > 0;
  const [host] = call.metadata.get(CLIENT_HOST_METADATA_KEY);
  return {
    forwarded,
    clientHost: forwarded && typeof host === "string" ? host : call.getPeer(),
    signal,
    deadlineAtMs: deadlineAtMs(call),
  };
}

/** The GroupService handlers. */
export function groupServiceHandlers(calls: GroupCalls): ServiceHandlers<GroupServiceHandlers> {
  return {
    ConsumerGroupHeartbeat: (request, call, ctx) =>
      calls.heartbeat(request, callerOf(call, ctx.signal)),
    LeaveGroup: async (request, call, ctx) => {
      await calls.leave(
        request.groupId,
        request.memberId,
        request.temporary,
        callerOf(call, ctx.signal),
      );
      return {};
    },
    CommitOffsets: async (request, call, ctx) => ({
      results: await calls.commit(request, callerOf(call, ctx.signal)),
    }),
    FetchOffsets: async (request, call, ctx) => ({
      offsets: await calls.fetchOffsets(
        request.groupId,
        request.topics,
        callerOf(call, ctx.signal),
      ),
    }),
    ListGroups: async (request, call) => {
      const all = await calls.list(deadlineAtMs(call));
      const states = new Set(request.states as number[]);
      return { groups: states.size === 0 ? all : all.filter((g) => states.has(g.state as number)) };
    },
    DescribeGroups: async (request, call, ctx) => ({
      groups: await Promise.all(
        request.groupIds.map((g) => calls.describe(g, callerOf(call, ctx.signal))),
      ),
    }),
    DeleteGroups: async (request, call, ctx) => ({
      results: await Promise.all(
        request.groupIds.map((g) => calls.deleteGroup(g, callerOf(call, ctx.signal))),
      ),
    }),
    ResetOffsets: async (request, call, ctx) => {
      const caller = callerOf(call, ctx.signal);
      const partitions = await calls.route(
        request.groupId,
        caller,
        (rt) => resetOffsets(calls.deps.manager, calls.deps.router, rt, request, ctx.signal),
        async (client, metadata) =>
          (
            await unary(client, "ResetOffsets", request, {
              metadata,
              deadlineMs: FORWARD_TIMEOUT_MS,
              signal: ctx.signal,
            })
          ).partitions,
      );
      return { partitions, executed: request.execute };
    },
    ConsumeGroup: (request, call, send, ctx) =>
      consumeGroup(request, calls, send, callerOf(call, ctx.signal)),
  };
}

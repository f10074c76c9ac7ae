/**
 * AdminService on the gateway: the one client endpoint also creates, deletes and describes
 * topics, runs leader elections and partition reassignments. Each call is passed to the active controller (from the etcd mirror) by the same
 * `callController` the admin client uses: a NOT_CONTROLLER answer during a controller failover is
 * followed or retried with backoff, by the error table's retriable flag, until the call's deadline.
 */
import type { AdminServiceHandlers } from "../shared/generated/samsa/v1/AdminService.js";
import { ConnectionPool } from "../shared/grpc/connection-pool.js";
import { callController } from "../shared/grpc/controller-call.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import { adminService } from "../shared/grpc/proto.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";
import { Deadline } from "../shared/retry.js";

/** Longest a proxied admin call may take when the client sets no deadline, ms. */
export const ADMIN_PROXY_DEADLINE_MS_DEFAULT = 30_000;

type Method =
  | "CreateTopics"
  | "DeleteTopics"
  | "DescribeTopics"
  | "DescribeCluster"
  | "ElectLeaders"
  | "AlterPartitionReassignments"
  | "ListPartitionReassignments";

/** Builds the proxy handlers; `close()` drops the controller connections. */
export function adminProxyHandlers(metadata: ClusterMetadata): {
  handlers: ServiceHandlers<AdminServiceHandlers>;
  close(): void;
} {
  const pool = new ConnectionPool(adminService.Client);
  const candidates = () => {
    const active = metadata.activeController();
    return active ? [active.address] : [];
  };

  async function forward<Req, Res>(
    method: Method,
    request: Req,
    call: { getDeadline(): Date | number },
  ): Promise<Res> {
    const deadline = deadlineOf(call);
    const { response } = await callController(pool, method, request as never, {
      candidates,
      deadline,
      requestTimeoutMs: deadline.timeoutMs,
    });
    return response as Res;
  }

  const handlers: ServiceHandlers<AdminServiceHandlers> = {
    CreateTopics: (request, call) => forward("CreateTopics", request, call),
    DeleteTopics: (request, call) => forward("DeleteTopics", request, call),
    DescribeTopics: (request, call) => forward("DescribeTopics", request, call),
    DescribeCluster: (request, call) => forward("DescribeCluster", request, call),
    ElectLeaders: (request, call) => forward("ElectLeaders", request, call),
    AlterPartitionReassignments: (request, call) =>
      forward("AlterPartitionReassignments", request, call),
    ListPartitionReassignments: (request, call) =>
      forward("ListPartitionReassignments", request, call),
  };
  return { handlers, close: () => pool.close() };
}

/** The caller's deadline, or {@link ADMIN_PROXY_DEADLINE_MS_DEFAULT} when it set none. */
function deadlineOf(call: { getDeadline(): Date | number }): Deadline {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) && ms > 0
    ? Deadline.at(ms)
    : new Deadline(ADMIN_PROXY_DEADLINE_MS_DEFAULT);
}

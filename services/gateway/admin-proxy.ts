/**
 * AdminService on the gateway: the one client endpoint also creates, deletes and describes
 * topics. Each call is passed to the active controller (from the etcd mirror); a NOT_CONTROLLER
 * answer during a controller failover is retried, by the error table's retriable flag, until the
 * call's deadline.
 */
import { ErrorCode, SamsaError } from "../shared/errors.js";
import type {
  AdminServiceClient,
  AdminServiceHandlers,
} from "../shared/generated/samsa/v1/AdminService.js";
import { createClient, unary } from "../shared/grpc/client.js";
import type { ServiceHandlers } from "../shared/grpc/handlers.js";
import { adminService } from "../shared/grpc/proto.js";
import type { ClusterMetadata } from "../shared/metadata/cluster-metadata.js";

/** Longest a proxied admin call may take when the client sets no deadline, ms. */
export const ADMIN_PROXY_DEADLINE_MS_DEFAULT = 30_000;
/** Pause between attempts while no controller is active or one is taking over, ms. */
export const ADMIN_PROXY_RETRY_BACKOFF_MS = 200;

type Method = "CreateTopics" | "DeleteTopics" | "DescribeTopics" | "DescribeCluster";

/** Builds the proxy handlers; `close()` drops the controller connections. */
export function adminProxyHandlers(metadata: ClusterMetadata): {
  handlers: ServiceHandlers<AdminServiceHandlers>;
  close(): void;
} {
  const clients = new Map<string, AdminServiceClient>();
  const clientFor = (address: string) => {
    let c = clients.get(address);
    if (!c) {
      c = createClient(adminService.Client, address);
      clients.set(address, c);
    }
    return c;
  };

  async function forward<Req, Res>(method: Method, request: Req, deadline: number): Promise<Res> {
    let last: unknown = new SamsaError(ErrorCode.NOT_CONTROLLER, "no controller is active");
    while (Date.now() < deadline) {
      const active = metadata.activeController();
      if (active) {
        try {
          return (await unary(clientFor(active.address), method, request as never, {
            deadlineMs: Math.max(1, deadline - Date.now()),
          })) as Res;
        } catch (err) {
          if (!(err instanceof SamsaError) || !err.retriable) throw err;
          last = err;
        }
      }
      await new Promise((r) => setTimeout(r, ADMIN_PROXY_RETRY_BACKOFF_MS));
    }
    throw last;
  }

  const deadlineOf = (call: { getDeadline(): Date | number }) => {
    const d = call.getDeadline();
    const ms = d instanceof Date ? d.getTime() : d;
    return Number.isFinite(ms) && ms > 0 ? ms : Date.now() + ADMIN_PROXY_DEADLINE_MS_DEFAULT;
  };

  const handlers: ServiceHandlers<AdminServiceHandlers> = {
    CreateTopics: (request, call) => forward("CreateTopics", request, deadlineOf(call)),
    DeleteTopics: (request, call) => forward("DeleteTopics", request, deadlineOf(call)),
    DescribeTopics: (request, call) => forward("DescribeTopics", request, deadlineOf(call)),
    DescribeCluster: (request, call) => forward("DescribeCluster", request, deadlineOf(call)),
  };
  return {
    handlers,
    close: () => {
      for (const c of clients.values()) c.close();
      clients.clear();
    },
  };
}

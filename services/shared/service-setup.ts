/**
 * Start-up steps every service repeats: connecting to the cluster's etcd with its key layout, and
 * working out the address it advertises once its gRPC port is bound.
 */
import type { Etcd3 } from "etcd3";
import type { Registry } from "prom-client";
import type { CommonConfig, HostPort } from "./config/index.js";
import { connectEtcd } from "./etcd/client.js";
import { EtcdKeys } from "./etcd/keys.js";

/** Connects to etcd (`etcd.endpoints`, within `etcd.connection.timeout.ms`) for this cluster. */
export async function connectClusterEtcd(
  c: CommonConfig,
  registry: Registry,
): Promise<{ etcd: Etcd3; keys: EtcdKeys }> {
  const etcd = await connectEtcd({
    endpoints: c.etcdEndpoints,
    connectTimeoutMs: c.etcdConnectionTimeoutMs,
    registry,
  });
  return { etcd, keys: EtcdKeys.forCluster(c.clusterId, c.etcdPrefix) };
}

/** The advertised listener, with port 0 replaced by the port the server actually bound. */
export function advertisedAddress(c: CommonConfig, boundPort: number): HostPort {
  const { host, port } = c.advertisedListener;
  return { host, port: port === 0 ? boundPort : port };
}

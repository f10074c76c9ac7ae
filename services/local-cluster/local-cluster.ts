/**
 * A local Samsa cluster of real processes: one etcd, N controllers, M brokers and G gateways
 * (none by default), each its own child process
 * (`node --import tsx services/<svc>/main.ts --key=value ...`), all data under one directory.
 * Used by `npm run cluster` (fixed ports) and by the integration tests (ephemeral
 * ports, a fresh temp dir each), with fault injection through the real process:
 *
 * ```ts
 * const cluster = await startLocalCluster({ brokers: 3, gateways: 1 });
 * after(() => cluster.stop());
 * const active = await cluster.activeController();
 * await active.handle.kill(); // SIGKILL
 * await cluster.broker(2).restart();
 * const gateway = cluster.gateways[0]; // `host:port` of gateway-1
 * ```
 *
 * Layout of `dataDir`: `etcd/` (etcd's data), `broker-<id>/` (that broker's `log.dirs`) and
 * `logs/<name>.log` (each process's stdout and stderr, appended across restarts; `name` is
 * `etcd`, `controller-<i>`, `broker-<id>` or `gateway-<i>`). Controllers get
 * `controller.id=controller-<i>`, brokers `broker.id=<i>`, gateways `gateway.id=gateway-<i>`,
 * all counting from 1.
 *
 * Network faults (test/support/netns.ts): `brokerHosts` and `brokerCommandPrefixes` run each
 * broker in a network namespace of its own (`ip netns exec <ns> node ...`), bound to and
 * advertising that namespace's address, and `etcdHost` puts etcd's client URL on an address the
 * namespaces reach (a bridge's); by default everything binds `host` in this namespace.
 *
 * Readiness: a process is ready when its `/healthz` answers 200 (a broker only once it is
 * registered in etcd, so a broker restarted after a crash is ready once it has outwaited its
 * predecessor's registration lease); the cluster is ready when every controller's
 * DescribeCluster names an active controller and lists every running broker, and every running
 * gateway's Metadata lists every running broker too. Every wait is deadline-bounded. The children get the parent's environment without `SAMSA_*` variables, so a
 * shell configured for the CLI cannot change (or break, with an unknown key) the cluster.
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AdminServiceClient } from "../shared/generated/samsa/v1/AdminService.js";
import type { DescribeClusterResponse__Output } from "../shared/generated/samsa/v1/DescribeClusterResponse.js";
import type { GatewayServiceClient } from "../shared/generated/samsa/v1/GatewayService.js";
import { createClient, unary } from "../shared/grpc/client.js";
import { adminService, gatewayService } from "../shared/grpc/proto.js";
import { type EtcdProcess, startEtcd } from "./etcd-process.js";
import { waitFor } from "../shared/wait-for.js";
import {
  etcdHandle,
  PROBE_DEADLINE_MS,
  PROBE_INTERVAL_MS,
  type ProcessHandle,
  ServiceProcess,
  type ServiceSpec,
} from "./cluster-process.js";

export type { ProcessHandle, ProcessKind } from "./cluster-process.js";

/** Log lines per process quoted when the cluster does not become ready. */
const READY_FAILURE_LOG_LINES = 15;
/** Controllers started when the options name no count. */
export const LOCAL_CLUSTER_CONTROLLERS_DEFAULT = 2;
/** Brokers started when the options name no count. */
export const LOCAL_CLUSTER_BROKERS_DEFAULT = 3;
/** Gateways started when the options name no count (none: most tests talk to brokers). */
export const LOCAL_CLUSTER_GATEWAYS_DEFAULT = 0;
/**
 * How long one process may take to become ready, ms. Covers tsx's start-up plus a restarted
 * broker waiting out its crashed predecessor's registration lease (6 s + 1 s grace).
 */
export const PROCESS_READY_TIMEOUT_MS_DEFAULT = 30_000;
/** How long the whole cluster may take to become ready once its processes are, ms. */
export const CLUSTER_READY_TIMEOUT_MS_DEFAULT = 30_000;
/**
 * How long a process may take to exit after SIGTERM before it gets SIGKILL, ms (a broker's
 * graceful stop lets in-flight calls finish for up to 5 s, then flushes and deregisters).
 */
export const PROCESS_STOP_TIMEOUT_MS_DEFAULT = 15_000;
/** Log levels of the services' `log.level`. */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** Fixed ports; a list shorter than the count (or none) means ephemeral ports for the rest. */
export interface LocalClusterPorts {
  /** gRPC ports of controller 1, 2, ... */
  controllers?: readonly number[];
  /** gRPC ports of broker 1, 2, ... */
  brokers?: readonly number[];
  /** `/metrics` + `/healthz` ports of controller 1, 2, ... */
  controllerMetrics?: readonly number[];
  /** `/metrics` + `/healthz` ports of broker 1, 2, ... */
  brokerMetrics?: readonly number[];
  /** gRPC ports of gateway 1, 2, ... */
  gateways?: readonly number[];
  /** `/metrics` + `/healthz` ports of gateway 1, 2, ... */
  gatewayMetrics?: readonly number[];
  /** etcd's client port (its `/metrics` too). */
  etcdClient?: number;
  /** etcd's peer port. */
  etcdPeer?: number;
}

/** Options of {@link startLocalCluster}. Every field is optional. */
export interface LocalClusterOptions {
  /** Directory of all data and logs (created; kept by `stop()`). Default: a fresh temp dir. */
  dataDir?: string;
  /** Keep a default temp `dataDir` on `stop()` (to read the logs). Default false. */
  keepDataDir?: boolean;
  /** Number of controllers. Default {@link LOCAL_CLUSTER_CONTROLLERS_DEFAULT}. */
  controllers?: number;
  /** Number of brokers. Default {@link LOCAL_CLUSTER_BROKERS_DEFAULT}. */
  brokers?: number;
  /** Number of gateways. Default {@link LOCAL_CLUSTER_GATEWAYS_DEFAULT}. */
  gateways?: number;
  /** Address every process binds and advertises. Default `127.0.0.1`. */
  host?: string;
  /**
   * Address broker 1, 2, ... binds and advertises instead of `host` (e.g. its network
   * namespace's); a list shorter than the brokers (or none) means `host` for the rest.
   */
  brokerHosts?: readonly string[];
  /**
   * Command broker 1, 2, ... runs under (e.g. `["ip", "netns", "exec", "<ns>"]`: it must exec
   * node in place); a list shorter than the brokers (or none) means node itself for the rest.
   */
  brokerCommandPrefixes?: readonly (readonly string[])[];
  /**
   * Address etcd serves clients on and every process dials it at (e.g. a bridge address that
   * brokers in network namespaces reach). Default `127.0.0.1`.
   */
  etcdHost?: string;
  /** Fixed ports. Default: all ephemeral. */
  ports?: LocalClusterPorts;
  /** `log.level` of controllers, brokers and gateways. Default `info`. */
  logLevel?: LogLevel;
  /** Extra `--key=value` flags for every controller. */
  controllerArgs?: readonly string[];
  /** Extra `--key=value` flags for every broker (e.g. `--message.max.bytes=10000`). */
  brokerArgs?: readonly string[];
  /** Extra `--key=value` flags for every gateway. */
  gatewayArgs?: readonly string[];
  /** Readiness deadline of one process start or restart, ms. */
  processReadyTimeoutMs?: number;
  /** Readiness deadline of the cluster once its processes run, ms. */
  clusterReadyTimeoutMs?: number;
  /** SIGTERM-to-SIGKILL delay of `stop()`, ms. */
  stopTimeoutMs?: number;
  /**
   * Run every child in its own process group, so a terminal's Ctrl-C reaches only the parent,
   * which then stops brokers, controllers and etcd in that order. Default false (children get
   * the terminal's signals, and die with a test run that is interrupted). With it, the parent
   * stops gateways, brokers, controllers and etcd in that order.
   */
  detached?: boolean;
}

/** The active controller as DescribeCluster names it. */
export interface ActiveController {
  /** Its process. */
  readonly handle: ProcessHandle;
  /** Its `controller.id`. */
  readonly id: string;
  /** Its epoch (the create revision of its election key). */
  readonly epoch: number;
  /** Its advertised gRPC address. */
  readonly address: string;
}

/** A running local cluster; see the module comment. */
export interface LocalCluster {
  /** Directory of all data and logs. */
  readonly dataDir: string;
  /** `dataDir/logs`: one `<name>.log` per process. */
  readonly logDir: string;
  /** etcd's client URL, e.g. `http://127.0.0.1:2379`. */
  readonly etcdEndpoint: string;
  /** The etcd process. */
  readonly etcd: ProcessHandle;
  /** Controller processes, `controller-1` first. */
  readonly controllerProcesses: readonly ProcessHandle[];
  /** Broker processes, broker 1 first. */
  readonly brokerProcesses: readonly ProcessHandle[];
  /** Gateway processes, `gateway-1` first (empty unless `gateways` was given). */
  readonly gatewayProcesses: readonly ProcessHandle[];
  /** Controller gRPC addresses (`host:port`), controller 1 first. */
  readonly controllers: readonly string[];
  /** Broker gRPC addresses (`host:port`), broker 1 first: a client's bootstrap list. */
  readonly bootstrap: readonly string[];
  /** Gateway gRPC addresses (`host:port`), gateway 1 first. */
  readonly gateways: readonly string[];
  /** The broker with `broker.id` `id` (throws for an unknown id). */
  broker(id: number): ProcessHandle;
  /** The controller with `controller.id` `id` (throws for an unknown id). */
  controller(id: string): ProcessHandle;
  /** The gateway `gateway-<i>` (counting from 1; throws for an unknown one). */
  gateway(i: number): ProcessHandle;
  /** DescribeCluster from the first running, unpaused controller that answers. */
  describeCluster(): Promise<DescribeClusterResponse__Output>;
  /**
   * The active controller; waits (bounded, default the cluster readiness deadline) until
   * DescribeCluster names one whose process runs unpaused: right after the active controller
   * died, the survivors still name it until its election lease expires.
   */
  activeController(options?: { timeoutMs?: number }): Promise<ActiveController>;
  /**
   * Waits until every running controller names an active one and lists every running broker,
   * and every running gateway's Metadata lists every running broker.
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Stops gateways, brokers, controllers, then etcd; removes a default temp `dataDir`. */
  stop(): Promise<void>;
}

/** Resolved options, with defaults. */
interface Resolved {
  controllers: number;
  brokers: number;
  gateways: number;
  host: string;
  logLevel: LogLevel;
  detached: boolean;
  readyTimeoutMs: number;
  clusterReadyTimeoutMs: number;
  stopTimeoutMs: number;
}

/** Starts etcd, the controllers and the brokers, and waits until the cluster is ready. */
export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const r: Resolved = {
    controllers: options.controllers ?? LOCAL_CLUSTER_CONTROLLERS_DEFAULT,
    brokers: options.brokers ?? LOCAL_CLUSTER_BROKERS_DEFAULT,
    gateways: options.gateways ?? LOCAL_CLUSTER_GATEWAYS_DEFAULT,
    host: options.host ?? "127.0.0.1",
    logLevel: options.logLevel ?? "info",
    detached: options.detached ?? false,
    readyTimeoutMs: options.processReadyTimeoutMs ?? PROCESS_READY_TIMEOUT_MS_DEFAULT,
    clusterReadyTimeoutMs: options.clusterReadyTimeoutMs ?? CLUSTER_READY_TIMEOUT_MS_DEFAULT,
    stopTimeoutMs: options.stopTimeoutMs ?? PROCESS_STOP_TIMEOUT_MS_DEFAULT,
  };
  if (!Number.isInteger(r.controllers) || r.controllers < 1)
    throw new Error(`controllers must be a positive integer, not ${r.controllers}`);
  if (!Number.isInteger(r.brokers) || r.brokers < 0)
    throw new Error(`brokers must be a non-negative integer, not ${r.brokers}`);
  if (!Number.isInteger(r.gateways) || r.gateways < 0)
    throw new Error(`gateways must be a non-negative integer, not ${r.gateways}`);
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "samsa-cluster-")));
  const removeDir = ownDir && !(options.keepDataDir ?? false);
  const logDir = join(dataDir, "logs");
  await mkdir(logDir, { recursive: true });
  const ports = options.ports ?? {};
  const etcdLog = join(logDir, "etcd.log");
  let etcd: EtcdProcess | undefined;
  let processes: Awaited<ReturnType<typeof createProcesses>>;
  try {
    etcd = await startEtcd({
      dataDir: join(dataDir, "etcd"),
      clientPort: ports.etcdClient,
      peerPort: ports.etcdPeer,
      host: options.etcdHost,
      logFile: etcdLog,
      detached: r.detached,
    });
    processes = await createProcesses(r, options, dataDir, logDir, etcd);
  } catch (err) {
    await etcd?.stop();
    if (removeDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const { controllers, brokers, gateways } = processes;
  const cluster = assemble(
    r,
    dataDir,
    logDir,
    etcdHandle(etcd, etcdLog),
    etcd.endpoint,
    processes,
    removeDir,
  );
  try {
    const all = [...controllers, ...brokers, ...gateways];
    const started = await Promise.allSettled(all.map((p) => p.start()));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    await cluster.waitReady();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** The processes of a cluster, by kind. */
interface ClusterProcesses {
  controllers: ServiceProcess[];
  brokers: ServiceProcess[];
  gateways: ServiceProcess[];
}

/** The controller, broker and gateway processes, not started yet. */
async function createProcesses(
  r: Resolved,
  options: LocalClusterOptions,
  dataDir: string,
  logDir: string,
  etcd: EtcdProcess,
): Promise<ClusterProcesses> {
  const ports = options.ports ?? {};
  const spec = (
    kind: ServiceSpec["kind"],
    name: string,
    id: string,
    extra: string[],
    host = r.host,
    commandPrefix?: readonly string[],
  ): ServiceSpec => ({
    kind,
    name,
    id,
    host,
    commandPrefix,
    logFile: join(logDir, `${name}.log`),
    args: (port: number, metricsPort: number) => [
      ...extra,
      `--listeners=${host}:${port}`,
      `--metrics.host=${host}`,
      `--metrics.port=${metricsPort}`,
      `--etcd.endpoints=${etcd.endpoint}`,
      `--log.level=${r.logLevel}`,
    ],
    detached: r.detached,
    readyTimeoutMs: r.readyTimeoutMs,
    stopTimeoutMs: r.stopTimeoutMs,
  });
  const controllers: ServiceProcess[] = [];
  for (let i = 1; i <= r.controllers; i++) {
    const id = `controller-${i}`;
    const extra = [`--controller.id=${id}`, ...(options.controllerArgs ?? [])];
    const s = spec("controller", id, id, extra);
    controllers.push(
      await ServiceProcess.create(s, ports.controllers?.[i - 1], ports.controllerMetrics?.[i - 1]),
    );
  }
  const brokers: ServiceProcess[] = [];
  for (let id = 1; id <= r.brokers; id++) {
    const name = `broker-${id}`;
    const extra = [
      `--broker.id=${id}`,
      `--log.dirs=${join(dataDir, name)}`,
      ...(options.brokerArgs ?? []),
    ];
    const s = spec(
      "broker",
      name,
      String(id),
      extra,
      options.brokerHosts?.[id - 1],
      options.brokerCommandPrefixes?.[id - 1],
    );
    brokers.push(
      await ServiceProcess.create(s, ports.brokers?.[id - 1], ports.brokerMetrics?.[id - 1]),
    );
  }
  const gateways: ServiceProcess[] = [];
  for (let i = 1; i <= r.gateways; i++) {
    const id = `gateway-${i}`;
    const extra = [`--gateway.id=${id}`, ...(options.gatewayArgs ?? [])];
    const s = spec("gateway", id, id, extra);
    gateways.push(
      await ServiceProcess.create(s, ports.gateways?.[i - 1], ports.gatewayMetrics?.[i - 1]),
    );
  }
  return { controllers, brokers, gateways };
}

/** Builds the {@link LocalCluster} object over started (or starting) processes. */
function assemble(
  r: Resolved,
  dataDir: string,
  logDir: string,
  etcd: ProcessHandle,
  etcdEndpoint: string,
  processes: ClusterProcesses,
  removeDir: boolean,
): LocalCluster {
  const {
    controllers: controllerProcesses,
    brokers: brokerProcesses,
    gateways: gatewayProcesses,
  } = processes;
  const clients = new Map<string, AdminServiceClient>();
  const adminClient = (address: string): AdminServiceClient => {
    let client = clients.get(address);
    if (!client) {
      client = createClient(adminService.Client, address);
      clients.set(address, client);
    }
    return client;
  };
  const gatewayClients = new Map<string, GatewayServiceClient>();
  const gatewayClient = (address: string): GatewayServiceClient => {
    let client = gatewayClients.get(address);
    if (!client) {
      client = createClient(gatewayService.Client, address);
      gatewayClients.set(address, client);
    }
    return client;
  };
  const askable = () => controllerProcesses.filter((c) => c.running && !c.paused);
  const describeCluster = async (): Promise<DescribeClusterResponse__Output> => {
    let lastError: unknown = new Error("no controller is running");
    for (const c of askable()) {
      try {
        return await unary(
          adminClient(c.address),
          "DescribeCluster",
          {},
          {
            deadlineMs: PROBE_DEADLINE_MS,
          },
        );
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  };
  const byId = <T extends ProcessHandle>(list: readonly T[], id: string, what: string): T => {
    const found = list.find((p) => p.id === id);
    if (!found) throw new Error(`no ${what} with id ${id} in this cluster`);
    return found;
  };
  let stopping: Promise<void> | undefined;

  return {
    dataDir,
    logDir,
    etcdEndpoint,
    etcd,
    controllerProcesses,
    brokerProcesses,
    gatewayProcesses,
    get controllers() {
      return controllerProcesses.map((c) => c.address);
    },
    get bootstrap() {
      return brokerProcesses.map((b) => b.address);
    },
    get gateways() {
      return gatewayProcesses.map((g) => g.address);
    },
    broker: (id) => byId(brokerProcesses, String(id), "broker"),
    controller: (id) => byId(controllerProcesses, id, "controller"),
    gateway: (i) => byId(gatewayProcesses, `gateway-${i}`, "gateway"),
    describeCluster,
    async activeController(options = {}) {
      return waitFor(
        async () => {
          const d = await describeCluster();
          const handle = controllerProcesses.find((c) => c.id === d.controllerId);
          if (!handle?.running || handle.paused) return undefined;
          const epoch = Number(d.controllerEpoch);
          return { handle, id: d.controllerId, epoch, address: d.controllerAddress };
        },
        {
          timeoutMs: options.timeoutMs ?? r.clusterReadyTimeoutMs,
          intervalMs: PROBE_INTERVAL_MS,
          message: "an active controller that is running",
        },
      );
    },
    async waitReady(timeoutMs = r.clusterReadyTimeoutMs) {
      const wanted = brokerProcesses.filter((b) => b.running).map((b) => Number(b.id));
      // What each controller said last: a readiness timeout reports it with the logs' tails.
      const lastSeen = new Map<string, string>();
      try {
        await waitFor(
          async () => {
            const controllers = askable();
            if (controllers.length === 0) throw new Error("no controller is running");
            for (const c of controllers) {
              const d = await unary(
                adminClient(c.address),
                "DescribeCluster",
                {},
                { deadlineMs: PROBE_DEADLINE_MS },
              ).catch((err: Error) => {
                lastSeen.set(c.name, `error ${err.message}`);
                throw err;
              });
              const listed = new Set(d.brokers.map((b) => b.id));
              lastSeen.set(c.name, `controller "${d.controllerId}", brokers [${[...listed]}]`);
              if (d.controllerId === "" || !wanted.every((id) => listed.has(id))) return false;
            }
            return true;
          },
          {
            timeoutMs,
            intervalMs: PROBE_INTERVAL_MS,
            message: `every controller to list brokers [${wanted}] and an active controller`,
          },
        );
      } catch (err) {
        const seen = [...lastSeen].map(([name, what]) => `${name}: ${what}`).join("; ");
        const tails = await Promise.all(
          [...controllerProcesses, ...brokerProcesses].map(async (p) => {
            const text = await readFile(p.logFile, "utf8").catch(() => "");
            const lines = text.trimEnd().split("\n").slice(-READY_FAILURE_LOG_LINES);
            return `--- ${p.name} (running: ${p.running}) ---\n${lines.join("\n")}`;
          }),
        );
        throw new Error(`${(err as Error).message}; last seen: ${seen}\n${tails.join("\n")}`, {
          cause: err,
        });
      }
      await waitFor(
        async () => {
          for (const g of gatewayProcesses.filter((p) => p.running && !p.paused)) {
            const md = await unary(
              gatewayClient(g.address),
              "Metadata",
              { topics: [] },
              { deadlineMs: PROBE_DEADLINE_MS },
            );
            const listed = new Set(md.brokers.map((b) => b.id));
            if (!wanted.every((id) => listed.has(id))) return false;
          }
          return true;
        },
        {
          timeoutMs,
          intervalMs: PROBE_INTERVAL_MS,
          message: `every gateway to list brokers [${wanted}]`,
        },
      );
    },
    stop() {
      stopping ??= (async () => {
        // Gateways first (their clients hear a retriable error), then brokers (they deregister
        // through etcd), etcd last.
        await Promise.all(gatewayProcesses.map((g) => g.stop()));
        await Promise.all(brokerProcesses.map((b) => b.stop()));
        await Promise.all(controllerProcesses.map((c) => c.stop()));
        for (const client of [...clients.values(), ...gatewayClients.values()]) client.close();
        clients.clear();
        gatewayClients.clear();
        await etcd.stop();
        if (removeDir) await rm(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

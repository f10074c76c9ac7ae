/**
 * `npm run cluster`: a local Samsa cluster for development, on the fixed ports the CLI
 * (`services/cli/defaults.ts`) dials by default:
 *
 * | process | gRPC | metrics |
 * |---|---|---|
 * | etcd | `127.0.0.1:19379` (peer `19380`) | on its client port |
 * | controller-1, controller-2 | `127.0.0.1:19090`, `:19091` | `19190`, `19191` |
 * | broker-1, broker-2, broker-3 | `127.0.0.1:19092`, `:19093`, `:19094` | `19192` .. `19194` |
 * | gateway-1 | `127.0.0.1:19095` | `19195` |
 *
 * Data and logs live under `--data-dir` (default `./.samsa`, git-ignored) and survive a restart of
 * the command: topics and records are still there next time. Ctrl-C (SIGINT), SIGTERM or SIGHUP
 * stops the gateway, brokers, controllers and etcd in that order; a second Ctrl-C kills them at once.
 *
 * etcd is Debian's (`apt-get install etcd-server`). `npm run cluster` installs it first when it is
 * missing and the user is root with apt (the `precluster` hook, scripts/bootstrap.sh, which also
 * runs `npm ci` on a fresh clone); run directly, this command only says so and exits 1.
 *
 * Flags: `--data-dir=<dir>`, `--log-level=error|warn|info|debug` (default info), `--help`.
 */
import { createServer } from "node:net";
import { relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { findEtcdBinary } from "../services/local-cluster/etcd-process.js";
import {
  type LocalCluster,
  type LogLevel,
  startLocalCluster,
} from "../services/local-cluster/local-cluster.js";

/** Where data and logs go by default, relative to the working directory. */
export const CLUSTER_DATA_DIR_DEFAULT = ".samsa";
/** Host every process binds and advertises. */
const HOST = "127.0.0.1";
/** Fixed ports (see the module comment). */
const PORTS = Object.freeze({
  controllers: [19090, 19091],
  brokers: [19092, 19093, 19094],
  controllerMetrics: [19190, 19191],
  brokerMetrics: [19192, 19193, 19194],
  gateways: [19095],
  gatewayMetrics: [19195],
  etcdClient: 19379,
  etcdPeer: 19380,
});
/** How often the command checks that every process still runs, ms. */
const WATCH_INTERVAL_MS = 1_000;
const LOG_LEVELS: readonly LogLevel[] = ["error", "warn", "info", "debug"];
/** Exit code after an interrupt that did not wait for a graceful stop (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;
/** Exit code of a bad command line. */
const EXIT_USAGE = 2;

const USAGE = `usage: npm run cluster -- [--data-dir=<dir>] [--log-level=<level>]

Starts etcd, 2 controllers (127.0.0.1:19090, :19091), 3 brokers (127.0.0.1:19092..19094) and
a gateway (127.0.0.1:19095) with data and logs under --data-dir (default ./${CLUSTER_DATA_DIR_DEFAULT}). Ctrl-C stops them.
  --data-dir=<dir>     where etcd, broker data and logs/<name>.log go
  --log-level=<level>  error, warn, info (default) or debug
  --help               this text`;

interface Flags {
  dataDir: string;
  logLevel: LogLevel;
}

function parseFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: argv,
    options: {
      "data-dir": { type: "string", default: CLUSTER_DATA_DIR_DEFAULT },
      "log-level": { type: "string", default: "info" },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const logLevel = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`--log-level must be one of ${LOG_LEVELS}`);
  return { dataDir: resolve(values["data-dir"]), logLevel };
}

/** The first of `ports` that cannot be bound on {@link HOST} (someone else has it), if any. */
async function firstBusyPort(ports: readonly number[]): Promise<number | undefined> {
  for (const port of ports) {
    const server = createServer();
    const free = await new Promise<boolean>((done) => {
      server.once("error", () => done(false));
      server.listen(port, HOST, () => done(true));
    });
    if (!free) return port;
    await new Promise<void>((done) => server.close(() => done()));
  }
  return undefined;
}

/** The endpoints, one process a line, for a person to copy. */
async function describe(cluster: LocalCluster): Promise<string> {
  // Paths under the working directory print relative to it, others in full.
  const rel = (path: string) => {
    const r = relative(process.cwd(), path);
    return r === "" ? "." : r.startsWith("..") ? path : r;
  };
  const processes = [
    cluster.etcd,
    ...cluster.controllerProcesses,
    ...cluster.brokerProcesses,
    ...cluster.gatewayProcesses,
  ];
  const rows = processes.map((p) => {
    const grpc = p.kind === "etcd" ? cluster.etcdEndpoint : p.address;
    const metrics = `http://${HOST}:${p.metricsPort}/metrics`;
    return `  ${p.name.padEnd(13)} ${grpc.padEnd(23)} ${metrics.padEnd(36)} ${rel(p.logFile)}`;
  });
  const active = await cluster.activeController();
  return [
    `Samsa local cluster is up (data: ${rel(cluster.dataDir)})`,
    `  ${"process".padEnd(13)} ${"gRPC".padEnd(23)} ${"metrics".padEnd(36)} log`,
    ...rows,
    `  active controller: ${active.id} (epoch ${active.epoch})`,
    `  bootstrap servers: ${cluster.bootstrap.join(",")}`,
    `  controllers:       ${cluster.controllers.join(",")}`,
    `  gateway:           ${cluster.gateways.join(",")}`,
    "Ctrl-C stops everything.",
  ].join("\n");
}

/** Reports, once each, processes that exit while the cluster should be running. */
function watch(cluster: LocalCluster): NodeJS.Timeout {
  const reported = new Set<string>();
  return setInterval(() => {
    const all = [
      cluster.etcd,
      ...cluster.controllerProcesses,
      ...cluster.brokerProcesses,
      ...cluster.gatewayProcesses,
    ];
    for (const p of all) {
      if (!p.running && !reported.has(p.name)) {
        reported.add(p.name);
        console.error(`${p.name} is no longer running; see ${p.logFile}`);
      }
    }
  }, WATCH_INTERVAL_MS);
}

async function main(): Promise<void> {
  let flags: Flags;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    console.error(`cluster: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(EXIT_USAGE);
  }
  try {
    findEtcdBinary();
  } catch {
    console.error(
      "etcd is not installed. Install Debian's etcd first:\n  apt-get install etcd-server",
    );
    process.exit(1);
  }
  const all = [...Object.values(PORTS)].flat();
  const busy = await firstBusyPort(all);
  if (busy !== undefined) {
    console.error(
      `port ${busy} on ${HOST} is in use: is another \`npm run cluster\` running? ` +
        `(the cluster needs ports ${all.join(", ")})`,
    );
    process.exit(1);
  }
  let cluster: LocalCluster | undefined;
  let watcher: NodeJS.Timeout | undefined;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping || cluster === undefined) {
      // Still starting, or asked twice: exit now; the exit handlers SIGKILL the children.
      console.error(`${signal}: killing every process now`);
      process.exit(EXIT_INTERRUPTED);
    }
    stopping = true;
    clearInterval(watcher);
    console.log(`${signal}: stopping the gateway, brokers, controllers and etcd ...`);
    cluster.stop().then(
      () => {
        console.log("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        console.error(`stop failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);
  console.log(`starting etcd, 2 controllers, 3 brokers and a gateway under ${flags.dataDir} ...`);
  // Detached: Ctrl-C reaches only this process, which stops the children in order.
  cluster = await startLocalCluster({
    dataDir: flags.dataDir,
    controllers: PORTS.controllers.length,
    brokers: PORTS.brokers.length,
    gateways: PORTS.gateways.length,
    host: HOST,
    ports: PORTS,
    logLevel: flags.logLevel,
    detached: true,
  });
  watcher = watch(cluster);
  console.log(await describe(cluster));
}

main().catch((err: unknown) => {
  console.error(`cluster: ${(err as Error).message}`);
  process.exit(1);
});

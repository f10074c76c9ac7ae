/**
 * The processes of a local cluster (`local-cluster.ts`): a controller, broker or gateway child
 * process (`node --import tsx services/<svc>/main.ts`) with its stdout and stderr appended to a
 * log file, readiness by its `/healthz`, signals (kill, stop, pause, resume) and restart; and the
 * etcd of `etcd-process.ts` behind the same {@link ProcessHandle} interface.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { appendFile, open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { allThreadsStopped, type EtcdProcess, freePort } from "./etcd-process.js";
import { waitFor } from "../shared/wait-for.js";

/** Deadline of one `/healthz` probe (and of the cluster's DescribeCluster probes), ms. */
export const PROBE_DEADLINE_MS = 1_000;
/** Pause between readiness probes, ms. */
export const PROBE_INTERVAL_MS = 100;
/** How long pause()/resume() wait for every thread of a process to change state, ms. */
const SIGNAL_SETTLE_TIMEOUT_MS = 5_000;
/** How many times a first start on ephemeral ports is retried when a port was taken meanwhile. */
const PORT_RETRIES_MAX = 3;
/** Bytes of a process's log quoted in the error when it dies before it is ready. */
const LOG_TAIL_BYTES_MAX = 4_096;

/** The repository root: services/local-cluster/../.. (children run there, so `--import tsx` resolves). */
const REPO_ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** What a process of the cluster is. */
export type ProcessKind = "etcd" | "controller" | "broker" | "gateway";

/** One process of the cluster. */
export interface ProcessHandle {
  readonly kind: ProcessKind;
  /** `etcd`, `controller-<i>`, `broker-<id>` or `gateway-<i>`: also the log file's name. */
  readonly name: string;
  /** `controller.id`, `broker.id` or `gateway.id` as given to the process; `etcd` for etcd. */
  readonly id: string;
  /** Pid of the current process (changes on restart); -1 before the first start. */
  readonly pid: number;
  /** gRPC port (etcd: its client port). Kept across restarts. */
  readonly port: number;
  /** Port of `/metrics` and `/healthz` (etcd: its client port). Kept across restarts. */
  readonly metricsPort: number;
  /** `host:port` of the gRPC server (etcd: of its client URL). */
  readonly address: string;
  /** The file that holds the process's stdout and stderr. */
  readonly logFile: string;
  /** Whether the process runs (true while paused too). */
  readonly running: boolean;
  /** Whether the process is stopped by {@link pause}. */
  readonly paused: boolean;
  /**
   * Sends `signal` (default SIGKILL: a crash) and waits for the exit; a process still alive
   * after the stop timeout gets SIGKILL. A paused process is continued first (but for SIGKILL).
   * etcd takes SIGKILL and SIGTERM only.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM (a graceful stop) and waits for the exit, SIGKILL after the stop timeout. */
  stop(): Promise<void>;
  /** Stops the process if it runs, starts it again (same id, ports, data) and waits until ready. */
  restart(): Promise<void>;
  /** SIGSTOP: the process hangs with its sockets open; resolves once every thread is stopped. */
  pause(): Promise<void>;
  /** SIGCONT after {@link pause}; resolves once the process runs again. */
  resume(): Promise<void>;
}

/** Children alive in this process: killed if the parent exits without stopping them. */
const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

/**
 * The parent's environment without `SAMSA_*` (a shell set up for the CLI must not change or, with
 * a key the services do not know, break the cluster) and without node:test's marker.
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("SAMSA_") || key === "NODE_TEST_CONTEXT") continue;
    env[key] = value;
  }
  return env;
}

/** The last {@link LOG_TAIL_BYTES_MAX} bytes of a file ("" if it cannot be read). */
async function tailOf(file: string): Promise<string> {
  try {
    const handle = await open(file, "r");
    try {
      const { size } = await handle.stat();
      const length = Math.min(size, LOG_TAIL_BYTES_MAX);
      const buf = Buffer.alloc(length);
      await handle.read(buf, 0, length, size - length);
      return buf.toString("utf8");
    } finally {
      await handle.close();
    }
  } catch {
    return "";
  }
}

/** Whether `GET http://host:port/healthz` answers 200 within the probe deadline. */
async function healthy(host: string, port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://${host}:${port}/healthz`, {
      signal: AbortSignal.timeout(PROBE_DEADLINE_MS),
    });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** How a controller, broker or gateway process is started. */
export interface ServiceSpec {
  kind: "controller" | "broker" | "gateway";
  name: string;
  id: string;
  host: string;
  logFile: string;
  /** Flags for the service, given its ports. */
  args: (port: number, metricsPort: number) => string[];
  /**
   * A command the service runs under, e.g. `["ip", "netns", "exec", "ns1"]` (the command must
   * exec node in place, so the pid and signals are node's). Default none: node itself.
   */
  commandPrefix?: readonly string[];
  detached: boolean;
  readyTimeoutMs: number;
  stopTimeoutMs: number;
}

/**
 * Extra node flags of every service process, from `SAMSA_NODE_ARGS` (space-separated), e.g.
 * `SAMSA_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile the brokers of a benchmark
 * (NODE_OPTIONS does not take `--cpu-prof`). The profile is written when the process exits.
 */
function nodeArgs(): string[] {
  return (process.env.SAMSA_NODE_ARGS ?? "").split(" ").filter((a) => a.length > 0);
}

/** A controller, broker or gateway child process: spawn, readiness, signals, restart. */
export class ServiceProcess implements ProcessHandle {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exitInfo: string | undefined;
  private isPaused = false;

  private constructor(
    private readonly spec: ServiceSpec,
    private grpcPort: number,
    private httpPort: number,
    /** Which ports were picked here (and may be picked again on a clash at the first start). */
    private readonly ephemeral: { readonly grpc: boolean; readonly http: boolean },
  ) {}

  /** A process of `spec` on the given ports (free loopback ports for those not given). */
  static async create(spec: ServiceSpec, port?: number, metricsPort?: number) {
    return new ServiceProcess(spec, port ?? (await freePort()), metricsPort ?? (await freePort()), {
      grpc: port === undefined,
      http: metricsPort === undefined,
    });
  }

  get port() {
    return this.grpcPort;
  }
  get metricsPort() {
    return this.httpPort;
  }

  get kind() {
    return this.spec.kind;
  }
  get name() {
    return this.spec.name;
  }
  get id() {
    return this.spec.id;
  }
  get logFile() {
    return this.spec.logFile;
  }
  get address() {
    return `${this.spec.host}:${this.port}`;
  }
  get pid() {
    return this.child?.pid ?? -1;
  }
  get running() {
    return this.child !== undefined && this.exitInfo === undefined;
  }
  get paused() {
    return this.running && this.isPaused;
  }

  /**
   * First start. A start that dies because a port was taken since it was probed free is retried
   * on new ports, where the ports were picked here.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.launch();
      } catch (err) {
        const clash = /EADDRINUSE|address already in use/i.test(await tailOf(this.logFile));
        const canMove = this.ephemeral.grpc || this.ephemeral.http;
        if (!canMove || !clash || attempt >= PORT_RETRIES_MAX) throw err;
        if (this.ephemeral.grpc) this.grpcPort = await freePort();
        if (this.ephemeral.http) this.httpPort = await freePort();
      }
    }
  }

  /** Spawns the process and waits until `/healthz` says it is ready (or it exits: throws). */
  private async launch(): Promise<void> {
    const [command = process.execPath, ...prefixArgs] = this.spec.commandPrefix ?? [];
    const args = [
      ...prefixArgs,
      ...(this.spec.commandPrefix?.length ? [process.execPath] : []),
      ...nodeArgs(),
      "--import",
      "tsx",
      join("services", this.spec.kind, "main.ts"),
      ...this.spec.args(this.port, this.metricsPort),
    ];
    await appendFile(
      this.logFile,
      `${JSON.stringify({
        level: "info",
        message: "local-cluster: starting process",
        service: "local-cluster",
        name: this.name,
        command,
        args,
        timestamp: new Date().toISOString(),
      })}\n`,
    );
    const fd = openSync(this.logFile, "a");
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: REPO_ROOT,
        env: childEnv(),
        stdio: ["ignore", fd, fd],
        detached: this.spec.detached,
      });
    } finally {
      closeSync(fd); // the child has its own copy
    }
    this.child = child;
    this.exitInfo = undefined;
    this.isPaused = false;
    liveChildren.add(child);
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        liveChildren.delete(child);
        resolve();
      });
    });
    await waitFor(
      async () => this.exitInfo !== undefined || (await healthy(this.spec.host, this.metricsPort)),
      {
        timeoutMs: this.spec.readyTimeoutMs,
        intervalMs: PROBE_INTERVAL_MS,
        message: `${this.name} to be ready (log: ${this.logFile})`,
      },
    ).catch(async (err: unknown) => {
      await this.kill("SIGKILL");
      throw err;
    });
    if (this.exitInfo !== undefined) {
      throw new Error(
        `${this.name} exited (${this.exitInfo}) before it was ready; ${this.logFile} ends:\n` +
          (await tailOf(this.logFile)),
      );
    }
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    if (this.isPaused && signal !== "SIGKILL") child.kill("SIGCONT");
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), this.spec.stopTimeoutMs);
    await this.exited;
    clearTimeout(timer);
    this.isPaused = false;
  }

  stop(): Promise<void> {
    return this.kill("SIGTERM");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async pause(): Promise<void> {
    if (!this.running) throw new Error(`${this.name} is not running`);
    this.child!.kill("SIGSTOP");
    this.isPaused = true;
    const pid = this.pid;
    await waitFor(() => allThreadsStopped(pid), {
      timeoutMs: SIGNAL_SETTLE_TIMEOUT_MS,
      intervalMs: 5,
      message: `${this.name} to stop`,
    });
  }

  async resume(): Promise<void> {
    if (!this.running) throw new Error(`${this.name} is not running`);
    this.child!.kill("SIGCONT");
    this.isPaused = false;
    const pid = this.pid;
    await waitFor(async () => !(await allThreadsStopped(pid)), {
      timeoutMs: SIGNAL_SETTLE_TIMEOUT_MS,
      intervalMs: 5,
      message: `${this.name} to continue`,
    });
  }
}

/** Whether a process `pid` exists (signal 0 checks without sending anything). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The etcd of the cluster as a {@link ProcessHandle} (started by `etcd-process.ts`). It is
 * running from its start until `kill`/`stop`, and while its pid exists (so an etcd that died on
 * its own shows as not running).
 */
export function etcdHandle(etcd: EtcdProcess, logFile: string): ProcessHandle {
  let running = true;
  let paused = false;
  return {
    kind: "etcd",
    name: "etcd",
    id: "etcd",
    get pid() {
      return etcd.pid;
    },
    port: etcd.clientPort,
    metricsPort: etcd.clientPort,
    address: new URL(etcd.endpoint).host,
    logFile,
    get running() {
      return running && pidAlive(etcd.pid);
    },
    get paused() {
      return this.running && paused;
    },
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (signal === "SIGKILL") await etcd.kill();
      else if (signal === "SIGTERM") await etcd.stop();
      else throw new Error(`etcd handle: ${signal} is not supported (SIGKILL or SIGTERM)`);
      running = false;
      paused = false;
    },
    async stop() {
      await etcd.stop();
      running = false;
      paused = false;
    },
    async restart() {
      await etcd.restart();
      running = true;
      paused = false;
    },
    async pause() {
      await etcd.pause();
      paused = true;
    },
    async resume() {
      await etcd.resume();
      paused = false;
    },
  };
}

/**
 * A docker-compose project of docker-compose.yml for a test file: built with
 * scripts/docker-build.sh (local bases, no registry), started on the host ports the file gives,
 * waited for until every container is healthy, logged and removed (`down -v`) at the end. Every
 * command is bounded in time.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "../support/wait-for.js";

/** The repository root: docker-compose.yml and scripts/ are there. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** Every service of docker-compose.yml. */
export const COMPOSE_SERVICES = [
  "etcd-1",
  "etcd-2",
  "etcd-3",
  "controller-1",
  "controller-2",
  "broker-1",
  "broker-2",
  "broker-3",
  "gateway",
  "prometheus",
] as const;

/** The host address every published port is bound to (docker-compose.yml: 127.0.0.1). */
export const LOOPBACK = "127.0.0.1";

/**
 * The host ports docker-compose.yml publishes (its `*_PORT` variables) for a test project whose
 * ports lie in their own thousand from `base`: away from the defaults and from the other docker
 * tests' projects, so they may run one after another (or beside a `docker-compose up`).
 */
export function publishedPorts(base: number) {
  return {
    GATEWAY_PORT: base + 94,
    GATEWAY_METRICS_PORT: base + 103,
    CONTROLLER_PORT: base + 93,
    CONTROLLER_2_PORT: base + 95,
    PROMETHEUS_PORT: base + 90,
    // The brokers' EXTERNAL listeners: published, so they need ports too.
    BROKER_1_PORT: base + 192,
    BROKER_2_PORT: base + 193,
    BROKER_3_PORT: base + 194,
  } as const;
}

/** The published host ports read by {@link brokersOnHost} and {@link hostEndpoints}. */
export interface PublishedPorts {
  readonly GATEWAY_PORT: number;
  readonly BROKER_1_PORT: number;
  readonly BROKER_2_PORT: number;
  readonly BROKER_3_PORT: number;
}

/** Each broker's EXTERNAL listener as published on the host, by broker id. */
export function brokersOnHost(ports: PublishedPorts): Readonly<Record<number, string>> {
  return {
    1: `${LOOPBACK}:${ports.BROKER_1_PORT}`,
    2: `${LOOPBACK}:${ports.BROKER_2_PORT}`,
    3: `${LOOPBACK}:${ports.BROKER_3_PORT}`,
  };
}

/** Where the published cluster is reached from the host: the gateway, and a broker by id. */
export function hostEndpoints(ports: PublishedPorts): {
  readonly gateway: string;
  brokerAddress(id: number): string;
} {
  const brokers = brokersOnHost(ports);
  return {
    gateway: `${LOOPBACK}:${ports.GATEWAY_PORT}`,
    brokerAddress: (id) => {
      const address = brokers[id];
      assert.ok(address, `no broker ${id} in the compose file`);
      return address;
    },
  };
}

/** scripts/docker-build.sh: may install Docker and build the bases first (apt), ms. */
export const BUILD_TIMEOUT_MS = 15 * 60_000;
/** `up -d` (docker-compose v1 waits for the healthy dependencies itself), ms. */
export const UP_TIMEOUT_MS = 5 * 60_000;
/** `down -v`, ms. */
export const DOWN_TIMEOUT_MS = 3 * 60_000;
/** Any other docker / compose command, ms. */
export const COMMAND_TIMEOUT_MS = 60_000;
/** Every container healthy after `up`, ms. */
export const HEALTHY_TIMEOUT_MS = 3 * 60_000;
/** Longest output of a failing command kept in its error, characters. */
const OUTPUT_KEPT_CHARS = 4000;
/**
 * The environment variable naming a directory where {@link ComposeProject.down} saves every
 * service's whole log first (`SAMSA_DOCKER_LOGS_DIR=/tmp/logs npm run test:docker`).
 */
export const LOGS_DIR_ENV = "SAMSA_DOCKER_LOGS_DIR";
/** Log lines per service printed when a test file did not complete. */
const LOG_TAIL_LINES = 40;
/** Most characters of those logs printed. */
const LOG_KEPT_CHARS = 60_000;

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Resolve whatever the exit code (default: reject unless 0). */
  allowFailure?: boolean;
  /** Written to the command's standard input (default: none). */
  input?: string;
}

/** Runs a command (no shell) in the repository root, killed past `timeoutMs`. */
export function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? COMMAND_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: ROOT,
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const result = { code, stdout, stderr };
      if (code === 0 || options.allowFailure) {
        resolve(result);
        return;
      }
      const why = signal === "SIGKILL" ? `killed after ${timeoutMs} ms` : `exit ${code}`;
      reject(
        new Error(
          `${command} ${args.join(" ")}: ${why}\n${stdout.slice(-OUTPUT_KEPT_CHARS)}\n` +
            stderr.slice(-OUTPUT_KEPT_CHARS),
        ),
      );
    });
  });
}

/** `docker-compose` (v1) when installed, else `docker compose` (v2). */
async function composeCommand(): Promise<[string, string[]]> {
  const v1 = await run("docker-compose", ["version"], { allowFailure: true }).catch(() => null);
  return v1?.code === 0 ? ["docker-compose", []] : ["docker", ["compose"]];
}

/** A compose project on its own name and host ports. */
export class ComposeProject {
  private command: [string, string[]] = ["docker", ["compose"]];
  private env: NodeJS.ProcessEnv | undefined;
  /** How long the build, `up -d` and the health checks took. */
  readonly timings: string[] = [];

  /**
   * @param name the compose project name (`-p`)
   * @param hostPorts the variables of docker-compose.yml that choose host ports, and their values
   * @param variables other variables of docker-compose.yml for this project (e.g. the brokers'
   *   `SAMSA_BROKER_SESSION_TIMEOUT_MS`), passed to every compose command
   */
  constructor(
    readonly name: string,
    readonly hostPorts: Readonly<Record<string, number>>,
    readonly variables: Readonly<Record<string, string>> = {},
  ) {}

  /** The compose command in use, for diagnostics. */
  get commandLine(): string {
    return [this.command[0], ...this.command[1]].join(" ");
  }

  /** Builds the images, removes a left-over project, starts this one, waits until healthy. */
  async up(): Promise<void> {
    let started = Date.now();
    const lap = (what: string) => {
      this.timings.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
      started = Date.now();
    };
    const build = await run("bash", ["scripts/docker-build.sh"], { timeoutMs: BUILD_TIMEOUT_MS });
    this.env = this.composeEnv(build.stdout);
    lap("build");
    // After the build: docker-setup.sh installs docker-compose where neither command exists.
    this.command = await composeCommand();
    // A project left over by an interrupted run would keep its volumes: start from nothing.
    await this.compose(["down", "-v", "--remove-orphans"], DOWN_TIMEOUT_MS);
    await this.compose(["up", "-d"], UP_TIMEOUT_MS);
    lap("up -d");
    await this.waitAllHealthy();
    lap("all healthy");
  }

  /** Prints the services' last log lines when `completed` is false, then `down -v`. */
  async down(completed: boolean): Promise<void> {
    if (this.env === undefined) return;
    if (!completed) {
      const logs = await this.compose(["logs", "--no-color", `--tail=${LOG_TAIL_LINES}`]).catch(
        (e: Error) => e,
      );
      process.stderr.write(
        `${this.name} logs (last lines per service):\n${
          logs instanceof Error ? logs.message : logs.stdout.slice(-LOG_KEPT_CHARS)
        }\n`,
      );
    }
    await this.saveLogs();
    await this.compose(["down", "-v", "--remove-orphans"], DOWN_TIMEOUT_MS);
  }

  /**
   * With {@link LOGS_DIR_ENV} set, writes every service's whole log to
   * `<dir>/<project>/<service>.log` (to read after a run, passed or not); else does nothing.
   */
  private async saveLogs(): Promise<void> {
    const root = process.env[LOGS_DIR_ENV];
    if (!root) return;
    const dir = join(root, this.name);
    await mkdir(dir, { recursive: true });
    for (const service of COMPOSE_SERVICES) {
      const logs = await this.compose(["logs", "--no-color", service]).catch((e: Error) => e);
      await writeFile(
        join(dir, `${service}.log`),
        logs instanceof Error ? logs.message : logs.stdout,
      );
    }
    process.stderr.write(`${this.name}: service logs saved in ${dir}\n`);
  }

  /** Runs a compose command of this project. */
  compose(args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandResult> {
    const [command, prefix] = this.command;
    return run(command, [...prefix, "-p", this.name, ...args], { env: this.env, timeoutMs });
  }

  /** `stop` of services (docker stop: SIGTERM, SIGKILL after the grace period); returns once stopped. */
  async stop(...services: string[]): Promise<void> {
    await this.compose(["stop", ...services]);
  }

  /** `start` of stopped services; returns once their containers run (not yet healthy). */
  async start(...services: string[]): Promise<void> {
    await this.compose(["start", ...services]);
  }

  /** A service's whole log so far. */
  async logs(service: string): Promise<string> {
    return (await this.compose(["logs", "--no-color", service])).stdout;
  }

  /** The container id of a service. */
  async containerOf(service: string): Promise<string> {
    const id = (await this.compose(["ps", "-q", service])).stdout.trim();
    assert.ok(id, `no container for ${service}`);
    return id;
  }

  /** Health of every service's container: `{service: "healthy" | "running/starting" | ...}`. */
  async healthOf(): Promise<Record<string, string>> {
    const health: Record<string, string> = Object.fromEntries(
      COMPOSE_SERVICES.map((s) => [s, "absent"]),
    );
    const ids = (await this.compose(["ps", "-q"])).stdout.split("\n").filter((id) => id.trim());
    if (ids.length === 0) return health;
    const format =
      '{{index .Config.Labels "com.docker.compose.service"}} ' +
      "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}";
    const lines = (await run("docker", ["inspect", "--format", format, ...ids])).stdout;
    for (const line of lines.trim().split("\n")) {
      const [service, state] = line.trim().split(" ");
      if (service) health[service] = state === "running/healthy" ? "healthy" : (state ?? "");
    }
    return health;
  }

  /** Waits until every container is healthy; the error says which are not. */
  async waitAllHealthy(): Promise<void> {
    let last: Record<string, string> = {};
    await waitFor(
      async () => {
        last = await this.healthOf();
        return Object.values(last).every((h) => h === "healthy");
      },
      { timeoutMs: HEALTHY_TIMEOUT_MS, intervalMs: 2000, message: "every container healthy" },
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}`, { cause: err });
    });
  }

  /** The environment of the compose commands: the image names the build printed, the ports. */
  private composeEnv(buildExports: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const line of buildExports.split("\n")) {
      const match = /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
      if (match) env[match[1]!] = match[2]!;
    }
    for (const [name, port] of Object.entries(this.hostPorts)) env[name] = String(port);
    for (const [name, value] of Object.entries(this.variables)) env[name] = value;
    return env;
  }
}

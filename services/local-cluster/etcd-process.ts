/**
 * Launches a real, single-member etcd for the local cluster and the integration tests (nats.js
 * `nst/launcher.ts` style):
 * free loopback ports, a temporary data dir, readiness checked with a real etcd3 `get`, and
 * fault injection through the real process (SIGKILL, SIGSTOP/SIGCONT).
 *
 * ```ts
 * const etcd = await startEtcd();
 * after(() => etcd.stop());
 * const client = new Etcd3({ hosts: etcd.endpoint });
 * ```
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { Etcd3 } from "etcd3";
import { waitFor } from "../shared/wait-for.js";

/** How long {@link startEtcd} waits for etcd to answer a `get`, in milliseconds. */
export const etcdStartTimeoutMsMax = 20_000;
/** How long `stop()` waits after SIGTERM before sending SIGKILL, in milliseconds. */
export const etcdStopTimeoutMsMax = 5_000;
/** Deadline of one readiness probe, in milliseconds. */
const probeDeadlineMs = 1_000;
/** How many times start is retried when a probed-free port was taken meanwhile. */
const portRetriesMax = 3;
/** Bytes of etcd's stderr kept for error messages. */
const stderrTailBytesMax = 8_192;
/** Address etcd serves clients on unless {@link StartEtcdOptions.host} says otherwise. */
export const etcdHostDefault = "127.0.0.1";

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** Data dir to use (kept on stop). Default: a fresh temp dir, removed on stop. */
  dataDir?: string;
  /** Fixed client port (no retry on a clash). Default: a free loopback port. */
  clientPort?: number;
  /** Fixed peer port. Default: a free loopback port. */
  peerPort?: number;
  /**
   * Address etcd serves clients on and advertises (e.g. a bridge address that processes in
   * network namespaces reach). Default {@link etcdHostDefault}. The peer URL stays on loopback.
   */
  host?: string;
  /** Also write etcd's (warn-level) log to this file, appending. Default: stderr only. */
  logFile?: string;
  /**
   * Run etcd in its own process group, so a terminal's Ctrl-C reaches only the parent, which
   * then stops etcd last, after the services that use it. Default false.
   */
  detached?: boolean;
}

/** A running etcd started by {@link startEtcd}. */
export interface EtcdProcess {
  /** Client URL, e.g. `http://127.0.0.1:40123`. */
  readonly endpoint: string;
  /** Host of the client URL ({@link StartEtcdOptions.host}). */
  readonly host: string;
  readonly clientPort: number;
  /** Pid of the current etcd process (changes on `restart()`). */
  readonly pid: number;
  readonly dataDir: string;
  /** SIGTERM (SIGKILL after {@link etcdStopTimeoutMsMax}), then removes a temp data dir. */
  stop(): Promise<void>;
  /** SIGKILL, waits for exit; keeps the data dir (for `restart()`); `stop()` still cleans up. */
  kill(): Promise<void>;
  /**
   * SIGSTOP: etcd stops answering but keeps its sockets open (a hung server). Resolves once
   * every thread is stopped (signal delivery is asynchronous: a request sent right after
   * `kill()` returns could still be answered).
   */
  pause(): Promise<void>;
  /** SIGCONT after `pause()`; resolves once etcd runs again. */
  resume(): Promise<void>;
  /** Starts etcd again on the same ports and data dir after `kill()`, and waits until ready. */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  // Never leave an etcd behind when a test file dies half-way.
  for (const child of running) child.kill("SIGKILL");
});

/** Finds the etcd binary: /usr/bin/etcd, else `etcd` on PATH. */
export function findEtcdBinary(): string {
  const candidates = [
    "/usr/bin/etcd",
    ...(process.env.PATH ?? "").split(delimiter).map((d) => join(d, "etcd")),
  ];
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) {
    throw new Error("etcd binary not found (/usr/bin/etcd or PATH): apt-get install etcd-server");
  }
  return found;
}

/** A loopback port that was free a moment ago (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port bound");
  return address.port;
}

/** Starts etcd and resolves once a real client `get` succeeds. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdProcess> {
  const binary = findEtcdBinary();
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "samsa-etcd-")));
  const detached = options.detached ?? false;
  const host = options.host ?? etcdHostDefault;
  // Fixed ports cannot be changed on a clash, so retrying them would only fail again.
  const attempts = options.clientPort === undefined ? portRetriesMax : 1;
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const clientPort = options.clientPort ?? (await freePort());
    const peerPort = options.peerPort ?? (await freePort());
    const args = etcdArgs(dataDir, host, clientPort, peerPort, options.logFile);
    try {
      const first = await launch(binary, args, clientUrl(host, clientPort), detached);
      return handle(binary, args, first, host, clientPort, dataDir, ownDir, detached);
    } catch (err) {
      lastError = err;
    }
  }
  if (ownDir) await rm(dataDir, { recursive: true, force: true });
  throw lastError;
}

/** `http://host:port`, IPv6 hosts in brackets. */
function clientUrl(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

function etcdArgs(
  dataDir: string,
  host: string,
  clientPort: number,
  peerPort: number,
  logFile: string | undefined,
): string[] {
  const client = clientUrl(host, clientPort);
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    "--name=samsa-test",
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=samsa-test=${peer}`,
    "--initial-cluster-state=new",
    "--logger=zap",
    logFile === undefined ? "--log-outputs=stderr" : `--log-outputs=stderr,${logFile}`,
    "--log-level=warn",
  ];
}

interface Launched {
  child: ChildProcess;
  exited: Promise<void>;
}

async function launch(
  binary: string,
  args: string[],
  endpoint: string,
  detached: boolean,
): Promise<Launched> {
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"], detached });
  running.add(child);
  let stderrTail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-stderrTailBytesMax);
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      running.delete(child);
      resolve();
    });
  });
  try {
    await waitFor(
      async () => {
        if (exitCode !== undefined) throw new Error(`etcd exited (${exitCode}): ${stderrTail}`);
        // A fresh client per probe: etcd3's default circuit breaker would otherwise stay open
        // for 5 s after the first failed probes and delay readiness by that much.
        const client = new Etcd3({ hosts: endpoint });
        try {
          await client.get("samsa-probe").options({ deadline: Date.now() + probeDeadlineMs });
        } finally {
          client.close();
        }
        return true;
      },
      { timeoutMs: etcdStartTimeoutMsMax, intervalMs: 50, message: `etcd at ${endpoint}` },
    );
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    throw new Error(`etcd did not start: ${stderrTail}`, { cause: err });
  }
  return { child, exited };
}

/** Whether every thread of `pid` is in state T (stopped), from /proc (Linux). */
export async function allThreadsStopped(pid: number): Promise<boolean> {
  const tasks = await readdir(`/proc/${pid}/task`);
  for (const task of tasks) {
    const stat = await readFile(`/proc/${pid}/task/${task}/stat`, "utf8").catch(() => "");
    // "tid (comm) S ...": the state follows the last ')' (comm may contain spaces).
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state !== "T" && state !== "t" && stat !== "") return false;
  }
  return tasks.length > 0;
}

function handle(
  binary: string,
  args: string[],
  first: Launched,
  host: string,
  clientPort: number,
  dataDir: string,
  ownDir: boolean,
  detached: boolean,
): EtcdProcess {
  let current = first;
  let paused = false;
  const endpoint = clientUrl(host, clientPort);
  const isAlive = () => current.child.exitCode === null && current.child.signalCode === null;
  const kill = async () => {
    if (isAlive()) current.child.kill("SIGKILL");
    await current.exited;
    paused = false;
  };
  return {
    endpoint,
    host,
    clientPort,
    dataDir,
    get pid() {
      return current.child.pid ?? -1;
    },
    kill,
    async stop() {
      if (isAlive()) {
        // A stopped process keeps SIGTERM pending: let it run first.
        if (paused) current.child.kill("SIGCONT");
        current.child.kill("SIGTERM");
        const timer = setTimeout(() => current.child.kill("SIGKILL"), etcdStopTimeoutMsMax);
        await current.exited;
        clearTimeout(timer);
      }
      paused = false;
      if (ownDir) await rm(dataDir, { recursive: true, force: true });
    },
    async pause() {
      current.child.kill("SIGSTOP");
      paused = true;
      const pid = current.child.pid ?? -1;
      await waitFor(() => allThreadsStopped(pid), { timeoutMs: 5_000, intervalMs: 5 });
    },
    async resume() {
      current.child.kill("SIGCONT");
      paused = false;
      const pid = current.child.pid ?? -1;
      await waitFor(async () => !(await allThreadsStopped(pid)), {
        timeoutMs: 5_000,
        intervalMs: 5,
      });
    },
    async restart() {
      await kill();
      current = await launch(binary, args, endpoint, detached);
    },
  };
}

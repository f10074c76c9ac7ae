/**
 * etcd for tests: the local-cluster etcd launcher (services/local-cluster/etcd-process.ts), plus
 * the etcd-member fixture process that registers or campaigns from a separate process.
 */
import { type ChildProcess, spawn } from "node:child_process";

export * from "../../services/local-cluster/etcd-process.js";

/** Bytes of a fixture's stderr kept for error messages. */
const stderrTailBytesMax = 8_192;

const running = new Set<ChildProcess>();
process.once("exit", () => {
  // Never leave a fixture process behind when a test file dies half-way.
  for (const child of running) child.kill("SIGKILL");
});

/** A child process running `test/fixtures/etcd-member.ts` (see that file). */
export interface EtcdMemberProcess {
  readonly pid: number;
  /** Resolves with the first JSON line the child prints; rejects if it exits first. */
  readonly firstLine: Promise<Record<string, unknown>>;
  /** SIGKILL (a crash: no lease revoke), then waits for the exit. */
  kill(): Promise<void>;
}

/** Spawns the etcd-member fixture (`register` a broker or `campaign` for controller). */
export function spawnEtcdMember(
  mode: "register" | "campaign",
  endpoint: string,
  prefix: string,
  id: number,
  ttlSeconds: number,
): EtcdMemberProcess {
  const script = new URL("../fixtures/etcd-member.ts", import.meta.url).pathname;
  const args = ["--import", "tsx", script, mode, endpoint, prefix, String(id), String(ttlSeconds)];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-stderrTailBytesMax);
  });
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      running.delete(child);
      resolve();
    });
  });
  const firstLine = new Promise<Record<string, unknown>>((resolve, reject) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const newline = buffered.indexOf("\n");
      if (newline >= 0) resolve(JSON.parse(buffered.slice(0, newline)));
    });
    void exited.then(() => reject(new Error(`etcd-member exited: ${stderr}`)));
  });
  firstLine.catch(() => undefined); // observed by the caller, or not at all
  return {
    pid: child.pid ?? -1,
    firstLine,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

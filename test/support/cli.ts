/**
 * The `samsa` CLI as a user runs it: a child process (`node scripts/samsa.mjs ...`) pointed at
 * given addresses, with none of the test runner's own `SAMSA_*` variables (nor node:test's marker).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BOOTSTRAP_ENV, CONTROLLER_ENV } from "../../services/cli/defaults.js";

/** The CLI's entry point. */
export const CLI_SHIM = fileURLToPath(new URL("../../scripts/samsa.mjs", import.meta.url));

/** What a CLI run left behind. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The test runner's environment without `SAMSA_*` and node:test's marker, with the addresses. */
export function cliEnv(bootstrap: string, controller: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("SAMSA_") || key === "NODE_TEST_CONTEXT") continue;
    env[key] = value;
  }
  return { ...env, [BOOTSTRAP_ENV]: bootstrap, [CONTROLLER_ENV]: controller };
}

/** Runs `samsa <args>` with `input` on stdin; killed with SIGKILL past `timeoutMs`. */
export function runCli(
  args: readonly string[],
  options: { bootstrap: string; controller: string; timeoutMs: number; input?: string },
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_SHIM, ...args], {
      env: cliEnv(options.bootstrap, options.controller),
      stdio: ["pipe", "pipe", "pipe"],
      timeout: options.timeoutMs,
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

/**
 * The shared body of every service's `main.ts`: build the service from its config (a bad config
 * prints one line naming the field and exits 2), start it, and stop it gracefully on SIGTERM or
 * SIGINT (a second signal forces the exit).
 */
import { setFlagsFromString } from "node:v8";
import { SamsaError } from "./errors.js";

/** What a service offers its main. */
export interface RunnableService {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Exit code for a configuration error. */
export const EXIT_CONFIG_ERROR = 2;
/** Exit code when start-up fails for another reason. */
export const EXIT_START_FAILED = 1;

/**
 * V8 flags every service process sets for itself at start (so the launcher, the image and any
 * other way of running a service get them). `--no-incremental-marking`: a broker's heap is small
 * (about 20 MB) while it allocates about 100 MB/s of Buffers, and each 64 MB of them starts a
 * mark-compact ("external memory pressure"); done incrementally, those cost the brokers a third
 * of their CPU in the replication benchmark, done at once they cost a few ms each (measured in
 * docs/performance.md#garbage-collection). A process started with an `--incremental-marking`
 * flag of its own keeps it.
 */
export const SERVICE_V8_FLAGS: readonly string[] = ["--no-incremental-marking"];

/** Sets {@link SERVICE_V8_FLAGS} unless the process was started with a flag of that name. */
export function applyServiceV8Flags(execArgv: readonly string[] = process.execArgv): void {
  for (const flag of SERVICE_V8_FLAGS) {
    const name = flag.replace(/^--(no-)?/, "");
    const own = execArgv.some((a) => a.replace(/^--(no-)?/, "").split("=")[0] === name);
    if (!own) setFlagsFromString(flag);
  }
}

/** Builds, starts and supervises one service process. */
export async function runService(name: string, build: () => RunnableService): Promise<void> {
  applyServiceV8Flags();
  let service: RunnableService;
  try {
    service = build();
  } catch (err) {
    const message = err instanceof SamsaError ? err.message : String(err);
    process.stderr.write(`${name}: ${message}\n`);
    process.exit(EXIT_CONFIG_ERROR);
  }
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) process.exit(EXIT_START_FAILED);
    stopping = true;
    process.stderr.write(`${name}: ${signal} received, stopping\n`);
    service.stop().then(
      () => process.exit(0),
      () => process.exit(EXIT_START_FAILED),
    );
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  try {
    await service.start();
  } catch (err) {
    process.stderr.write(`${name}: failed to start: ${(err as Error).message}\n`);
    process.exit(EXIT_START_FAILED);
  }
}

/** One step of a service's shutdown: a name for the log and the work (may be a no-op). */
export type ShutdownStep = readonly [name: string, run: () => unknown];

/**
 * Runs shutdown steps in order. A failing step is logged and the next one still runs: a service
 * that stops must release everything it can.
 */
export async function runShutdownSteps(
  logger: { warn(message: string, fields?: Record<string, unknown>): void },
  steps: readonly ShutdownStep[],
): Promise<void> {
  for (const [name, run] of steps) {
    try {
      await run();
    } catch (err) {
      logger.warn("shutdown step failed", { step: name, error: (err as Error).message });
    }
  }
}

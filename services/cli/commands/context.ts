/**
 * What every command runs with: its input and output streams, the environment, a signal that
 * aborts on Ctrl-C, and factories of the clients (tests swap in fakes). `main.ts` builds the
 * real one; nothing below it reads `process`.
 */
import { AdminClient } from "../../client/index.js";
import { Cluster } from "../../client/index.js";
import { CLI_API_TIMEOUT_MS_DEFAULT, CLI_REQUEST_TIMEOUT_MS } from "../defaults.js";
import { type Endpoints, type Env, intAtLeast, resolveEndpoints } from "./args.js";
import type { TextOut } from "./output.js";

/** The admin operations the CLI uses (an {@link AdminClient}, or a test's fake). */
export type AdminApi = Pick<
  AdminClient,
  | "createTopics"
  | "deleteTopics"
  | "describeTopics"
  | "listTopics"
  | "describeCluster"
  | "electLeaders"
  | "alterPartitionReassignments"
  | "listPartitionReassignments"
  | "close"
>;

/** Settings of the clients a command creates. */
export interface ClientSettings {
  /** Deadline of an operation with its retries, ms. */
  readonly apiTimeoutMs: number;
  /** Deadline of one call, ms. */
  readonly requestTimeoutMs: number;
}

/** Streams, environment and client factories of one CLI run. */
export interface CliContext {
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: TextOut;
  readonly stderr: TextOut;
  readonly env: Env;
  /** Aborts when the user interrupts (SIGINT/SIGTERM): consumers stop, producers stop reading. */
  readonly signal: AbortSignal;
  /** Creates the admin client; default a real {@link AdminClient}. */
  readonly createAdmin?: (controllers: readonly string[], settings: ClientSettings) => AdminApi;
  /** Creates the cluster the producer and consumer share; default a real {@link Cluster}. */
  readonly createCluster?: (bootstrap: readonly string[], settings: ClientSettings) => Cluster;
}

/** Global options (on the `samsa` program, before or after the subcommand). */
export interface GlobalOptions {
  bootstrapServer?: string;
  controller?: string;
  apiTimeoutMs?: number;
}

/** Parser of `--api-timeout-ms`. */
export const parseTimeoutMs = intAtLeast(1);

/** The endpoints and client settings of the global options. */
export function globalsOf(
  opts: GlobalOptions,
  env: Env,
): { endpoints: Endpoints; settings: ClientSettings } {
  return {
    endpoints: resolveEndpoints(opts, env),
    settings: {
      apiTimeoutMs: opts.apiTimeoutMs ?? CLI_API_TIMEOUT_MS_DEFAULT,
      requestTimeoutMs: Math.min(
        CLI_REQUEST_TIMEOUT_MS,
        opts.apiTimeoutMs ?? CLI_REQUEST_TIMEOUT_MS,
      ),
    },
  };
}

/** Runs `fn` with an admin client of the context, closing it after. */
export async function withAdmin<T>(
  ctx: CliContext,
  opts: GlobalOptions,
  fn: (admin: AdminApi) => Promise<T>,
): Promise<T> {
  const { endpoints, settings } = globalsOf(opts, ctx.env);
  const admin =
    ctx.createAdmin?.(endpoints.controllers, settings) ??
    new AdminClient({
      controllers: endpoints.controllers,
      apiTimeoutMs: settings.apiTimeoutMs,
      requestTimeoutMs: settings.requestTimeoutMs,
    });
  try {
    return await fn(admin);
  } finally {
    admin.close();
  }
}

/** Runs `fn` with a cluster of the context, closing it after. */
export async function withCluster<T>(
  ctx: CliContext,
  opts: GlobalOptions,
  fn: (cluster: Cluster, settings: ClientSettings) => Promise<T>,
): Promise<T> {
  const { endpoints, settings } = globalsOf(opts, ctx.env);
  const cluster =
    ctx.createCluster?.(endpoints.bootstrap, settings) ??
    new Cluster({
      bootstrapServers: endpoints.bootstrap,
      requestTimeoutMs: settings.requestTimeoutMs,
    });
  try {
    return await fn(cluster, settings);
  } finally {
    cluster.close();
  }
}

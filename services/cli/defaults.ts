/**
 * Defaults of the `samsa` CLI. The addresses are those of the local cluster launcher
 * (`scripts/cluster.ts`): three brokers and two controllers on loopback. The environment
 * variables let tests point the CLI at a cluster on ephemeral ports.
 */

/** Environment variable with the bootstrap brokers, `host:port[,host:port...]`. */
export const BOOTSTRAP_ENV = "SAMSA_BOOTSTRAP";
/** Environment variable with the controllers, `host:port[,host:port...]`. */
export const CONTROLLER_ENV = "SAMSA_CONTROLLER";

/** Brokers of the local cluster launcher. */
export const DEFAULT_BOOTSTRAP_SERVERS: readonly string[] = Object.freeze([
  "127.0.0.1:19092",
  "127.0.0.1:19093",
  "127.0.0.1:19094",
]);
/** Controllers of the local cluster launcher. */
export const DEFAULT_CONTROLLERS: readonly string[] = Object.freeze([
  "127.0.0.1:19090",
  "127.0.0.1:19091",
]);

/**
 * Default deadline of one CLI operation with its retries, ms (shorter than the library's 60 s:
 * a person at a terminal wants an answer, and `--api-timeout-ms` raises it).
 */
export const CLI_API_TIMEOUT_MS_DEFAULT = 30_000;
/** Deadline of one call the CLI makes, ms. */
export const CLI_REQUEST_TIMEOUT_MS = 10_000;
/** Default separator between key and value when `consume --print-key` prints both (Kafka's tab). */
export const CONSUME_KEY_SEPARATOR_DEFAULT = "\t";
/** What `consume` prints for a null key or value (as Kafka's console consumer does). */
export const NULL_TEXT = "null";
/** Exit code of a failed command. */
export const EXIT_FAILURE = 1;
/** Exit code of a successful command. */
export const EXIT_SUCCESS = 0;

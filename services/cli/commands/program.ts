/**
 * The `samsa` commander program and its runner. {@link runCli} parses the arguments, runs the
 * command and turns every failure into an exit code: usage errors are printed by commander
 * (`error: ...`), failed commands as `error: <CODE_NAME>: <message>` (no stack trace).
 */
import { Command, CommanderError } from "commander";
import {
  BOOTSTRAP_ENV,
  CONTROLLER_ENV,
  DEFAULT_BOOTSTRAP_SERVERS,
  DEFAULT_CONTROLLERS,
  EXIT_FAILURE,
  EXIT_SUCCESS,
} from "../defaults.js";
import { addClusterCommand } from "./cluster.js";
import { addConsumeCommand } from "./consume.js";
import { addConsumerGroupsCommand } from "./consumer-groups.js";
import { type CliContext, parseTimeoutMs } from "./context.js";
import { addLeaderElectionCommand } from "./leader-election.js";
import { formatError } from "./output.js";
import { addPerfTestCommand } from "./perf-test.js";
import { addProduceCommand } from "./produce.js";
import { addReassignPartitionsCommand } from "./reassign-partitions.js";
import { addTopicsCommand } from "./topics.js";

/** The program's name in usage texts. */
export const PROGRAM_NAME = "samsa";

const EXAMPLES = `
Examples:
  samsa topics create --topic orders --partitions 3 --replication-factor 2 --config retention.ms=86400000
  samsa topics describe --topic orders
  samsa topics describe --under-replicated-partitions
  samsa leader-election --election-type preferred --all-topic-partitions
  samsa reassign-partitions --execute --reassignment orders:0=2,3 --reassignment orders:1=3,1
  samsa reassign-partitions --list
  printf 'k1:v1\\nk2:v2\\n' | samsa produce --topic orders --key-separator : --acks all
  samsa consume --topic orders --from-beginning --max-messages 2 --print-key
  samsa consume --topic orders --partition 0 --offset 42 --timeout-ms 5000 --print-offset
  samsa cluster describe
  samsa consume --topic orders --group billing --from-beginning
  samsa consumer-groups describe --group billing
  samsa consumer-groups reset-offsets --group billing --topic orders --to-earliest --execute
  samsa perf-test producer --topic orders --num-records 100000 --record-size 100 --throughput -1 --acks 1
  samsa perf-test consumer --topic orders --messages 100000
`;

/** Builds the program; commands write to and read from `ctx`. */
export function createProgram(ctx: CliContext): Command {
  const program = new Command(PROGRAM_NAME)
    .description(
      "Samsa command-line tools: topics, produce, consume, cluster, leader-election, reassign-partitions",
    )
    .option(
      "--bootstrap-server <host:port,...>",
      `brokers (env ${BOOTSTRAP_ENV}; default ${DEFAULT_BOOTSTRAP_SERVERS.join(",")})`,
    )
    .option(
      "--controller <host:port,...>",
      `controllers (env ${CONTROLLER_ENV}; default ${DEFAULT_CONTROLLERS.join(",")})`,
    )
    .option("--api-timeout-ms <ms>", "deadline of each operation with its retries", parseTimeoutMs)
    // Settings below are inherited by the subcommands added after them.
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.stdout.write(text),
      writeErr: (text) => ctx.stderr.write(text),
    })
    .showSuggestionAfterError()
    .allowExcessArguments(false);
  program.addHelpText("after", EXAMPLES);
  addTopicsCommand(program, ctx);
  addProduceCommand(program, ctx);
  addConsumeCommand(program, ctx);
  addClusterCommand(program, ctx);
  addLeaderElectionCommand(program, ctx);
  addReassignPartitionsCommand(program, ctx);
  addConsumerGroupsCommand(program, ctx);
  addPerfTestCommand(program, ctx);
  return program;
}

/**
 * Runs the CLI with `args` (without node and script) and resolves with the exit code: 0 on
 * success (and for --help), 1 on any error, after printing it to `ctx.stderr`.
 */
export async function runCli(args: readonly string[], ctx: CliContext): Promise<number> {
  const program = createProgram(ctx);
  try {
    await program.parseAsync([...args], { from: "user" });
    return EXIT_SUCCESS;
  } catch (err) {
    // Commander has printed its own message (usage errors, help, version) already.
    if (err instanceof CommanderError) return err.exitCode;
    ctx.stderr.write(`${formatError(err)}\n`);
    return EXIT_FAILURE;
  }
}

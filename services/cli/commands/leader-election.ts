/**
 * `samsa leader-election`, modelled on kafka-leader-election: asks the controllers for a
 * preferred (or unclean) leader election of one partition (`--topic` and `--partition`) or of
 * every partition (`--all-topic-partitions`), and prints what happened, as Kafka's tool does:
 * the partitions whose leader moved, those that already had a valid leader, and one line per
 * partition whose election failed. A failed election fails the command (exit 1).
 */
import { type Command, InvalidArgumentError } from "commander";
import type { ElectionResult, ElectionType, TopicPartition } from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { intAtLeast } from "./args.js";
import { type CliContext, type GlobalOptions, withAdmin } from "./context.js";
import { formatElectionResults } from "./output.js";

/** The options of `leader-election`. */
export interface LeaderElectionOptions {
  electionType: ElectionType;
  topic?: string;
  partition?: number;
  allTopicPartitions?: boolean;
}

/** Commander parser of `--election-type`: preferred or unclean (any case, Kafka's values). */
export function parseElectionType(value: string): ElectionType {
  const v = value.trim().toLowerCase();
  if (v === "preferred" || v === "unclean") return v;
  throw new InvalidArgumentError("expected preferred or unclean");
}

/**
 * The partitions to elect: `--topic` with `--partition`, or undefined for
 * `--all-topic-partitions` (exactly one of the two).
 * @throws SamsaError INVALID_REQUEST for any other combination.
 */
export function electionTargets(
  opts: Pick<LeaderElectionOptions, "topic" | "partition" | "allTopicPartitions">,
): TopicPartition[] | undefined {
  const named = opts.topic !== undefined || opts.partition !== undefined;
  if (opts.allTopicPartitions) {
    if (named) throw usage("--all-topic-partitions excludes --topic and --partition");
    return undefined;
  }
  if (opts.topic === undefined || opts.partition === undefined) {
    throw usage("give --topic with --partition, or --all-topic-partitions");
  }
  return [{ topic: opts.topic, partition: opts.partition }];
}

/** Adds the `leader-election` command to `program`. */
export function addLeaderElectionCommand(program: Command, ctx: CliContext): void {
  program
    .command("leader-election")
    .description("move partition leadership to the preferred replica (or elect one unclean)")
    .requiredOption(
      "--election-type <type>",
      "preferred (to the first replica, when alive and in the ISR) or unclean",
      parseElectionType,
    )
    .option("--topic <name>", "the topic of the partition (with --partition)")
    .option("--partition <n>", "the partition (with --topic)", intAtLeast(0))
    .option("--all-topic-partitions", "every partition of every topic")
    .action(async (_opts: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<LeaderElectionOptions & GlobalOptions>();
      const targets = electionTargets(opts);
      const results = await withAdmin(ctx, opts, (admin) =>
        admin.electLeaders(opts.electionType, targets),
      );
      ctx.stdout.write(formatElectionResults(opts.electionType, results));
      const failed = failures(results);
      if (failed.length > 0) {
        throw new SamsaError(
          failed[0]!.error!.code,
          `${failed.length} replica(s) could not be elected`,
        );
      }
    });
}

/** The results whose election failed (ELECTION_NOT_NEEDED is no failure). */
export function failures(results: readonly ElectionResult[]): ElectionResult[] {
  return results.filter((r) => r.error !== null && r.error.code !== ErrorCode.ELECTION_NOT_NEEDED);
}

function usage(message: string): SamsaError {
  return new SamsaError(ErrorCode.INVALID_REQUEST, message);
}

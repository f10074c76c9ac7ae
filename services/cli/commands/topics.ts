/**
 * `samsa topics create|list|describe|delete`, modelled on kafka-topics. They talk to the
 * controllers (`--controller`). A per-topic error fails the command after the other topics'
 * results are printed.
 */
import type { Command } from "commander";
import type { PartitionMetadata, TopicResult } from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { collectConfig, intAtLeast } from "./args.js";
import { type CliContext, type GlobalOptions, withAdmin } from "./context.js";
import { formatTopicDescription, isUnavailable, isUnderReplicated } from "./output.js";

/** The options of `topics describe`. */
export interface DescribeOptions {
  topic?: string;
  underReplicatedPartitions?: boolean;
  unavailablePartitions?: boolean;
}

/**
 * The partitions `topics describe` prints with its filters, as kafka-topics: either filter
 * alone, or a partition matching either when both are given; undefined without filters (all
 * partitions, with each topic's summary line).
 */
export function describeFilter(
  opts: DescribeOptions,
): ((p: PartitionMetadata) => boolean) | undefined {
  const { underReplicatedPartitions: under, unavailablePartitions: unavailable } = opts;
  if (!under && !unavailable) return undefined;
  return (p) =>
    (under === true && isUnderReplicated(p)) || (unavailable === true && isUnavailable(p));
}

interface CreateOptions {
  topic: string;
  partitions?: number;
  replicationFactor?: number;
  config?: Record<string, string>;
  ifNotExists?: boolean;
}

/** Adds the `topics` command and its subcommands to `program`. */
export function addTopicsCommand(program: Command, ctx: CliContext): void {
  const topics = program
    .command("topics")
    .description("create, list, describe and delete topics (through the controllers)");

  topics
    .command("create")
    .description("create a topic")
    .requiredOption("--topic <name>", "topic name")
    .option(
      "--partitions <n>",
      "number of partitions (default: the cluster's num.partitions)",
      intAtLeast(1),
    )
    .option(
      "--replication-factor <n>",
      "replicas per partition (default: the cluster's default.replication.factor)",
      intAtLeast(1),
    )
    .option(
      "--config <key=value>",
      "a topic config, e.g. retention.ms=60000 (repeatable)",
      collectConfig,
    )
    .option("--if-not-exists", "succeed if the topic already exists")
    .action(async (_opts: CreateOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals<CreateOptions & GlobalOptions>();
      const results = await withAdmin(ctx, opts, (admin) =>
        admin.createTopics([
          {
            name: opts.topic,
            numPartitions: opts.partitions,
            replicationFactor: opts.replicationFactor,
            configs: opts.config,
          },
        ]),
      );
      const error = onlyResult(results, opts.topic).error;
      if (error !== null && !(opts.ifNotExists && error.code === ErrorCode.TOPIC_ALREADY_EXISTS)) {
        throw error;
      }
      if (error === null) ctx.stdout.write(`Created topic ${opts.topic}.\n`);
    });

  topics
    .command("list")
    .description("list the topics' names, one per line")
    .action(async (_opts: object, cmd: Command) => {
      const names = await withAdmin(ctx, cmd.optsWithGlobals<GlobalOptions>(), (admin) =>
        admin.listTopics(),
      );
      for (const name of names) ctx.stdout.write(`${name}\n`);
    });

  topics
    .command("describe")
    .description("describe topics: partitions, leaders, replicas, ISR, configs")
    .option("--topic <name>", "only this topic (default: all)")
    .option(
      "--under-replicated-partitions",
      "only partitions whose ISR is smaller than their replicas",
    )
    .option("--unavailable-partitions", "only partitions without a live leader")
    .action(async (_opts: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<DescribeOptions & GlobalOptions>();
      const names = opts.topic === undefined ? [] : [opts.topic];
      const only = describeFilter(opts);
      // Like kafka-topics, the reassignments in progress too (their adding and removing replicas).
      const [described, ongoing] = await withAdmin(
        ctx,
        opts,
        async (admin) =>
          [await admin.describeTopics(names), await admin.listPartitionReassignments()] as const,
      );
      let firstError: SamsaError | undefined;
      for (const t of described) {
        if (t.error === null) ctx.stdout.write(formatTopicDescription(t, only, ongoing));
        else firstError ??= t.error;
      }
      if (firstError !== undefined) throw firstError;
    });

  topics
    .command("delete")
    .description("delete a topic")
    .requiredOption("--topic <name>", "topic name")
    .option("--if-exists", "succeed if the topic does not exist")
    .action(async (_opts: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{ topic: string; ifExists?: boolean } & GlobalOptions>();
      const results = await withAdmin(ctx, opts, (admin) => admin.deleteTopics([opts.topic]));
      const error = onlyResult(results, opts.topic).error;
      if (
        error !== null &&
        !(opts.ifExists && error.code === ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
      ) {
        throw error;
      }
      if (error === null) ctx.stdout.write(`Deleted topic ${opts.topic}.\n`);
    });
}

/** The result for `topic`; a controller that answered without it is a bug (UNKNOWN). */
function onlyResult<R extends TopicResult>(results: readonly R[], topic: string): R {
  const result = results.find((r) => r.name === topic);
  if (result === undefined) {
    throw new SamsaError(ErrorCode.UNKNOWN, `the controller answered without topic ${topic}`);
  }
  return result;
}

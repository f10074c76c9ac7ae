/**
 * `samsa consume`: prints record values one per line (like kafka-console-consumer), from the
 * latest offset by default, from the beginning with `--from-beginning`, or from `--offset` of
 * one `--partition`. It ends after `--max-messages` records, after `--timeout-ms` without a new
 * record, or on Ctrl-C, and then reports the count on standard error. A damaged batch stops it
 * with CORRUPT_MESSAGE naming the partition and offset; `--skip-corrupt` moves past it instead and
 * reports each skip on standard error.
 */
import type { Command } from "commander";
import { Consumer, type SkippedBatch, type StartFrom } from "../../client/index.js";
import { ErrorCode, SamsaError } from "../../shared/errors.js";
import { CONSUME_KEY_SEPARATOR_DEFAULT } from "../defaults.js";
import { intAtLeast, type OffsetArg, parseOffset } from "./args.js";
import { consumeGroupCommand } from "./consumer-groups.js";
import { type CliContext, type GlobalOptions, withCluster } from "./context.js";
import { formatRecord } from "./output.js";

interface ConsumeOptions extends GlobalOptions {
  topic: string;
  fromBeginning?: boolean;
  partition?: number;
  offset?: OffsetArg;
  maxMessages?: number;
  timeoutMs?: number;
  printKey?: boolean;
  printOffset?: boolean;
  printPartition?: boolean;
  keySeparator: string;
  skipCorrupt?: boolean;
}

/** Adds the `consume` command to `program`. */
export function addConsumeCommand(program: Command, ctx: CliContext): void {
  program
    .command("consume")
    .description("print records' values, one per line")
    .requiredOption("--topic <name>", "topic to read")
    .option("--from-beginning", "start at the earliest offset (default: only new records)")
    .option("--partition <p>", "read only this partition", intAtLeast(0))
    .option(
      "--offset <offset>",
      "start offset of --partition: a number, earliest or latest",
      parseOffset,
    )
    .option("--max-messages <n>", "exit after this many records", intAtLeast(1))
    .option("--timeout-ms <ms>", "exit after this long without a new record", intAtLeast(1))
    .option("--print-key", "print the key before the value")
    .option("--print-offset", "print Offset:<offset> before the record")
    .option("--print-partition", "print Partition:<p> before the record")
    .option(
      "--key-separator <sep>",
      "between key and value with --print-key",
      CONSUME_KEY_SEPARATOR_DEFAULT,
    )
    .option(
      "--skip-corrupt",
      "move past damaged batches (each skip is reported on standard error) instead of failing",
    )
    .option("--group <id>", "consume as a member of this group, committing what was printed")
    .option("--gateway <host:port,...>", "gateways of --group (env SAMSA_GATEWAY)")
    .action(async (_opts: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ConsumeOptions & { group?: string }>();
      if (opts.group !== undefined) return consumeGroupCommand(ctx, { ...opts, group: opts.group });
      await consume(ctx, opts);
    });
}

/**
 * Where to start, from the flags (Kafka's rules: --offset needs --partition).
 * @throws SamsaError INVALID_REQUEST for --offset without --partition or with --from-beginning.
 */
export function startOf(
  opts: Pick<ConsumeOptions, "fromBeginning" | "partition" | "offset">,
): StartFrom {
  if (opts.offset !== undefined) {
    if (opts.partition === undefined) throw usage("--offset requires --partition");
    if (opts.fromBeginning) throw usage("--offset and --from-beginning exclude each other");
    return typeof opts.offset === "number" ? { offset: opts.offset } : opts.offset;
  }
  return opts.fromBeginning ? "earliest" : "latest";
}

async function consume(ctx: CliContext, opts: ConsumeOptions): Promise<void> {
  const from = startOf(opts);
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  let idle: NodeJS.Timeout | undefined;
  const armIdleTimer = (): void => {
    if (opts.timeoutMs === undefined) return;
    clearTimeout(idle);
    idle = setTimeout(() => stop.abort(), opts.timeoutMs);
  };
  let count = 0;
  try {
    await withCluster(ctx, opts, async (cluster, settings) => {
      const consumer = new Consumer({ cluster, requestTimeoutMs: settings.requestTimeoutMs });
      const format = {
        printKey: opts.printKey === true,
        printOffset: opts.printOffset === true,
        printPartition: opts.printPartition === true,
        keySeparator: opts.keySeparator,
      };
      armIdleTimer();
      const records = consumer.consume(opts.topic, {
        partitions: opts.partition === undefined ? undefined : [opts.partition],
        from,
        signal: stop.signal,
        startTimeoutMs: settings.apiTimeoutMs,
        onCorruptBatch: opts.skipCorrupt === true ? (b) => reportSkip(ctx, b) : undefined,
      });
      for await (const record of records) {
        ctx.stdout.write(formatRecord(record, format));
        count++;
        if (opts.maxMessages !== undefined && count >= opts.maxMessages) break;
        armIdleTimer();
      }
    });
  } finally {
    clearTimeout(idle);
    ctx.signal.removeEventListener("abort", onAbort);
    ctx.stderr.write(`Processed a total of ${count} messages\n`);
  }
}

/** Says loudly, on standard error, which offsets a `--skip-corrupt` run did not deliver. */
function reportSkip(ctx: CliContext, b: SkippedBatch): void {
  const last = b.nextOffset - 1;
  const range = last > b.offset ? `offsets ${b.offset}-${last}` : `offset ${b.offset}`;
  ctx.stderr.write(
    `WARNING: skipped a corrupt batch of ${b.topic}-${b.partition} (${range} not delivered): ${b.reason}\n`,
  );
}

function usage(message: string): SamsaError {
  return new SamsaError(ErrorCode.INVALID_REQUEST, message);
}

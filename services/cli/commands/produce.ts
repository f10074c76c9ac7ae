/**
 * `samsa produce`: one record per line of standard input (like kafka-console-producer),
 * batched (linger.ms / batch.size). With `--key-separator`, each line is `key<sep>value`. The
 * command ends at end of input once every record is acknowledged, or at the first delivery
 * error (then it stops reading and fails).
 */
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { Producer } from "../../client/index.js";
import { LINGER_MS_DEFAULT } from "../../client/index.js";
import type { SamsaError } from "../../shared/errors.js";
import type { CompressionType } from "../../shared/record-batch/index.js";
import { intAtLeast, parseAcks, parseCompression, splitKeyedLine } from "./args.js";
import { type CliContext, type GlobalOptions, withCluster } from "./context.js";

interface ProduceOptions extends GlobalOptions {
  topic: string;
  keySeparator?: string;
  partition?: number;
  acks: 0 | 1 | "all";
  compression?: CompressionType;
  lingerMs?: number;
  batchSize?: number;
}

/** Adds the `produce` command to `program`. */
export function addProduceCommand(program: Command, ctx: CliContext): void {
  program
    .command("produce")
    .description("send each line of standard input as a record")
    .requiredOption("--topic <name>", "topic to write to")
    .option("--key-separator <sep>", "split each line at the first <sep> into key and value")
    .option("--partition <p>", "write every record to this partition", intAtLeast(0))
    .option("--acks <acks>", "0, 1 or all", parseAcks, "all")
    .option("--compression <codec>", "none, gzip, lz4 or zstd", parseCompression)
    .option("--linger-ms <ms>", `linger.ms (default ${LINGER_MS_DEFAULT})`, intAtLeast(0))
    .option("--batch-size <bytes>", "batch.size in bytes", intAtLeast(1))
    .action(async (_opts: object, cmd: Command) => {
      await produce(ctx, cmd.optsWithGlobals<ProduceOptions>());
    });
}

async function produce(ctx: CliContext, opts: ProduceOptions): Promise<void> {
  await withCluster(ctx, opts, async (cluster, settings) => {
    const producer = new Producer({
      cluster,
      acks: opts.acks,
      compression: opts.compression,
      lingerMs: opts.lingerMs,
      batchSizeBytes: opts.batchSize,
      deliveryTimeoutMs: settings.apiTimeoutMs,
      requestTimeoutMs: settings.requestTimeoutMs,
      maxBlockMs: settings.apiTimeoutMs,
    });
    let failed: SamsaError | undefined;
    const lines = createInterface({ input: ctx.stdin, crlfDelay: Number.POSITIVE_INFINITY });
    // Ctrl-C while waiting for input ends the input: what was read is still sent.
    const onAbort = (): void => lines.close();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      let lineNumber = 0;
      for await (const line of lines) {
        if (failed !== undefined || ctx.signal.aborted) break;
        lineNumber++;
        const { key, value } = splitKeyedLine(line, opts.keySeparator, lineNumber);
        const { delivered } = await producer.add(opts.topic, {
          key,
          value,
          partition: opts.partition,
        });
        delivered.catch((err: SamsaError) => {
          failed ??= err;
        });
      }
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      lines.close();
      // Whatever was read is sent (or fails) before the command ends.
      await producer.close().catch((err: SamsaError) => {
        failed ??= err;
      });
    }
    if (failed !== undefined) throw failed;
  });
}

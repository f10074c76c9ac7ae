/** `samsa cluster describe`: the cluster id, the active controller and the live brokers. */
import type { Command } from "commander";
import { type CliContext, type GlobalOptions, withAdmin } from "./context.js";
import { formatCluster } from "./output.js";

/** Adds the `cluster` command and its subcommands to `program`. */
export function addClusterCommand(program: Command, ctx: CliContext): void {
  const cluster = program.command("cluster").description("describe the cluster");
  cluster
    .command("describe")
    .description("print the cluster id, the active controller and the live brokers")
    .action(async (_opts: object, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const description = await withAdmin(ctx, opts, (admin) => admin.describeCluster());
      ctx.stdout.write(formatCluster(description));
    });
}

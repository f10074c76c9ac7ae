/**
 * Entry point of the `samsa` CLI (`node scripts/samsa.mjs ...`): wires the process (arguments,
 * streams, environment, Ctrl-C) to {@link runCli} and exits with its code.
 */

import { runCli } from "./commands/program.js";
import { EXIT_SUCCESS } from "./defaults.js";

const interrupted = new AbortController();
// The first Ctrl-C stops the command cleanly (consumers end, producers flush); a second one
// gets Node's default behaviour and kills the process.
process.once("SIGINT", () => interrupted.abort());
process.once("SIGTERM", () => interrupted.abort());
// `samsa consume ... | head` closes the pipe early: that ends the command, it is no error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  interrupted.abort();
  process.exit(EXIT_SUCCESS);
});

const code = await runCli(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: interrupted.signal,
});
// Exit once the output is written: gRPC channels and timers are closed by then, but a stray
// handle must not keep a finished command alive.
process.stdout.write("", () => process.exit(code));

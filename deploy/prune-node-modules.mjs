#!/usr/bin/env node
/**
 * Copies the production packages of a project's node_modules into another directory:
 *
 *   node deploy/prune-node-modules.mjs <project dir> <destination node_modules>
 *
 * What `npm ci --omit=dev` would leave, without npm or a network: package-lock.json (v2+) marks
 * every package that only dev dependencies need with `"dev": true`; everything else that is on
 * disk is copied. Optional packages of other platforms (absent on disk) are skipped. Each
 * package is copied without its nested node_modules/; nested packages are entries of their own.
 * The Docker build runs this in its build stage (deploy/Dockerfile), where only `node` exists.
 */
import { cpSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [projectDir, destination] = process.argv.slice(2);
if (!projectDir || !destination) {
  process.stderr.write("usage: prune-node-modules.mjs <project dir> <destination node_modules>\n");
  process.exit(2);
}

const PREFIX = "node_modules/";
const lock = JSON.parse(readFileSync(join(projectDir, "package-lock.json"), "utf8"));
if (!lock.packages || typeof lock.packages !== "object") {
  process.stderr.write("package-lock.json has no `packages` (lockfileVersion 2 or 3 needed)\n");
  process.exit(2);
}

mkdirSync(destination, { recursive: true });
let copied = 0;
let dev = 0;
let absent = 0;
for (const [path, meta] of Object.entries(lock.packages)) {
  if (!path.startsWith(PREFIX)) continue; // the root package, workspaces
  if (meta.dev) {
    dev++;
    continue;
  }
  const from = join(projectDir, path);
  if (!existsSync(from)) {
    if (!meta.optional) {
      process.stderr.write(`missing production package ${path} (run npm ci first)\n`);
      process.exit(1);
    }
    absent++;
    continue;
  }
  const nested = join(from, "node_modules");
  cpSync(from, join(destination, path.slice(PREFIX.length)), {
    recursive: true,
    verbatimSymlinks: true,
    filter: (source) => source !== nested,
  });
  copied++;
}
process.stdout.write(
  `prune-node-modules: ${copied} production packages copied, ${dev} dev-only left out, ` +
    `${absent} optional packages of other platforms absent\n`,
);

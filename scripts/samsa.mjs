#!/usr/bin/env node
// The `samsa` CLI without a build step: registers tsx's ESM loader, then runs the TypeScript
// entry point (services/cli/main.ts). Usage: `node scripts/samsa.mjs topics list`.
import { register } from "tsx/esm/api";

register();
await import(new URL("../services/cli/main.ts", import.meta.url).href);

/** Controller entry point: load config, start, stop gracefully on SIGTERM/SIGINT. */
import { loadControllerConfig } from "../shared/config/index.js";
import { runService } from "../shared/run-service.js";
import { Controller } from "./controller.js";

await runService("controller", () => new Controller(loadControllerConfig(process.argv.slice(2))));

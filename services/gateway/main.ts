/** Gateway entry point: load config, start, stop gracefully on SIGTERM/SIGINT. */
import { runService } from "../shared/run-service.js";
import { loadGatewayConfig } from "../shared/config/index.js";
import { Gateway } from "./gateway.js";

await runService("gateway", () => new Gateway(loadGatewayConfig(process.argv.slice(2))));

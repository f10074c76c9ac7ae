/** Broker entry point: load config, start, stop gracefully on SIGTERM/SIGINT. */
import { runService } from "../shared/run-service.js";
import { loadBrokerConfig } from "../shared/config/index.js";
import { Broker } from "./broker.js";

await runService("broker", () => new Broker(loadBrokerConfig(process.argv.slice(2))));

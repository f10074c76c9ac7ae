#!/usr/bin/env node
/**
 * Entry point of the Samsa image: `node /app/deploy/entrypoint.mjs <service> [config file] [flags]`
 * with <service> one of controller, broker, gateway. Written in JavaScript and run by `node`
 * itself because the image may have no shell (the local base holds only node and its libraries).
 * It drops the service name from the arguments and loads the compiled `main.js` of that service,
 * which reads the rest of the command line and the SAMSA_* environment (docs/configuration.md).
 */
const SERVICES = ["controller", "broker", "gateway"];
const EXIT_USAGE = 64;

const service = process.argv[2];
if (!SERVICES.includes(service)) {
  process.stderr.write(
    `usage: <image> ${SERVICES.join("|")} [config file] [--key=value ...]\n` +
      (service === undefined ? "no service named\n" : `unknown service ${JSON.stringify(service)}\n`),
  );
  process.exit(EXIT_USAGE);
}
process.argv.splice(2, 1);
await import(new URL(`../dist/services/${service}/main.js`, import.meta.url).href);

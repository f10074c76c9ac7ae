/**
 * The layering rules of docs/architecture.md#layers, checked by `npm run check` (`npm run layers`).
 * Each rule's name is what a violation prints; its comment says why the wall is there.
 */
const SERVICES = "(broker|controller|gateway)";

module.exports = {
  forbidden: [
    {
      name: "no-cycles",
      comment:
        "No import cycle, type-only imports included: a cycle makes module order matter and hides a missing seam.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "shared-imports-no-service",
      comment:
        "services/shared is the bottom layer: it must not import a service, the client or the CLI.",
      severity: "error",
      from: { path: "^services/shared/" },
      to: { path: "^services/(broker|controller|gateway|client|cli)/" },
    },
    {
      name: "service-imports-no-other-service",
      comment:
        "A service (broker, controller, gateway) imports services/shared and never another service's files; what two services share belongs in services/shared.",
      severity: "error",
      from: { path: `^services/${SERVICES}/` },
      to: {
        path: `^services/${SERVICES}/`,
        pathNot: [`^services/$1/`],
      },
    },
    {
      name: "broker-controller-import-no-client",
      comment: "The broker and the controller do not use the client library.",
      severity: "error",
      from: { path: "^services/(broker|controller)/" },
      to: { path: "^services/(client|cli)/" },
    },
    {
      name: "client-imports-only-shared",
      comment:
        "services/client is the library: it imports services/shared only (and itself), never a service or the CLI.",
      severity: "error",
      from: { path: "^services/client/" },
      to: { path: "^services/(broker|controller|gateway|cli)/" },
    },
    {
      name: "client-through-index",
      comment:
        "The gateway and the CLI use the client library through services/client/index.ts only, never its internals.",
      severity: "error",
      from: { path: "^services/(gateway|cli)/" },
      to: { path: "^services/client/", pathNot: "^services/client/index\\.ts$" },
    },
    {
      name: "local-cluster-imports-only-shared",
      comment:
        "services/local-cluster launches the services as processes: it imports services/shared only, never a service's files (it talks to them over gRPC like a user).",
      severity: "error",
      from: { path: "^services/local-cluster/" },
      to: { path: "^services/(broker|controller|gateway|client|cli)/" },
    },
    {
      name: "no-service-imports-local-cluster",
      comment: "The launcher is a tool over the product; no service, the client or the CLI imports it.",
      severity: "error",
      from: { path: "^services/(shared|broker|controller|gateway|client|cli)/" },
      to: { path: "^services/local-cluster/" },
    },
    {
      name: "services-import-no-tests-or-scripts",
      comment: "Product code never imports test or script code.",
      severity: "error",
      from: { path: "^services/" },
      to: { path: "^(test|scripts)/" },
    },
    {
      name: "scripts-import-no-tests",
      comment:
        "scripts/ are commands over the product: they import nothing from test/ (the local-cluster launcher they share with the tests lives in services/local-cluster).",
      severity: "error",
      from: { path: "^scripts/" },
      to: { path: "^test/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^node_modules/|^services/shared/generated/|^dist/)" },
    tsPreCompilationDeps: true,
    parser: "swc",
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".mjs", ".js"] },
    moduleSystems: ["es6", "cjs"],
  },
};

/**
 * `npm run bench:grpc-floor`: what grpc-js itself does on this machine, with nothing of Samsa in
 * the way. A trivial echo service (one 100-byte `bytes` field, a handler that answers at once) in
 * a server process of its own, and a plain grpc-js client from a .proto in this one, over
 * loopback:
 *
 * - unary calls one at a time (the round trip, as row 4 of `bench:clients`),
 * - unary calls with 1,000 in flight (rows 5, 6 and 9),
 * - one bidirectional stream, one message per request and answer, 1,000 unanswered at most
 *   (row 8, the gateway's PublishStream).
 *
 * `--message-bytes=N` sets the request's size, `--reply-bytes=N` makes the server answer with N
 * bytes instead of an echo (a Produce's shape: a large request, a small answer). The server runs
 * with the V8 flags of Samsa's services (`SERVICE_V8_FLAGS`), the client with Node's defaults (as
 * a user's process).
 *
 * It prints each figure with the CPU both processes used, and one machine-readable line
 * `bench:grpc-floor unary_rtt_ms=<n> unary_inflight_s=<n> bidi_s=<n>`. docs/performance.md
 * compares the rows of `bench:clients` with these floors: a target above what grpc-js reaches
 * for an empty handler cannot be met by any handler.
 */
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";
import { SERVICE_V8_FLAGS } from "../services/shared/run-service.js";
import { intOption, processCpuMs } from "./bench-util.js";

const PROTO = `syntax = "proto3";
package floor.v1;
message EchoMessage { bytes data = 1; string id = 2; }
service EchoService {
  rpc Unary(EchoMessage) returns (EchoMessage);
  rpc Bidi(stream EchoMessage) returns (stream EchoMessage);
}
`;
const MESSAGE_BYTES = intOption("message-bytes", "BENCH_MESSAGE_BYTES", 100, 1);
/** The answer's size in bytes; -1 (the default) echoes the request. */
const REPLY_BYTES = intOption("reply-bytes", "BENCH_REPLY_BYTES", -1, -1);
const RTT_CALLS = intOption("rtt-calls", "BENCH_RTT_CALLS", 10_000, 10);
const INFLIGHT = intOption("inflight", "BENCH_INFLIGHT", 1000, 1);
const INFLIGHT_CALLS = intOption("inflight-calls", "BENCH_INFLIGHT_CALLS", 100_000, 100);
const BIDI_MESSAGES = intOption("bidi-messages", "BENCH_BIDI_MESSAGES", 300_000, 100);
/** Longest a phase may take, ms (every loop is bounded in count and time). */
const PHASE_TIMEOUT_MS = 60_000;
/** Longest wait for the server process to listen, ms. */
const SERVER_START_TIMEOUT_MS = 10_000;

interface EchoMessage {
  data: Buffer;
  id?: string;
}
type EchoClient = grpc.Client & {
  Unary(m: EchoMessage, cb: (err: grpc.ServiceError | null) => void): void;
  Bidi(): grpc.ClientDuplexStream<EchoMessage, EchoMessage>;
};

function loadEcho(dir: string): grpc.ServiceClientConstructor {
  const file = join(dir, "floor.proto");
  writeFileSync(file, PROTO);
  const pkg = grpc.loadPackageDefinition(loader.loadSync(file)) as unknown as {
    floor: { v1: { EchoService: grpc.ServiceClientConstructor } };
  };
  return pkg.floor.v1.EchoService;
}

async function serve(dir: string, replyBytes: number): Promise<void> {
  const Echo = loadEcho(dir);
  const reply = replyBytes < 0 ? undefined : { data: Buffer.alloc(replyBytes, 2) };
  const server = new grpc.Server();
  server.addService(Echo.service, {
    Unary: (
      call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>,
      cb: grpc.sendUnaryData<EchoMessage>,
    ) => cb(null, reply ?? call.request),
    Bidi: (call: grpc.ServerDuplexStream<EchoMessage, EchoMessage>) => {
      call.on("data", (m: EchoMessage) =>
        call.write(reply === undefined ? m : { ...reply, id: m.id }),
      );
      call.on("end", () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  process.send?.({ port });
}

/** Runs `phase`, prints its rate and both processes' CPU, returns calls (or messages) per second. */
async function measure(
  label: string,
  count: number,
  serverPid: number,
  phase: () => Promise<void>,
): Promise<{ perSecond: number; ms: number }> {
  const s0 = processCpuMs(serverPid) ?? 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    phase(),
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${label}: over ${PHASE_TIMEOUT_MS} ms`)),
        PHASE_TIMEOUT_MS,
      );
    }),
  ]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const clientCores = (c.user + c.system) / 1000 / ms;
  const serverCores = ((processCpuMs(serverPid) ?? s0) - s0) / ms;
  const perSecond = (count / ms) * 1000;
  console.log(
    `${label}: ${Math.round(perSecond).toLocaleString("en-US")}/s (${(ms / count).toFixed(3)} ms each), ` +
      `client ${clientCores.toFixed(2)} cores (${((clientCores * ms * 1000) / count).toFixed(0)} µs CPU each), ` +
      `server ${serverCores.toFixed(2)} cores (${((serverCores * ms * 1000) / count).toFixed(0)} µs CPU each)`,
  );
  return { perSecond, ms };
}

function unaryCalls(client: EchoClient, data: Buffer, total: number, inflight: number) {
  return new Promise<void>((resolve, reject) => {
    let sent = 0;
    let done = 0;
    const one = (): void => {
      sent++;
      client.Unary({ data }, (err) => {
        if (err) return reject(err);
        done++;
        if (done === total) resolve();
        else if (sent < total) one();
      });
    };
    for (let i = 0; i < Math.min(inflight, total); i++) one();
  });
}

function bidiMessages(client: EchoClient, data: Buffer, total: number, unanswered: number) {
  return new Promise<void>((resolve, reject) => {
    const call = client.Bidi();
    let sent = 0;
    let got = 0;
    const pump = (): void => {
      while (sent < total && sent - got < unanswered) {
        sent++;
        if (!call.write({ data, id: String(sent) })) {
          call.once("drain", pump);
          return;
        }
      }
    };
    call.on("data", () => {
      got++;
      if (got === total) {
        call.end();
        resolve();
      } else pump();
    });
    call.on("error", reject);
    pump();
  });
}

async function main(): Promise<void> {
  if (process.argv[2] === "--serve") return serve(process.argv[3]!, Number(process.argv[4]));
  const dir = mkdtempSync(join(tmpdir(), "samsa-grpc-floor-"));
  const child = fork(fileURLToPath(import.meta.url), ["--serve", dir, String(REPLY_BYTES)], {
    // The V8 flags every Samsa service runs with, so the server's floor is a service's.
    execArgv: ["--import", "tsx", ...SERVICE_V8_FLAGS],
    stdio: "inherit",
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("the echo server did not start")),
        SERVER_START_TIMEOUT_MS,
      );
      child.once("message", (m: { port: number }) => {
        clearTimeout(timer);
        resolve(m.port);
      });
      child.once("exit", (code) => reject(new Error(`the echo server exited (${code})`)));
    });
    const Echo = loadEcho(dir);
    const client = new Echo(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as EchoClient;
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + SERVER_START_TIMEOUT_MS, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    const data = Buffer.alloc(MESSAGE_BYTES, 1);
    console.log("bench:grpc-floor setup");
    console.log(`  node ${process.version}, @grpc/grpc-js ${grpcVersion()}`);
    console.log(
      `  an echo service (requests of a ${MESSAGE_BYTES}-byte bytes field, ${REPLY_BYTES < 0 ? "echoed" : `answered with ${REPLY_BYTES} bytes`} at once) in its own process (V8 flags ${SERVICE_V8_FLAGS.join(" ")}), a grpc-js client from a .proto in this one, one connection over loopback, default channel options`,
    );
    await unaryCalls(client, data, 1000, 100); // warm-up
    const rtt = await measure(
      `unary, one at a time, ${RTT_CALLS} calls`,
      RTT_CALLS,
      child.pid!,
      () => unaryCalls(client, data, RTT_CALLS, 1),
    );
    const inflight = await measure(
      `unary, ${INFLIGHT} in flight, ${INFLIGHT_CALLS} calls`,
      INFLIGHT_CALLS,
      child.pid!,
      () => unaryCalls(client, data, INFLIGHT_CALLS, INFLIGHT),
    );
    const bidi = await measure(
      `bidirectional stream, one message per request and answer, ≤ ${INFLIGHT} unanswered, ${BIDI_MESSAGES} messages`,
      BIDI_MESSAGES,
      child.pid!,
      () => bidiMessages(client, data, BIDI_MESSAGES, INFLIGHT),
    );
    client.close();
    console.log(
      `bench:grpc-floor unary_rtt_ms=${(rtt.ms / RTT_CALLS).toFixed(3)} unary_inflight_s=${Math.round(inflight.perSecond)} bidi_s=${Math.round(bidi.perSecond)}`,
    );
  } finally {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

function grpcVersion(): string {
  const pkg = JSON.parse(
    readFileSync(new URL("../node_modules/@grpc/grpc-js/package.json", import.meta.url), "utf8"),
  ) as { version: string };
  return pkg.version;
}

await main();

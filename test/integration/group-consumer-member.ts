/**
 * A {@link GroupConsumer} in its own process, for the tests that SIGKILL a member: settings come
 * as JSON in the `GROUP_MEMBER` environment variable; it prints one JSON line per event on
 * stdout: `{ev:"rec",p,o,t}` per record processed, `{ev:"commit",p,o,t}` per committed offset,
 * `{ev:"owned",parts}` when its assignment changes. SIGTERM disconnects it gracefully.
 */
import { GroupConsumer } from "../../services/client/index.js";

interface MemberSettings {
  gateways: string[];
  bootstrap: string[];
  group: string;
  topic: string;
  sessionTimeoutMs: number;
  autoCommitIntervalMs: number;
  instanceId?: string;
}

const s = JSON.parse(process.env.GROUP_MEMBER ?? "{}") as MemberSettings;
const line = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
const consumer = new GroupConsumer({
  groupId: s.group,
  gateways: s.gateways,
  bootstrapServers: s.bootstrap,
  sessionTimeoutMs: s.sessionTimeoutMs,
  autoCommitIntervalMs: s.autoCommitIntervalMs,
  autoOffsetReset: "earliest",
  groupInstanceId: s.instanceId,
  clientId: "child-member",
  onCommit: (offsets) => {
    for (const o of offsets) line({ ev: "commit", p: o.partition, o: o.offset, t: Date.now() });
  },
});
consumer.subscribe([s.topic]);
let owned = "";
const watch = setInterval(() => {
  const now = consumer
    .assignment()
    .map((p) => `${p.topic}:${p.partition}`)
    .join(",");
  if (now !== owned) {
    owned = now;
    line({ ev: "owned", parts: now === "" ? [] : now.split(","), t: Date.now() });
  }
}, 20);
process.once("SIGTERM", () => {
  clearInterval(watch);
  void consumer.disconnect();
});
await consumer.run({
  eachMessage: ({ partition, message }) => {
    line({ ev: "rec", p: partition, o: message.offset, t: Date.now() });
  },
});

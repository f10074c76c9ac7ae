/**
 * A group member in its own process, for the `groups-*` tests that SIGKILL or SIGSTOP members:
 * `node --import tsx groups-member-process.ts <gateway> <group> <topic>`. It heartbeats with the
 * raw GroupService protocol ({@link HeartbeatMember}) and prints one JSON line
 * `{"memberId", "epoch", "partitions"}` whenever what it owns changes. A line `commit` on stdin
 * commits offset 1 of every partition it believes it owns, with the member id and epoch it
 * believes current, and prints `{"commit": <ErrorCode of the call, 0 = ok>, "results": [...]}`.
 * Unlike a real client it does not rejoin after UNKNOWN_MEMBER: it keeps its stale view, so a
 * test can show that a member paused past its session cannot commit.
 */
import { createInterface } from "node:readline";
import { createClient } from "../../services/shared/grpc/client.js";
import { fromServiceError } from "../../services/shared/grpc/errors.js";
import { groupService } from "../../services/shared/grpc/proto.js";
import { HeartbeatMember } from "./groups-helpers.js";

const [address, group, topic] = process.argv.slice(2);
if (!address || !group || !topic) throw new Error("usage: <gateway> <group> <topic>");
const client = createClient(groupService.Client, address);
const member = new HeartbeatMember(() => client, group, [topic], { keepStaleView: true });
let last = "";
const report = () => {
  const line = JSON.stringify({
    memberId: member.memberId,
    epoch: member.epoch,
    partitions: member.partitions,
  });
  if (line !== last) {
    last = line;
    process.stdout.write(`${line}\n`);
  }
};
member.onChange = report;
member.start();
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "commit") return;
  const offsets = member.partitions.map((tp) => ({
    topic,
    partition: Number(tp.split(":")[1]),
    offset: 1,
  }));
  member.commit(offsets).then(
    (res) =>
      process.stdout.write(
        `${JSON.stringify({ commit: 0, results: res.results.map((r) => r.errorCode) })}\n`,
      ),
    (err: unknown) =>
      process.stdout.write(`${JSON.stringify({ commit: fromServiceError(err).code })}\n`),
  );
});

/**
 * The in-flight bookkeeping of the gRPC server's bounds (shared/grpc/limits.ts): per connection
 * and per server, releases idempotent, the refusal error typed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadBrokerConfig } from "../../services/shared/config/index.js";
import { ErrorCode, ERROR_TABLE, GrpcStatus } from "../../services/shared/errors.js";
import {
  InflightLimiter,
  SERVER_LIMITS_DEFAULT,
  tooManyRequests,
} from "../../services/shared/grpc/limits.js";

function admit(limiter: InflightLimiter, connection: string): () => void {
  const a = limiter.acquire(connection);
  assert.ok(a.admitted, `admitted on ${connection}`);
  return a.release;
}

describe("InflightLimiter", () => {
  it("refuses past the per-connection bound, other connections unaffected", () => {
    const limiter = new InflightLimiter(2, 10);
    const releases = [admit(limiter, "a"), admit(limiter, "a")];
    assert.deepEqual(limiter.acquire("a"), { admitted: false, reason: "inflight_connection" });
    admit(limiter, "b");
    assert.equal(limiter.inflight("a"), 2);
    assert.equal(limiter.inflight(), 3);
    releases[0]!();
    admit(limiter, "a");
    assert.equal(limiter.inflight("a"), 2);
  });

  it("refuses past the server bound on any connection", () => {
    const limiter = new InflightLimiter(5, 3);
    const releases = [admit(limiter, "a"), admit(limiter, "b"), admit(limiter, "c")];
    assert.deepEqual(limiter.acquire("d"), { admitted: false, reason: "inflight_server" });
    assert.deepEqual(limiter.acquire("a"), { admitted: false, reason: "inflight_server" });
    releases[1]!();
    admit(limiter, "d");
    assert.equal(limiter.inflight(), 3);
  });

  it("the per-connection bound is checked first", () => {
    const limiter = new InflightLimiter(1, 1);
    admit(limiter, "a");
    assert.deepEqual(limiter.acquire("a"), { admitted: false, reason: "inflight_connection" });
    assert.deepEqual(limiter.acquire("b"), { admitted: false, reason: "inflight_server" });
  });

  it("a release counts once, and a drained connection is forgotten", () => {
    const limiter = new InflightLimiter(2, 2);
    const release = admit(limiter, "a");
    release();
    release();
    assert.equal(limiter.inflight(), 0);
    assert.equal(limiter.inflight("a"), 0);
    admit(limiter, "a");
    admit(limiter, "a");
    assert.equal(limiter.inflight(), 2);
  });

  it("rejects bounds that are not positive integers", () => {
    assert.throws(() => new InflightLimiter(0, 1));
    assert.throws(() => new InflightLimiter(1, 1.5));
  });
});

describe("server limits", () => {
  it("a refusal is TOO_MANY_REQUESTS: retriable, RESOURCE_EXHAUSTED, naming the bound", () => {
    const err = tooManyRequests("inflight_connection", 8);
    assert.equal(err.code, ErrorCode.TOO_MANY_REQUESTS);
    assert.equal(err.retriable, true);
    assert.equal(
      ERROR_TABLE[ErrorCode.TOO_MANY_REQUESTS].grpcStatus,
      GrpcStatus.RESOURCE_EXHAUSTED,
    );
    assert.equal(err.metadata?.["samsa-limit"], "inflight_connection");
    assert.match(err.message, /8 requests .* this connection/);
  });

  it("the config keys default to the named constants and can be set", () => {
    const id = ["--broker.id=1"];
    assert.deepEqual(loadBrokerConfig(id, {}).serverLimits, SERVER_LIMITS_DEFAULT);
    const set = loadBrokerConfig(
      [
        ...id,
        "--max.connections=4",
        "--max.concurrent.streams.per.connection=16",
        "--max.inflight.requests.per.connection=5",
        "--max.inflight.requests=8",
      ],
      {},
    ).serverLimits;
    assert.deepEqual(set, {
      connectionsMax: 4,
      concurrentStreamsPerConnectionMax: 16,
      inflightRequestsPerConnectionMax: 5,
      inflightRequestsMax: 8,
    });
    assert.throws(() => loadBrokerConfig([...id, "--max.inflight.requests=0"], {}));
  });
});

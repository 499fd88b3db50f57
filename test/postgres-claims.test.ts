/**
 * Claims on PostgreSQL that arrive together go as one statement (store/postgres-claims.ts). How the batches
 * form and what a failure does, against a recording connection; and on a real cluster, that the claims of one
 * batch each get their own runs, by their own labels, none twice.
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import { BerthError } from "../wire/errors.js";
import { ClaimBatcher } from "../store/postgres-claims.js";
import { openPostgresStore } from "../store/postgres.js";
import { numbered, type PgAccess } from "../store/postgres-sql.js";
import { flowInput } from "./support/fixtures.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { until } from "./support/wait.js";

interface Sent {
  sql: string;
  params: Record<string, unknown>;
  answer(value: unknown): void;
  fail(err: unknown): void;
}

/** A connection that records each statement and answers it when the test says. */
function recording(): { db: PgAccess; sent: Sent[] } {
  const sent: Sent[] = [];
  const query = (sql: string, params: unknown[]) =>
    new Promise<unknown>((answer, fail) => sent.push({ sql, params: params[0] as Record<string, unknown>, answer, fail }));
  const db: PgAccess = {
    get: async <T>(sql: string, ...params: unknown[]) => (await query(sql, params)) as T,
    all: async <T>(sql: string, ...params: unknown[]) => (await query(sql, params)) as T[],
    run: () => Promise.reject(new Error("no writes here")),
    timestamp: (afterMs = 0) => new Date(Date.UTC(2026, 0, 1) + afterMs).toISOString(),
  };
  return { db, sent };
}

const settled = () => new Promise((r) => setImmediate(r));
/** An error as PostgreSQL reports a statement it refused, with its SQLSTATE. */
function refused(message: string, code: string): pg.DatabaseError {
  return Object.assign(new pg.DatabaseError(message, message.length, "error"), { code });
}

/** A run's row as the claim functions return it (JSON), enough for toFlowRun. */
function runRow(id: string, agentId: string) {
  return {
    id,
    flow_id: "f",
    flow_name: "flow",
    flow_version: 1,
    state: "Submitted",
    state_message: null,
    parameters: "{}",
    labels: "[]",
    idempotency_key: null,
    agent_id: agentId,
    created_at: "2026-01-01T00:00:00.000Z",
    updated_at: "2026-01-01T00:00:00.000Z",
    started_at: null,
    ended_at: null,
    last_heartbeat_at: null,
    epoch: 1,
    lease_expires_at: "2026-01-01T00:10:00.000Z",
    version: 2,
    scheduled_start: "2026-01-01T00:00:00.000Z",
    clock: null,
    phases: null,
  };
}

/**
 * A claim sent alone and answered (nothing taken), and two more that arrived meanwhile: their statement is
 * `sent[1]`, not yet answered.
 */
async function batchOfTwo() {
  const { db, sent } = recording();
  const batcher = new ClaimBatcher(db, "lock");
  void batcher.claim("a1", [], 1, 1000);
  const [b, c] = [batcher.claim("a2", [], 1, 1000), batcher.claim("a3", [], 1, 1000)];
  await settled();
  sent[0]!.answer([]);
  await settled();
  return { sent, b, c };
}

describe("claims sent together", () => {
  it("sends a claim alone at once, and the claims that arrive while it is under way as one statement after it", async () => {
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock");
    const first = batcher.claim("a1", ["etl"], 1, 60_000);
    const rest = [batcher.claim("a2", undefined, 2, 60_000), batcher.claim("a3", ["gpu", "etl"], 1, 60_000), batcher.claim("a4", undefined, 1, 60_000)];
    await settled();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.sql).toContain("berth_claim(");
    expect(sent[0]!.params).toMatchObject({ agentId: "a1", agentLabels: ["etl"], max: 1, lease: "2026-01-01T00:01:00.000Z" });
    sent[0]!.answer([runRow("r1", "a1")]);
    await settled();
    // The next batch went as soon as the first answered.
    expect(sent).toHaveLength(2);
    expect(sent[1]!.sql).toContain("berth_claim_batch(");
    expect(sent[1]!.params).toMatchObject({ agents: ["a2", "a3", "a4"], labels: [null, '["gpu","etl"]', null], max: [2, 1, 1] });
    sent[1]!.answer({ claims: [{ agent: null, runs: [runRow("r2", "a2"), runRow("r3", "a2")] }, { runs: [] }, null] });
    expect((await first).runs.map((r) => r.id)).toEqual(["r1"]);
    const [two, three, four] = await Promise.all(rest);
    expect(two!.runs.map((r) => r.id)).toEqual(["r2", "r3"]);
    expect(three!.runs).toEqual([]);
    // An unknown agent: no agent, nothing claimed.
    expect(four).toEqual({ agent: undefined, runs: [] });
    expect(sent).toHaveLength(2);
  });

  it("sends each claim of a batch again alone when the batch fails, so that one claim's failure is its own", async () => {
    const { sent, b, c } = await batchOfTwo();
    sent[1]!.fail(refused("invalid input", "22P02"));
    await settled();
    expect(sent.slice(2).map((s) => s.params["agentId"])).toEqual(["a2", "a3"]);
    sent[2]!.fail(refused("invalid input", "22P02"));
    sent[3]!.answer([runRow("r9", "a3")]);
    await expect(b).rejects.toThrow("invalid input");
    expect((await c).runs.map((r) => r.id)).toEqual(["r9"]);
  });

  it.each([
    ["the database unreachable", () => new BerthError("BERTH_E_UNAVAILABLE", "the PostgreSQL database is unavailable")],
    ["a concurrency limit set", () => refused("a concurrency limit is set: claim under the claim lock", "BL001")],
  ])("fails every claim of a batch with what each would have met alone (%s), without sending them again", async (_, error) => {
    const { sent, b, c } = await batchOfTwo();
    const failure = error();
    sent[1]!.fail(failure);
    await expect(b).rejects.toBe(failure);
    await expect(c).rejects.toBe(failure);
    expect(sent).toHaveLength(2);
  });

  it("fails every claim of a batch whose answer does not match it, without sending them again", async () => {
    const { sent, b, c } = await batchOfTwo();
    // Committed already: sending them again could claim twice for one request.
    sent[1]!.answer({ claims: [{ runs: [] }] });
    await expect(b).rejects.toThrow("berth_claim_batch answered 1 claims for 2");
    await expect(c).rejects.toThrow("berth_claim_batch answered 1 claims for 2");
    expect(sent).toHaveLength(2);
  });

  it("puts at most 32 claims, and 100 runs, in one statement, oldest first", async () => {
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock");
    void batcher.claim("first", [], 1, 1000);
    for (let i = 0; i < 40; i++) void batcher.claim(`a${i}`, [], 1, 1000);
    void batcher.claim("big-1", [], 60, 1000);
    void batcher.claim("big-2", [], 60, 1000);
    await settled();
    sent[0]!.answer([]);
    await settled();
    expect(sent[1]!.params["agents"]).toEqual(Array.from({ length: 32 }, (_, i) => `a${i}`));
    sent[1]!.answer({ claims: Array.from({ length: 32 }, () => ({ runs: [] })) });
    await settled();
    // 8 claims of one run and one of 60: 68 runs; the next 60 would make 128.
    expect(sent[2]!.params["agents"]).toEqual([...Array.from({ length: 8 }, (_, i) => `a${32 + i}`), "big-1"]);
    sent[2]!.answer({ claims: Array.from({ length: 9 }, () => ({ runs: [] })) });
    await settled();
    expect(sent[3]!.params).toMatchObject({ agentId: "big-2", max: 60 });
  });

  it("sends the next claims on while a statement is slow to answer, and answers the slow one's when it does", async () => {
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock", { slowBatchMs: 30 });
    const stuck = batcher.claim("a1", [], 1, 1000);
    const [b, c] = [batcher.claim("a2", [], 1, 1000), batcher.claim("a3", [], 1, 1000)];
    await settled();
    expect(sent).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 60));
    expect(sent).toHaveLength(2);
    sent[1]!.answer({ claims: [{ runs: [runRow("r2", "a2")] }, { runs: [] }] });
    expect((await b).runs.map((r) => r.id)).toEqual(["r2"]);
    expect((await c).runs).toEqual([]);
    sent[0]!.answer([runRow("r1", "a1")]);
    expect((await stuck).runs.map((r) => r.id)).toEqual(["r1"]);
    // Its answer, after the hand-over, sends nothing more.
    await settled();
    expect(sent).toHaveLength(2);
  });

  it("sends a NUL in an array's strings as U+FFFD, as in a string, which PostgreSQL text cannot hold", () => {
    expect(numbered("SELECT @ids::text[]", [{ ids: ["a\u0000b", "c"] }]).values).toEqual([["a\uFFFDb", "c"]]);
  });

  it("fails only the claim whose answer cannot be read", async () => {
    const { sent, b, c } = await batchOfTwo();
    sent[1]!.answer({ claims: [{ runs: [{ ...runRow("r1", "a2"), parameters: "{" }] }, { runs: [runRow("r2", "a3")] }] });
    await expect(b).rejects.toThrow(SyntaxError);
    expect((await c).runs.map((r) => r.id)).toEqual(["r2"]);
  });
});

// Under CI=true PostgreSQL is installed (scripts/prereqs.sh): a missing one fails instead of skipping.
describePostgres("claims sent together, on PostgreSQL", () => {
  const clusterOf = useCluster();

  it("gives each claim of a batch its own runs, by its own labels, none twice, and nothing to an unknown agent", async () => {
    const url = await clusterOf().database("claim_batches");
    // Counts calls of the store's functions, to see the batch statement's.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query("ALTER DATABASE claim_batches SET track_functions = 'pl'");
    const store = await openPostgresStore(url);
    try {
      const { flow } = await store.registerFlow(flowInput({ name: "batched" }));
      const etl = await Promise.all(Array.from({ length: 12 }, () => store.createFlowRun({ flow, parameters: {}, labels: ["etl"] })));
      const gpu = await Promise.all(Array.from({ length: 6 }, () => store.createFlowRun({ flow, parameters: {}, labels: ["gpu"] })));
      const agents = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => (await store.registerAgent({ name: `agent-${i}`, labels: i % 2 ? ["gpu"] : ["etl"], concurrency: 10 })).agent),
      );
      // All at once: the first goes alone, the rest as one statement while it is under way.
      const [read, labelled] = await Promise.all([
        Promise.all([
          ...agents.map((agent) => store.claimForAgent(agent.id, 2, 60_000)),
          store.claimForAgent("no-such-agent", 2, 60_000),
          store.claimForAgent("no\u0000such", 2, 60_000),
        ]),
        Promise.all(agents.map((agent) => store.claimFlowRuns(agent.id, agent.labels, 2, 60_000))),
      ]);
      expect(read.slice(6)).toEqual([undefined, undefined]);
      const byAgent = agents.map((agent, i) => {
        expect(read[i]?.agent.id).toBe(agent.id);
        return [...read[i]!.runs, ...labelled[i]!];
      });
      byAgent.forEach((runs, i) => {
        for (const run of runs) {
          expect(run.labels).toEqual(agents[i]!.labels);
          expect(run.agentId).toBe(agents[i]!.id);
        }
      });
      const taken = byAgent.flat().map((run) => run.id);
      // Three etl agents take 12 runs (2 + 2 each), three gpu agents the 6 there are.
      expect(new Set(taken).size).toBe(taken.length);
      expect(taken.sort()).toEqual([...etl, ...gpu].map((run) => run.flowRun.id).sort());
      const states = await Promise.all(taken.map((id) => store.listFlowRunStates(id)));
      expect(states.map((entries) => entries.map((e) => e.state))).toEqual(taken.map(() => ["Scheduled", "Submitted"]));
      // A backend reports its function calls as its connection closes (idle, only every 10 s).
      await store.close();
      const batches = async () =>
        Number((await admin.query("SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions WHERE funcname = 'berth_claim_batch'")).rows[0].n);
      await until("the batch statement's calls to be counted", async () => (await batches()) > 0, { everyMs: 50 });
    } finally {
      await store.close();
      await admin.end();
    }
  });
});

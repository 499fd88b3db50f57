/**
 * Claims on PostgreSQL that arrive together go as one statement (store/postgres-claims.ts). How the batches
 * form and what a failure does, against a recording connection; and on a real cluster, that the claims of one
 * batch each get their own runs, by their own labels, none twice.
 */
import { describe, expect, it } from "vitest";
import { BerthError } from "../wire/errors.js";
import { ClaimBatcher } from "../store/postgres-claims.js";
import { openPostgresStore } from "../store/postgres.js";
import type { PgAccess } from "../store/postgres-sql.js";
import { flowInput } from "./support/fixtures.js";
import { describePostgres, useCluster } from "./support/postgres.js";

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
const unavailable = (err: unknown) => err instanceof BerthError && err.code === "BERTH_E_UNAVAILABLE";

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

describe("claims sent together", () => {
  it("sends a claim alone at once, and the claims that arrive while it is under way as one statement after it", async () => {
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock", unavailable);
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
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock", unavailable);
    const first = batcher.claim("a1", [], 1, 1000);
    const [b, c] = [batcher.claim("a2", [], 1, 1000), batcher.claim("a3", [], 1, 1000)];
    await settled();
    sent[0]!.answer([]);
    await settled();
    sent[1]!.fail(Object.assign(new Error("invalid input"), { code: "22P02" }));
    await settled();
    expect(sent.slice(2).map((s) => s.params["agentId"])).toEqual(["a2", "a3"]);
    sent[2]!.fail(Object.assign(new Error("invalid input"), { code: "22P02" }));
    sent[3]!.answer([runRow("r9", "a3")]);
    await expect(b).rejects.toThrow("invalid input");
    expect((await c).runs.map((r) => r.id)).toEqual(["r9"]);
    expect((await first).runs).toEqual([]);
  });

  it("fails every claim of a batch the database refused as a whole, without sending them again", async () => {
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock", unavailable);
    void batcher.claim("a1", [], 1, 1000).catch(() => undefined);
    const [b, c] = [batcher.claim("a2", [], 1, 1000), batcher.claim("a3", [], 1, 1000)];
    await settled();
    sent[0]!.answer([]);
    await settled();
    sent[1]!.fail(new BerthError("BERTH_E_UNAVAILABLE", "the PostgreSQL database is unavailable"));
    await expect(b).rejects.toThrow("unavailable");
    await expect(c).rejects.toThrow("unavailable");
    expect(sent).toHaveLength(2);
  });

  it("fails only the claim whose answer cannot be read", async () => {
    const { db, sent } = recording();
    const batcher = new ClaimBatcher(db, "lock", unavailable);
    void batcher.claim("a1", [], 1, 1000);
    const [b, c] = [batcher.claim("a2", [], 1, 1000), batcher.claim("a3", [], 1, 1000)];
    await settled();
    sent[0]!.answer([]);
    await settled();
    sent[1]!.answer({ claims: [{ runs: [{ ...runRow("r1", "a2"), parameters: "{" }] }, { runs: [runRow("r2", "a3")] }] });
    await expect(b).rejects.toThrow(SyntaxError);
    expect((await c).runs.map((r) => r.id)).toEqual(["r2"]);
  });
});

// Under CI=true PostgreSQL is installed (scripts/prereqs.sh): a missing one fails instead of skipping.
describePostgres("claims sent together, on PostgreSQL", () => {
  const clusterOf = useCluster();

  it("gives each claim of a batch its own runs, by its own labels, none twice, and nothing to an unknown agent", async () => {
    const store = await openPostgresStore(await clusterOf().database("claim_batches"));
    try {
      const { flow } = await store.registerFlow(flowInput({ name: "batched" }));
      const etl = await Promise.all(Array.from({ length: 12 }, () => store.createFlowRun({ flow, parameters: {}, labels: ["etl"] })));
      const gpu = await Promise.all(Array.from({ length: 6 }, () => store.createFlowRun({ flow, parameters: {}, labels: ["gpu"] })));
      const agents = await Promise.all(
        Array.from({ length: 6 }, async (_, i) => (await store.registerAgent({ name: `agent-${i}`, labels: i % 2 ? ["gpu"] : ["etl"], concurrency: 10 })).agent),
      );
      // All at once: the first goes alone, the rest as one statement while it is under way.
      const [read, labelled] = await Promise.all([
        Promise.all([...agents.map((agent) => store.claimForAgent(agent.id, 2, 60_000)), store.claimForAgent("no-such-agent", 2, 60_000)]),
        Promise.all(agents.map((agent) => store.claimFlowRuns(agent.id, agent.labels, 2, 60_000))),
      ]);
      expect(read[6]).toBeUndefined();
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
    } finally {
      await store.close();
    }
  });
});

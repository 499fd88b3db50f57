import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../store/sqlite.js";
import { MIGRATIONS } from "../store/sqlite-migrations.js";
import { SQL } from "../store/sqlite-sql.js";
import { CANDIDATES_OF_SET, NEXT_LABEL_SET, NEXT_START } from "../store/sqlite-orchestration.js";
import { tooDeep } from "../shared/json-limits.js";
import { startTestServer } from "./support/server.js";
import { flowInput } from "./support/fixtures.js";
import { describeStoreContract } from "./support/store-contract.js";

const dir = mkdtempSync(path.join(tmpdir(), "berth-store-"));
let files = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pathOf(description: string): string {
  return description.replace(/^sqlite:/, "");
}

describeStoreContract("sqlite in memory", (now) => openSqliteStore(":memory:", { now }));
describeStoreContract("sqlite file", (now) => openSqliteStore(path.join(dir, `store-${files++}.db`), { now }), {
  openSibling: (store) => openSqliteStore(pathOf(store.description)),
});

describe("sqlite specifics", () => {
  it("commits the writes asked for together in one transaction, and a write that fails there fails alone", async () => {
    const store = await openSqliteStore(path.join(dir, "group-commit.db"));
    try {
      const { flow } = await store.registerFlow(flowInput({ name: "grouped" }));
      const before = store.commits;
      const runs = (await Promise.all(Array.from({ length: 20 }, () => store.createFlowRun({ flow, parameters: {}, labels: [] })))).map((r) => r.flowRun);
      expect(store.commits - before).toBe(1);
      // In one batch: a write refused (a stale version) between two that succeed; the batch still commits.
      const [first, second] = runs as [(typeof runs)[0], (typeof runs)[0]];
      const results = await Promise.allSettled([
        store.setFlowRunState(first.id, { state: "Cancelled", expectedVersion: first.version }),
        store.setFlowRunState(second.id, { state: "Cancelled", expectedVersion: second.version + 7 }),
        store.appendLogs(second.id, [{ at: new Date().toISOString(), level: "info", message: "kept", task: null }]),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
      expect(store.commits - before).toBe(2);
      const reopened = await openSqliteStore(pathOf(store.description));
      try {
        expect((await reopened.getFlowRun(first.id))?.state).toBe("Cancelled");
        expect((await reopened.getFlowRun(second.id))?.state).toBe("Scheduled");
        expect((await reopened.listLogs(second.id, 0, 10)).map((l) => l.message)).toEqual(["kept"]);
        expect((await reopened.listFlowRuns({ limit: 100 })).length).toBe(20);
      } finally {
        await reopened.close();
      }
    } finally {
      await store.close();
    }
  });

  it("creates the schema once and records its version", async () => {
    const file = path.join(dir, "nested", "dir", "schema.db");
    const store = await openSqliteStore(file);
    const again = await openSqliteStore(file);
    await Promise.all([store.close(), again.close()]);
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      db.close();
    }
  });

  it("serves a claim from the index of each label set it may take, and the next start from (state, scheduled_start), without sorting, from indexes of queued runs only", async () => {
    const file = path.join(dir, "plan.db");
    await (await openSqliteStore(file)).close();
    const db = new Database(file, { readonly: true });
    const params = { now: new Date().toISOString(), labels: "[]", afterStart: "", afterRowid: 0, page: 64 };
    const planOf = (sql: string, used: Record<string, unknown>) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(used) as { detail: string }[]).map((row) => row.detail).join("\n");
    try {
      const claim = planOf(CANDIDATES_OF_SET, params);
      expect(claim).toContain("flow_runs_state_labels_start (state=? AND labels=? AND scheduled_start");
      expect(claim).not.toContain("TEMP B-TREE");
      const sets = planOf(NEXT_LABEL_SET, { labels: "" });
      expect(sets).toMatch(/USING (COVERING )?INDEX flow_runs_state_(labels_start|group) \(state=\? AND labels>\?\)/);
      expect(sets).not.toContain("TEMP B-TREE");
      for (const sql of [NEXT_START.labelled, NEXT_START.unlabelled]) {
        const plan = planOf(sql, { now: params.now, agentLabels: "[]" });
        expect(plan, sql).toMatch(/flow_runs_state_(labels_)?start/);
        expect(plan, sql).not.toContain("TEMP B-TREE");
      }
      // Those indexes hold queued runs only, so that a claim removes its run from them and adds it to none.
      for (const index of ["flow_runs_state_start", "flow_runs_state_group", "flow_runs_state_labels_start"]) {
        const { sql } = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?").get(index) as { sql: string };
        expect(sql, index).toMatch(/ WHERE state = 'Scheduled'$/);
      }
    } finally {
      db.close();
    }
  });

  it("serves the reaper's scans from their indexes without sorting", async () => {
    const file = path.join(dir, "reaper-plan.db");
    await (await openSqliteStore(file)).close();
    const db = new Database(file, { readonly: true });
    const params = { state: "Submitted", before: new Date().toISOString(), limit: 10 };
    const expected = [
      [SQL.expiredLeases, "flow_runs_state_lease"],
      [SQL.silentRunning, "flow_runs_state_heard"],
      [SQL.updatedBefore, "flow_runs_state_updated"],
    ] as const;
    try {
      for (const [sql, index] of expected) {
        const used = sql.includes("@state") ? params : { before: params.before, limit: params.limit };
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(used) as { detail: string }[]).map((row) => row.detail).join("\n");
        expect(plan, sql).toContain(index);
        expect(plan, sql).not.toContain("TEMP B-TREE");
      }
    } finally {
      db.close();
    }
  });

  it("upgrades a database of the first schema, keeping its runs and giving old flows the default recovery", async () => {
    const file = path.join(dir, "v1.db");
    const db = new Database(file);
    db.exec(MIGRATIONS[0] as string);
    db.pragma("user_version = 1");
    const at = "2024-01-01T00:00:00.000Z";
    db.prepare(
      `INSERT INTO flows VALUES ('f1', 'old', 'old', 1, 'h', '[]', '{"type":"local","directory":"/d","flows":{}}',
        '{"type":"LocalEnvironment","className":"LocalEnvironment","labels":[],"metadata":{}}', '[]', '[]', ?)`,
    ).run(at);
    db.prepare(
      `INSERT INTO flow_runs (id, flow_id, flow_name, flow_version, state, version, labels, parameters, agent_id, created_at, updated_at)
       VALUES ('r1', 'f1', 'old', 1, 'Submitted', 1, '[]', '{}', 'agent-1', ?, ?)`,
    ).run(at, at);
    db.close();
    const store = await openSqliteStore(file);
    try {
      expect(await store.getFlow("f1")).toMatchObject({ recovery: { onLost: "fail", maxAttempts: 3 }, runTimeoutMs: null });
      expect(await store.getFlowRun("r1")).toMatchObject({ state: "Submitted", epoch: 0, leaseExpiresAt: null, agentId: "agent-1" });
      // Claimed before leases existed: the start timeout still finds it.
      expect((await store.listRunsUpdatedBefore("Submitted", new Date(), 10)).map((r) => r.id)).toEqual(["r1"]);
    } finally {
      await store.close();
    }
  });

  it("upgrades a database holding values nested too deep to serve, cutting them to the bound", async () => {
    const file = path.join(dir, "deep.db");
    const db = new Database(file);
    for (const step of MIGRATIONS.slice(0, 2)) db.exec(step as string);
    db.pragma("user_version = 2");
    const deep = `${'{"a":'.repeat(5_000)}1${"}".repeat(5_000)}`;
    const at = "2024-01-01T00:00:00.000Z";
    db.prepare(
      `INSERT INTO flows (id, name, slug, version, content_hash, labels, storage, environment, parameters, tasks, created_at)
       VALUES ('f1', 'poisoned', 'poisoned', 1, 'h', '[]', '{"type":"local","directory":"/d","flows":{}}', ?, ?, '[]', ?)`,
    ).run(`{"type":"custom","className":"E","labels":["x"],"metadata":{"keep":1,"deep":${deep}}}`, `[{"name":"p","required":false,"default":${deep}}]`, at);
    db.prepare(
      `INSERT INTO flow_runs (id, flow_id, flow_name, flow_version, state, version, labels, parameters, created_at, updated_at)
       VALUES ('r1', 'f1', 'poisoned', 1, 'Scheduled', 0, '[]', ?, ?, ?)`,
    ).run(`{"p":${deep}}`, at, at);
    db.close();
    const store = await openSqliteStore(file);
    try {
      const flow = await store.getFlow("f1");
      expect(flow?.environment).toMatchObject({ type: "custom", className: "E", labels: ["x"], metadata: { keep: 1 } });
      expect(tooDeep(JSON.stringify(flow?.environment))).toBeUndefined();
      expect(tooDeep(JSON.stringify(flow?.parameters))).toBeUndefined();
      expect(tooDeep(JSON.stringify((await store.getFlowRun("r1"))?.parameters))).toBeUndefined();
      // What broke reads before: the server serving every flow and claiming the run.
      await using server = await startTestServer({ store });
      const listed = await server.app.inject({ method: "GET", url: "/api/flows" });
      expect(listed.statusCode).toBe(200);
      expect(listed.json().flows[0].environment.metadata.deep).toEqual(expect.any(Object));
    } finally {
      await store.close();
    }
  });

  it("refuses a database written by a newer berth", async () => {
    const file = path.join(dir, "future.db");
    const db = new Database(file);
    db.pragma("user_version = 99");
    db.close();
    await expect(openSqliteStore(file)).rejects.toMatchObject({ code: "BERTH_E_CONFIG" });
  });
});

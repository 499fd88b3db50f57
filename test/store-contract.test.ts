import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../store/sqlite.js";
import { SQL } from "../store/sqlite-sql.js";
import { describeStoreContract } from "./support/store-contract.js";

const dir = mkdtempSync(path.join(tmpdir(), "berth-store-"));
let files = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pathOf(description: string): string {
  return description.replace(/^sqlite:/, "");
}

describeStoreContract("sqlite in memory", () => openSqliteStore(":memory:"));
describeStoreContract("sqlite file", () => openSqliteStore(path.join(dir, `store-${files++}.db`)), {
  openSibling: (store) => openSqliteStore(pathOf(store.description)),
});

describe("sqlite specifics", () => {
  it("creates the schema once and records its version", async () => {
    const file = path.join(dir, "nested", "dir", "schema.db");
    const store = await openSqliteStore(file);
    const again = await openSqliteStore(file);
    await Promise.all([store.close(), again.close()]);
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma("user_version", { simple: true })).toBe(1);
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      db.close();
    }
  });

  it("serves the claim from the (state, created_at) index without sorting", async () => {
    const file = path.join(dir, "plan.db");
    await (await openSqliteStore(file)).close();
    const db = new Database(file, { readonly: true });
    try {
      for (const sql of [SQL.claimableLabelled, SQL.claimableUnlabelled]) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all({ max: 1, agentLabels: "[]" }) as { detail: string }[])
          .map((row) => row.detail)
          .join("\n");
        expect(plan).toContain("flow_runs_state_created");
        expect(plan).not.toContain("TEMP B-TREE");
      }
    } finally {
      db.close();
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

/**
 * The store contract on PostgreSQL: the same suite as SQLite's, unchanged, each store on a fresh database of
 * one throwaway cluster (Debian's postgresql, started here and removed after).
 */
import pg from "pg";
import { expect, it } from "vitest";
import { BerthError } from "../wire/errors.js";
import { openPostgresStore } from "../store/postgres.js";
import { access } from "../store/postgres-sql.js";
import type { StateStore } from "../store/port.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { describeStoreContract } from "./support/store-contract.js";
import { flowInput } from "./support/fixtures.js";

// Under CI=true PostgreSQL is installed (scripts/prereqs.sh): a missing one fails instead of skipping.
describePostgres("on PostgreSQL", () => {
  const clusterOf = useCluster();
  let databases = 0;
  const urls = new WeakMap<StateStore, string>();

  it("stores what a process printed with a NUL in it (PostgreSQL text cannot hold one: it becomes U+FFFD)", async () => {
    const store = await openPostgresStore(await clusterOf().database(`nul_${databases++}`));
    try {
      const { flow } = await store.registerFlow(flowInput());
      const { flowRun } = await store.createFlowRun({ flow, parameters: {}, labels: [] });
      await store.appendLogs(flowRun.id, [{ at: new Date().toISOString(), level: "info", message: "a\u0000b" }]);
      const failed = await store.setFlowRunState(flowRun.id, { state: "Failed", message: "exit\u0000", expectedVersion: 0 });
      expect((await store.listLogs(flowRun.id, 0, 10)).map((l) => l.message)).toEqual(["a\uFFFDb"]);
      expect(failed.stateMessage).toBe("exit\uFFFD");
    } finally {
      await store.close();
    }
  });

  it("fails with BERTH_E_UNAVAILABLE (a 503, which clients wait out), not a 500, when no pooled connection frees up in time", async () => {
    const pool = new pg.Pool({ connectionString: await clusterOf().database(`pool_${databases++}`), max: 1, connectionTimeoutMillis: 100 });
    const held = await pool.connect();
    try {
      const failure = await access(pool, () => new Date()).get("SELECT 1").catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(BerthError);
      expect(failure).toMatchObject({ code: "BERTH_E_UNAVAILABLE", message: expect.stringContaining("try again shortly") });
    } finally {
      held.release();
      await pool.end();
    }
  });

  describeStoreContract(
    "postgres",
    async (now) => {
      const url = await clusterOf().database(`contract_${databases++}`);
      const store = await openPostgresStore(url, now ? { now } : {});
      urls.set(store, url);
      return store;
    },
    {
      openSibling: async (store) => {
        const url = urls.get(store);
        if (!url) throw new Error("not a store of this suite");
        return openPostgresStore(url);
      },
    },
  );
});

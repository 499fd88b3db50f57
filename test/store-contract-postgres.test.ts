/**
 * The store contract on PostgreSQL: the same suite as SQLite's, unchanged, each store on a fresh database of
 * one throwaway cluster (Debian's postgresql, started here and removed after).
 */
import { expect, it } from "vitest";
import { openPostgresStore } from "../store/postgres.js";
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

/**
 * The claim race (test/support/claim-race.ts) on PostgreSQL: racing processes on one database, and several
 * `berth server` processes (replicas) sharing it, each run handed out once. And claims racing under a
 * concurrency limit: with no limit set, claims do not queue behind each other in the database; with one, they must.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { openPostgresStore } from "../store/postgres.js";
import { describeClaimRace, type ServerRaceTarget, type StoreRaceTarget } from "./support/claim-race.js";
import { flowInput } from "./support/fixtures.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { BerthProcess, REPO, freePort } from "./support/processes.js";

describePostgres("on PostgreSQL", () => {
  const clusterOf = useCluster();
  let databases = 0;

  const store: StoreRaceTarget = {
    async create() {
      const url = await clusterOf().database(`race_${databases++}`);
      return {
        opener: { module: path.join(REPO, "dist", "store", "postgres.js"), exportName: "openPostgresStore", args: [url] },
        dispose: async () => undefined,
      };
    },
  };

  const servers: ServerRaceTarget = {
    async start(count) {
      const url = await clusterOf().database(`race_servers_${databases++}`);
      // One home: the replicas share the server key, as replicas must.
      const home = await mkdtemp(path.join(tmpdir(), "berth-claim-race-pg-"));
      const procs: BerthProcess[] = [];
      const stop = async (): Promise<void> => {
        try {
          await Promise.all(procs.map((proc) => proc.stop()));
        } finally {
          await rm(home, { recursive: true, force: true });
        }
      };
      try {
        const ports = new Set<number>();
        while (ports.size < count) ports.add(await freePort());
        const env = { BERTH_HOME: home, BERTH_SERVER_LEASE: "10m", BERTH_SERVER_START_TIMEOUT: "10m" };
        for (const port of ports) procs.push(new BerthProcess(["server", "--port", String(port), "--db", url], env));
        await Promise.all(procs.map((proc) => proc.waitFor(/listening on/)));
        return { urls: [...ports].map((port) => `http://127.0.0.1:${port}`), stop };
      } catch (err) {
        await stop();
        throw err;
      }
    },
  };

  describeClaimRace("postgres", { store, servers });

  it("keeps a concurrency limit exact under claims racing from two stores, set while claims ran without one", async () => {
    const url = await clusterOf().database(`race_limit_${databases++}`);
    const [a, b] = await Promise.all([openPostgresStore(url), openPostgresStore(url)]);
    try {
      const { flow } = await a.registerFlow(flowInput({ name: "limited" }));
      for (let i = 0; i < 40; i++) await a.createFlowRun({ flow, parameters: {}, labels: ["etl"] });
      // Claims without a limit first, so that both stores take the unlimited way; then the limit arrives.
      expect(await b.claimFlowRuns("warm-up", ["etl"], 1, 600_000)).toHaveLength(1);
      expect(await a.claimFlowRuns("warm-up", ["etl"], 1, 600_000)).toHaveLength(1);
      await a.setConcurrencyLimit("etl", 5);
      const claims = await Promise.all(Array.from({ length: 24 }, (_, i) => (i % 2 ? a : b).claimFlowRuns(`agent-${i}`, ["etl"], 1 + (i % 3), 600_000)));
      // Two taken before the limit, three under it: never more than five active.
      expect(claims.flat()).toHaveLength(3);
      expect(await a.listFlowRuns({ state: "Submitted", limit: 100 })).toHaveLength(5);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

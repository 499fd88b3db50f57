/**
 * The claim race (test/support/claim-race.ts) on PostgreSQL: racing processes on one database, and several
 * `berth server` processes (replicas) sharing it, each run handed out once.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeClaimRace, type ServerRaceTarget, type StoreRaceTarget } from "./support/claim-race.js";
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
});

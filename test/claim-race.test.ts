/** The claim race (test/support/claim-race.ts) on SQLite: one database file shared by several processes. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describeClaimRace, type ServerRaceTarget, type StoreRaceTarget } from "./support/claim-race.js";
import { BerthProcess, REPO, freePort } from "./support/processes.js";

async function freshDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), "berth-claim-race-"));
}

const store: StoreRaceTarget = {
  async create() {
    const dir = await freshDir();
    return {
      opener: { module: path.join(REPO, "dist", "store", "sqlite.js"), exportName: "openSqliteStore", args: [path.join(dir, "berth.db")] },
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  },
};

const servers: ServerRaceTarget = {
  async start(count) {
    const dir = await freshDir();
    const procs: BerthProcess[] = [];
    const stop = async (): Promise<void> => {
      try {
        await Promise.all(procs.map((proc) => proc.stop()));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    };
    try {
      const ports = new Set<number>();
      while (ports.size < count) ports.add(await freePort());
      const env = { BERTH_HOME: dir, BERTH_SERVER_LEASE: "10m", BERTH_SERVER_START_TIMEOUT: "10m" };
      for (const port of ports) procs.push(new BerthProcess(["server", "--port", String(port), "--db", path.join(dir, "berth.db")], env));
      await Promise.all(procs.map((proc) => proc.waitFor(/listening on/)));
      return { urls: [...ports].map((port) => `http://127.0.0.1:${port}`), stop };
    } catch (err) {
      await stop();
      throw err;
    }
  },
};

describeClaimRace("sqlite", { store, servers });

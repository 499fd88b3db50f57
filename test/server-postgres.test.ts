/**
 * `berth server --db postgres://…` for real: a server process on a throwaway PostgreSQL cluster serves the
 * API as it does on SQLite, says plainly when the database is down (503, which clients wait out), and keeps
 * every acknowledged write across a restart of the database and of itself.
 */
import { expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { isBerthError } from "../wire/errors.js";
import { flowBody } from "./support/fixtures.js";
import { BerthProcess, TEST_TOKEN, berth, freePort } from "./support/processes.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { until } from "./support/wait.js";

describePostgres("berth server on PostgreSQL", () => {
  const clusterOf = useCluster();

  it("serves the API from PostgreSQL, rides out the database restarting, and keeps what it acknowledged", async () => {
    // With a password (the throwaway cluster trusts loopback, so any will do): it must appear in no output.
    const db = (await clusterOf().database("server")).replace("postgres://berth@", "postgres://berth:pw-not-logged@");
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    const start = async () => {
      const proc = new BerthProcess(["server", "--port", String(port), "--db", db]);
      await proc.waitFor(/listening on/);
      return proc;
    };
    let server = await start();
    try {
      const client = new ApiClient({ baseUrl: api, token: TEST_TOKEN });
      expect((await client.health()).store).toBe("postgres");
      expect(server.output).toContain("127.0.0.1");
      expect(server.output).not.toContain("pw-not-logged");
      const { flow } = await client.registerFlow(flowBody({ name: "pg-flow", labels: ["etl"] }));
      const { flowRun } = await client.createFlowRun({ flowId: flow.id, parameters: {} });
      const limit = await berth(["concurrency", "set", "etl", "3", "--api", api]);
      expect(limit.code, limit.stderr).toBe(0);

      // The database goes away: a request says so with 503, and works again once it is back.
      await clusterOf().kill();
      const down = await client.getFlowRun(flowRun.id).catch((err: unknown) => err);
      expect(isBerthError(down, "BERTH_E_UNAVAILABLE"), String(down)).toBe(true);
      expect((down as Error).message).toContain("the PostgreSQL database is unavailable");
      await clusterOf().start();
      await until("the server to reach the restarted database", async () => {
        try {
          await client.getFlowRun(flowRun.id);
          return true;
        } catch (err) {
          expect(isBerthError(err, "BERTH_E_UNAVAILABLE") || isBerthError(err, "BERTH_E_SERVER_UNREACHABLE"), String(err)).toBe(true);
          return false;
        }
      }, { timeoutMs: 30_000 });

      // And the server itself restarts: everything acknowledged is still there.
      await server.stop();
      expect(server.output).not.toContain("pw-not-logged");
      server = await start();
      expect((await client.getFlowRun(flowRun.id)).state).toBe("Scheduled");
      expect((await client.listConcurrencyLimits()).map((l) => [l.label, l.max])).toEqual([["etl", 3]]);
      expect((await client.listFlows()).flows.map((f) => f.name)).toEqual(["pg-flow"]);
    } finally {
      await server.stop();
    }
  }, 120_000);

  it("says which database it could not open, without its password", async () => {
    const port = await freePort();
    const result = await berth(["server", "--port", String(port), "--db", `postgres://berth:hunter22@127.0.0.1:${await freePort()}/nowhere`], { timeoutMs: 30_000 });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("cannot open the PostgreSQL database at postgres://berth:***@127.0.0.1:");
    expect(result.stderr).not.toContain("hunter22");
  });
});

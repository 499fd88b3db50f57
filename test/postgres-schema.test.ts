/**
 * The PostgreSQL store's schema on a real, throwaway cluster (Debian's postgresql, started by the test): it
 * migrates once however many replicas start together, knows its version, and refuses a newer one.
 */
import pg from "pg";
import { expect, it } from "vitest";
import { migratePostgres, POSTGRES_MIGRATIONS } from "../store/postgres-migrations.js";
import { describePostgres, useCluster } from "./support/postgres.js";

// Under CI=true PostgreSQL is installed (scripts/prereqs.sh): a missing one fails instead of skipping.
describePostgres("PostgreSQL schema", () => {
  const clusterOf = useCluster();

  it("migrates a new database once, even when several replicas start together, and says which version it is", async () => {
    const url = await clusterOf().database("migrate_once");
    const clients = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        return client;
      }),
    );
    try {
      const versions = await Promise.all(clients.map((client) => migratePostgres(client)));
      expect(versions).toEqual(Array(6).fill(POSTGRES_MIGRATIONS.length));
      const [first] = clients as [pg.Client];
      const tables = (await first.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")).rows.map((r) => r.table_name);
      expect(tables).toEqual([
        "agents",
        "api_tokens",
        "berth_schema",
        "build_contexts",
        "concurrency_limits",
        "flow_run_states",
        "flow_runs",
        "flows",
        "logs",
        "schedule_clocks",
        "schedule_ticks",
        "scheduler_passes",
        "schedules",
        "secrets",
        "task_runs",
      ]);
      expect((await first.query("SELECT version FROM berth_schema")).rows).toEqual([{ version: POSTGRES_MIGRATIONS.length }]);
      // Again: nothing to do.
      expect(await migratePostgres(first)).toBe(POSTGRES_MIGRATIONS.length);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });

  it("refuses a database whose schema is newer than this berth, changing nothing", async () => {
    const client = new pg.Client({ connectionString: await clusterOf().database("from_the_future") });
    await client.connect();
    try {
      await migratePostgres(client);
      await client.query("UPDATE berth_schema SET version = version + 1");
      await expect(migratePostgres(client)).rejects.toThrow(`the database schema (version ${POSTGRES_MIGRATIONS.length + 1}) is newer than this berth understands (${POSTGRES_MIGRATIONS.length}): upgrade berth`);
      expect((await client.query("SELECT version FROM berth_schema")).rows).toEqual([{ version: POSTGRES_MIGRATIONS.length + 1 }]);
    } finally {
      await client.end();
    }
  });

  it("survives the server being restarted: the data is still there", async () => {
    const url = await clusterOf().database("restart");
    let client = new pg.Client({ connectionString: url });
    await client.connect();
    await migratePostgres(client);
    await client.query("INSERT INTO concurrency_limits (label, max_runs, updated_at) VALUES ('etl', 2, 'now')");
    await client.end();
    await clusterOf().restart();
    client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      expect((await client.query("SELECT label, max_runs FROM concurrency_limits")).rows).toEqual([{ label: "etl", max_runs: 2 }]);
    } finally {
      await client.end();
    }
  });
});

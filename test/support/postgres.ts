/** PostgreSQL for tests: the throwaway cluster (bench/postgres-cluster.ts) per describe block, run, not skipped, under CI=true. */
import { afterAll, beforeAll, describe } from "vitest";
import { postgresAvailable, startPostgres, type PostgresCluster } from "../../bench/postgres-cluster.js";

export { postgresAvailable, postgresBinDir, startPostgres, type PostgresCluster } from "../../bench/postgres-cluster.js";

/** `describe` for tests that need PostgreSQL: skipped only where it is missing and CI is not set (under CI=true it runs, and fails without it). */
export function describePostgres(name: string, body: () => void): void {
  describe.skipIf(!postgresAvailable && process.env.CI !== "true")(name, body);
}

/** One throwaway cluster for the enclosing describe block, started before its tests and removed after. */
export function useCluster(): () => PostgresCluster {
  let cluster: PostgresCluster | undefined;
  beforeAll(async () => {
    cluster = await startPostgres();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error("the PostgreSQL cluster did not start");
    return cluster;
  };
}

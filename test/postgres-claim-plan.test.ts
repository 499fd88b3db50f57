/**
 * A PostgreSQL claim finds its runs by reading the same few pages however many runs of other labels are
 * queued: its statements seek their own label set's place in the index of queued runs, also in the plans
 * PostgreSQL keeps for them (made once per connection, without knowing the set). Measured with auto_explain,
 * whose plans of the claim's statements, with the pages each read, come back as notices. (Writing the claimed
 * run costs a page or so more per index level as the table grows: not what is measured here.)
 */
import pg from "pg";
import { expect, it } from "vitest";
import { openPostgresStore } from "../store/postgres.js";
import { describePostgres, useCluster } from "./support/postgres.js";
import { flowInput } from "./support/fixtures.js";

/** Every statement's plan, as run, with the pages it read, as a notice to the session. */
const AUTO_EXPLAIN = [
  "LOAD 'auto_explain'",
  "SET auto_explain.log_min_duration = 0",
  "SET auto_explain.log_analyze = on",
  "SET auto_explain.log_buffers = on",
  "SET auto_explain.log_nested_statements = on",
  "SET auto_explain.log_level = notice",
  "SET client_min_messages = notice",
];

// Under CI=true PostgreSQL is installed (scripts/prereqs.sh): a missing one fails instead of skipping.
describePostgres("a PostgreSQL claim's cost", () => {
  const clusterOf = useCluster();

  /** Pages each call of berth_claim read to find its run: the label sets queued, then the set's first due run. */
  async function pagesPerClaim(queuedElsewhere: number): Promise<number[]> {
    const url = await clusterOf().database(`plan_${queuedElsewhere}`);
    const store = await openPostgresStore(url);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { flow } = await store.registerFlow(flowInput());
      // Copies of a queued run, each with an id and a place in the queue of its own: the runs of other labels
      // first, then the agent's, which a walk in start order would reach only past the others.
      const queue = async (labels: string[], copies: number) => {
        const { flowRun } = await store.createFlowRun({ flow, parameters: {}, labels });
        await client.query(
          `INSERT INTO flow_runs SELECT (jsonb_populate_record(t, jsonb_build_object('id', t.id || '-' || g, 'seq', nextval('flow_runs_seq_seq')))).*
           FROM flow_runs t, generate_series(1, $2::int) g WHERE t.id = $1`,
          [flowRun.id, copies],
        );
      };
      await queue(["other"], queuedElsewhere);
      await queue(["mine"], 1_000);
      await client.query("ANALYZE flow_runs");
      const plans: string[] = [];
      client.on("notice", (notice) => plans.push(notice.message ?? ""));
      for (const setting of AUTO_EXPLAIN) await client.query(setting);
      const pages: number[] = [];
      for (let i = 0; i < 8; i++) {
        plans.length = 0;
        const now = new Date().toISOString();
        const { rows } = await client.query<{ labels: string }>("SELECT * FROM berth_claim('berth:claims', 'agent-1', ARRAY['mine'], 1, $1, $1)", [now]);
        expect(rows.map((row) => row.labels)).toEqual(['["mine"]']);
        const finding = plans.filter((plan) => /Query Text: (WITH RECURSIVE queued|SELECT f\.id, f\.scheduled_start, f\.seq FROM flow_runs f)/.test(plan));
        expect(finding, plans.join("\n")).toHaveLength(2);
        pages.push(
          finding
            .map((plan) => /Buffers: shared hit=(\d+)(?: read=(\d+))?/.exec(plan))
            .reduce((sum, buffers) => sum + Number(buffers?.[1] ?? Number.NaN) + Number(buffers?.[2] ?? 0), 0),
        );
      }
      return pages;
    } finally {
      await client.end();
      await store.close();
    }
  }

  /** Pages all of one berth_claim call's statements read, on `client`, per claim of `claims`. */
  async function pagesOfEveryStatement(client: pg.Client, claims: number): Promise<number[]> {
    const plans: string[] = [];
    const listen = (notice: { message?: string }) => plans.push(notice.message ?? "");
    client.on("notice", listen);
    try {
      for (const setting of AUTO_EXPLAIN) await client.query(setting);
      const pages: number[] = [];
      for (let i = 0; i < claims; i++) {
        plans.length = 0;
        const now = new Date().toISOString();
        const { rows } = await client.query("SELECT * FROM berth_claim('berth:claims', 'agent-1', ARRAY['mine'], 1, $1, $1)", [now]);
        expect(rows).toHaveLength(1);
        // The call's own plan counts what its statements read once more.
        const statements = plans.filter((plan) => !/Query Text: SELECT \* FROM berth_claim/.test(plan));
        pages.push(statements.map((plan) => /Buffers: shared hit=(\d+)(?: read=(\d+))?/.exec(plan)).reduce((sum, b) => sum + Number(b?.[1] ?? 0) + Number(b?.[2] ?? 0), 0));
      }
      return pages;
    } finally {
      client.off("notice", listen);
    }
  }

  it("costs the same whether its connection planned it on a small queue or on a large one never analyzed", async () => {
    const url = await clusterOf().database("plan_made_small");
    const store = await openPostgresStore(url);
    const early = new pg.Client({ connectionString: url });
    const late = new pg.Client({ connectionString: url });
    await early.connect();
    try {
      const { flow } = await store.registerFlow(flowInput());
      for (let i = 0; i < 20; i++) await store.createFlowRun({ flow, parameters: {}, labels: ["mine"] });
      // A server that started on a small queue: its connection plans the claim's statements now, once.
      for (let i = 0; i < 5; i++) await early.query("SELECT * FROM berth_claim('berth:claims', 'agent-1', ARRAY['mine'], 1, $1, $1)", [new Date().toISOString()]);
      // The queue grows (no ANALYZE, which would have the plans made again).
      const { flowRun } = await store.createFlowRun({ flow, parameters: {}, labels: ["mine"] });
      await early.query(
        `INSERT INTO flow_runs SELECT (jsonb_populate_record(t, jsonb_build_object('id', t.id || '-' || g, 'seq', nextval('flow_runs_seq_seq')))).*
         FROM flow_runs t, generate_series(1, 20000) g WHERE t.id = $1`,
        [flowRun.id],
      );
      await late.connect();
      const kept = await pagesOfEveryStatement(early, 4);
      const fresh = await pagesOfEveryStatement(late, 4);
      // Seeks and the write read about 50 pages; a walk over the queued runs (or a sort of them all) would read
      // hundreds more, whichever queue the plans were made on.
      const seen = `pages per claim: ${kept.join(", ")} with plans made at 20 queued, ${fresh.join(", ")} with plans made at 20,000 never analyzed`;
      expect(Math.max(...kept, ...fresh), seen).toBeLessThanOrEqual(150);
    } finally {
      await early.end();
      await late.end().catch(() => undefined);
      await store.close();
    }
  }, 60_000);

  it("does not grow with the runs of other labels queued", async () => {
    const few = await pagesPerClaim(10);
    const many = await pagesPerClaim(20_000);
    // A deeper index costs a page or two more per seek (four seeks); a walk past the other runs costs dozens.
    expect(Math.max(...many), `pages per claim: ${few.join(", ")} with 10 queued elsewhere, ${many.join(", ")} with 20,000`).toBeLessThanOrEqual(Math.max(...few) + 4 * 3);
  }, 60_000);
});

/**
 * GET /metrics on the server: Prometheus text that Prometheus's own promtool accepts, whose figures move as runs
 * are created, claimed, finished and reaped, with bounded labels (route patterns, never ids).
 */
import { afterEach, describe, expect, it } from "vitest";
import { call, expectError } from "./support/api.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { families, promtoolProblems, sample, samples, type Sample } from "./support/prometheus.js";
import { startTestServer } from "./support/server.js";
import { until } from "./support/wait.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;
let s: TestServer | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

async function scrapeText(server: TestServer, token?: string): Promise<string> {
  const res = await server.app.inject({ method: "GET", url: "/metrics", ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.body;
}

const scrape = async (server: TestServer, token?: string): Promise<Sample[]> => samples(await scrapeText(server, token));

describe("server /metrics", () => {
  it("follows runs from creation through claim and finish, and the queue per label set", async () => {
    const server = (s = await startTestServer({ config: { reaperIntervalMs: 0 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const flow = (await post("/api/flows", flowBody())).body.flow;
    const before = await scrape(server);
    expect(sample(before, "berth_flow_runs_created_total")).toBe(0);

    const etl = (await post("/api/flow-runs", { flowId: flow.id, labels: ["etl"] })).body.flowRun;
    await post("/api/flow-runs", { flowId: flow.id, labels: ["etl", "gpu"] });
    await post("/api/flow-runs", { flowId: flow.id, labels: ["gpu", "etl"] });
    let m = await scrape(server);
    expect(sample(m, "berth_flow_runs_created_total", { flow: flow.name, source: "api" })).toBe(3);
    expect(sample(m, "berth_flow_runs", { flow: flow.name, state: "Scheduled" })).toBe(3);
    expect(sample(m, "berth_queue_depth", { labels: "etl" })).toBe(1);
    expect(sample(m, "berth_queue_depth", { labels: "etl,gpu" })).toBe(2);
    expect(sample(m, "berth_queue_oldest_wait_seconds", { labels: "etl" })).toBeGreaterThanOrEqual(0);

    const agent = (await post("/api/agents", { name: uniqueName("agent"), labels: ["etl"] })).body;
    const claimed = (await post(`/api/agents/${agent.id}/claim`, { waitMs: 0 })).body.claims[0].flowRun;
    expect(claimed.id).toBe(etl.id);
    await post(`/api/flow-runs/${claimed.id}/state`, { state: "Running", expectedVersion: claimed.version, epoch: 1 });
    await post(`/api/flow-runs/${claimed.id}/state`, { state: "Success", expectedVersion: claimed.version + 1, epoch: 1 });
    m = await scrape(server);
    expect(sample(m, "berth_claim_duration_seconds_count", { outcome: "claimed" })).toBe(1);
    expect(sample(m, "berth_flow_run_queue_wait_seconds_count", { labels: "etl" })).toBe(1);
    expect(sample(m, "berth_flow_runs_finished_total", { flow: flow.name, state: "Success" })).toBe(1);
    expect(sample(m, "berth_flow_runs", { flow: flow.name, state: "Success" })).toBe(1);
    expect(sample(m, "berth_flow_runs", { flow: flow.name, state: "Scheduled" })).toBe(2);
    expect(sample(m, "berth_queue_depth", { labels: "etl" })).toBe(0);
    expect(sample(m, "berth_agents", { status: "online" })).toBe(1);
    // Route patterns, not paths: a run's id never becomes a label value.
    expect(sample(m, "berth_http_request_duration_seconds_count", { method: "POST", route: "/api/flow-runs/:id/state", status_code: "200" })).toBe(2);
    expect(JSON.stringify(m)).not.toContain(claimed.id);
  });

  it("counts parked claims while they wait, and reaper actions by rule", async () => {
    const server = (s = await startTestServer({ config: { reaperIntervalMs: 0 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const flow = (await post("/api/flows", flowBody())).body.flow;
    const agent = (await post("/api/agents", { name: uniqueName("agent"), labels: ["etl"] })).body;
    const parked = post(`/api/agents/${agent.id}/claim`, { waitMs: 30_000 });
    await until("the claim to park", async () => sample(await scrape(server), "berth_claims_parked") === 1);
    await post("/api/flow-runs", { flowId: flow.id, labels: ["etl"] });
    const run = (await parked).body.claims[0].flowRun;
    const m = await scrape(server);
    expect(sample(m, "berth_claims_parked")).toBe(0);
    expect(sample(m, "berth_claim_duration_seconds_count", { outcome: "empty" })).toBeGreaterThanOrEqual(1);

    // The agent never starts it: past its lease and start timeout the reaper gives it back to the queue.
    const report = await server.app.reaper.reapOnce(Date.now() + 24 * 3600_000);
    expect(report.rescheduled).toEqual([run.id]);
    expect(sample(await scrape(server), "berth_reaper_actions_total", { rule: "unstarted", outcome: "Scheduled" })).toBe(1);
  });

  it("is valid Prometheus text with every series named by its conventions", async () => {
    const server = (s = await startTestServer({ config: { reaperIntervalMs: 0 } }));
    const post = (url: string, payload: object) => call(server.app, { method: "POST", url, payload });
    const flow = (await post("/api/flows", flowBody())).body.flow;
    await post("/api/flow-runs", { flowId: flow.id, labels: ["etl"] });
    const text = await scrapeText(server);
    expect(promtoolProblems(text)).toEqual([]);
    const types = families(text);
    expect([...types.keys()].filter((name) => name.startsWith("berth_")).sort()).toEqual([
      "berth_agents",
      "berth_claim_duration_seconds",
      "berth_claims_parked",
      "berth_flow_run_phase_seconds",
      "berth_flow_run_queue_wait_seconds",
      "berth_flow_runs",
      "berth_flow_runs_created_total",
      "berth_flow_runs_finished_total",
      "berth_http_request_duration_seconds",
      "berth_queue_depth",
      "berth_queue_oldest_wait_seconds",
      "berth_reaper_actions_total",
      "berth_scheduler_slots_total",
    ]);
    for (const [name, type] of types) {
      if (type === "histogram") expect(name).toMatch(/_seconds$/);
      if (name.startsWith("berth_")) expect(name.endsWith("_total"), name).toBe(type === "counter");
    }
    expect(types.get("process_cpu_seconds_total")).toBe("counter");
  });

  it("asks for a token when the server requires one, and takes an agent's", async () => {
    const server = (s = await startTestServer({ config: { apiToken: "admin-secret", reaperIntervalMs: 0 } }));
    await expectError(server.app, { method: "GET", url: "/metrics" }, 401, "BERTH_E_UNAUTHORIZED");
    const created = await call(server.app, {
      method: "POST",
      url: "/api/tokens",
      headers: { authorization: "Bearer admin-secret" },
      payload: { role: "agent", name: "prometheus" },
    });
    expect(sample(await scrape(server, created.body.token as string), "berth_agents", { status: "online" })).toBe(0);
  });
});

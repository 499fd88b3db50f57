import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FlowRunView } from "../wire/schema.js";
import { call, expectError } from "./support/api.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

let s: TestServer;
let clock = 0;
beforeEach(async () => {
  clock = 0;
  s = await startTestServer({ now: () => Date.now() + clock, config: { agentLostAfterMs: 60_000 } });
});
afterEach(async () => s.close());

const post = (url: string, payload?: unknown) => call(s.app, { method: "POST", url, ...(payload === undefined ? {} : { payload: payload as object }) });
const get = (url: string) => call(s.app, { method: "GET", url });

async function registerFlow(overrides: Parameters<typeof flowBody>[0] = {}) {
  const res = await post("/api/flows", flowBody(overrides));
  expect(res.status).toBe(201);
  return res.body.flow;
}

async function createRun(body: Record<string, unknown>) {
  const res = await post("/api/flow-runs", body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.flowRun;
}

async function registerAgent(labels: string[] = [], name = uniqueName("agent")) {
  const res = await post("/api/agents", { name, labels });
  expect(res.status).toBe(201);
  return res.body;
}

describe("health and OpenAPI", () => {
  it("answers /health", async () => {
    expect(await get("/health")).toEqual({ status: 200, body: { status: "ok", version: "0.0.0-test", store: "sqlite" } });
  });

  it("serves an OpenAPI document listing every route", async () => {
    const { status, body } = await get("/openapi.json");
    expect(status).toBe(200);
    expect(body.openapi).toMatch(/^3\./);
    expect(body.info.version).toBe("0.0.0-test");
    const routes = Object.entries(body.paths as Record<string, object>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(routes.sort()).toEqual(
      [
        "GET /health",
      "GET /metrics",
        "POST /api/flows",
        "GET /api/flows",
        "GET /api/flows/{id}",
        "PUT /api/build-contexts/{sha256}",
        "GET /api/build-contexts/{sha256}",
        "POST /api/flow-runs",
        "GET /api/flow-runs",
        "GET /api/flow-runs/{id}",
        "POST /api/flow-runs/{id}/state",
        "POST /api/flow-runs/{id}/cancel",
        "POST /api/flow-runs/{id}/heartbeat",
        "GET /api/flow-runs/{id}/states",
        "GET /api/flow-runs/{id}/task-runs",
        "POST /api/flow-runs/{id}/task-runs",
        "GET /api/flow-runs/{id}/logs",
        "POST /api/flow-runs/{id}/logs",
      "POST /api/flow-runs/{id}/phases",
        "POST /api/agents",
      "POST /api/agents/{id}/cancels",
        "GET /api/agents/{id}/kept-images",
        "POST /api/agents/{id}/orphans",
        "GET /api/agents",
        "POST /api/agents/{id}/heartbeat",
        "POST /api/agents/{id}/claim",
        "GET /api/schedules",
        "POST /api/tokens",
        "GET /api/tokens",
        "POST /api/tokens/{id}/revoke",
        "PUT /api/secrets/{name}",
        "GET /api/secrets",
        "DELETE /api/secrets/{name}",
        "POST /api/flow-runs/{id}/secrets",
        "GET /api/schedules/{flowName}",
        "POST /api/schedules/{flowName}/pause",
        "POST /api/schedules/{flowName}/resume",
        "GET /api/concurrency-limits",
        "PUT /api/concurrency-limits/{label}",
        "DELETE /api/concurrency-limits/{label}",
      ].sort(),
    );
    expect(body.paths["/api/flow-runs"].post.requestBody.content["application/json"].schema.properties).toHaveProperty("flowName");
    expect(body.paths["/api/flow-runs/{id}/heartbeat"].post.requestBody.content["application/json"].schema).toMatchObject({ properties: { epoch: {} } });
  });
});

describe("flows", () => {
  it("registers versions, and answers 200 for an unchanged flow", async () => {
    const name = uniqueName();
    const first = await post("/api/flows", flowBody({ name, contentHash: "h1", labels: ["gpu"] }));
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ created: true, flow: { name, version: 1, labels: ["gpu"] } });
    const same = await post("/api/flows", flowBody({ name, contentHash: "h1" }));
    expect(same).toEqual({ status: 200, body: { created: false, flow: first.body.flow } });
    const second = await post("/api/flows", flowBody({ name, contentHash: "h2" }));
    expect(second.status).toBe(201);
    expect(second.body.flow.version).toBe(2);

    const list = await get("/api/flows");
    expect(list.body.flows.map((f: { version: number }) => f.version)).toEqual([2, 1]);
    expect(await get(`/api/flows/${first.body.flow.id}`)).toEqual({ status: 200, body: first.body.flow });
    await expectError(s.app, { method: "GET", url: "/api/flows/nope" }, 404, "BERTH_E_FLOW_NOT_FOUND");
  });
});

describe("flow runs", () => {
  it("creates runs by flow id, by name and by name and version", async () => {
    const name = uniqueName();
    const v1 = await registerFlow({ name, contentHash: "h1", labels: ["gpu"] });
    const v2 = await registerFlow({ name, contentHash: "h2", labels: ["gpu"] });
    const byId = await createRun({ flowId: v1.id });
    expect(byId).toMatchObject({ flowId: v1.id, flowVersion: 1, state: "Scheduled", version: 0, labels: ["gpu"], parameters: {} });
    expect((await createRun({ flowName: name })).flowVersion).toBe(2);
    expect((await createRun({ flowName: name, flowVersion: 1 })).flowId).toBe(v1.id);
    expect((await createRun({ flowId: v2.id, labels: [] })).labels).toEqual([]);
    expect((await createRun({ flowName: name, labels: ["cpu", "arm"] })).labels).toEqual(["arm", "cpu"]);

    await expectError(s.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: "nope" } }, 404, "BERTH_E_FLOW_NOT_FOUND");
    const err = await expectError(s.app, { method: "POST", url: "/api/flow-runs", payload: { flowName: name, flowVersion: 9 } }, 404, "BERTH_E_FLOW_NOT_FOUND");
    expect(err.message).toContain("version 9");
    await expectError(s.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: v1.id, flowName: "other" } }, 400, "BERTH_E_VALIDATION");
    expect((await get("/api/flow-runs")).body.flowRuns).toHaveLength(5);
  });

  it("answers 200 with the same run for a repeated idempotency key", async () => {
    const flow = await registerFlow();
    const first = await post("/api/flow-runs", { flowId: flow.id, idempotencyKey: "k-1" });
    expect(first.status).toBe(201);
    expect(first.body.created).toBe(true);
    const again = await post("/api/flow-runs", { flowId: flow.id, idempotencyKey: "k-1" });
    expect(again.status).toBe(200);
    expect(again.body.created).toBe(false);
    expect(again.body.flowRun.id).toBe(first.body.flowRun.id);
  });

  it("checks parameters against the flow, without filling in defaults", async () => {
    const flow = await registerFlow({
      parameters: [
        { name: "x", required: true },
        { name: "y", required: false, default: 3 },
        { name: "z", required: true, default: "d" },
      ],
    });
    const run = await createRun({ flowId: flow.id, parameters: { x: [1, 2] } });
    expect(run.parameters).toEqual({ x: [1, 2] });
    const err = await expectError(s.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, parameters: { y: 1, nope: 2, typo: 3 } } }, 422, "BERTH_E_PARAMETERS");
    expect(err.details).toEqual({ unknown: ["nope", "typo"], missing: ["x"] });
    expect(err.message).toContain("nope, typo");
    expect(err.message).toContain("missing required parameter x");
    expect((await get("/api/flow-runs")).body.flowRuns).toHaveLength(1);
  });

  it("lists runs newest first with filters", async () => {
    const a = await registerFlow();
    const b = await registerFlow();
    const r1 = await createRun({ flowId: a.id });
    const r2 = await createRun({ flowId: b.id });
    const r3 = await createRun({ flowId: a.id });
    const ids = async (query: string) => ((await get(`/api/flow-runs${query}`)).body.flowRuns as { id: string }[]).map((r) => r.id);
    expect(await ids("")).toEqual([r3.id, r2.id, r1.id]);
    expect(await ids(`?flowId=${a.id}`)).toEqual([r3.id, r1.id]);
    expect(await ids(`?flowName=${encodeURIComponent(b.name)}`)).toEqual([r2.id]);
    expect(await ids("?limit=1")).toEqual([r3.id]);
    await post(`/api/flow-runs/${r2.id}/cancel`);
    expect(await ids("?state=Cancelled")).toEqual([r2.id]);
    for (const bad of ["?limit=0", "?limit=abc", "?limit=1001", "?state=Nope", "?flow=x", "?limit=1.5"]) {
      await expectError(s.app, { method: "GET", url: `/api/flow-runs${bad}` }, 400, "BERTH_E_VALIDATION");
    }
  });

  it("says why a Scheduled run is not picked up", async () => {
    const flow = await registerFlow({ labels: ["gpu"] });
    const run = await createRun({ flowId: flow.id });
    const pickup = async () => FlowRunView.parse((await get(`/api/flow-runs/${run.id}`)).body).pickup;
    expect(await pickup()).toBe("no agent is online");
    await registerAgent(["cpu"], "a1");
    await registerAgent([], "a2");
    expect(await pickup()).toBe("no online agent has labels ⊇ [gpu]; online agents: a1 [cpu], a2 (no labels)");
    expect((await get("/api/flow-runs")).body.flowRuns[0].pickup).toContain("a1 [cpu]");
    await registerAgent(["gpu", "linux"], "a3");
    expect(await pickup()).toBeUndefined();
    clock = 120_000; // every agent has now been silent too long
    expect(await pickup()).toBe("no agent is online");
    await expectError(s.app, { method: "GET", url: "/api/flow-runs/nope" }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
  });

  it("says which limit holds a run and who holds the slots, and when every able agent is busy, draining or unhealthy", async () => {
    const flow = await registerFlow({ labels: ["etl"] });
    const first = await createRun({ flowId: flow.id });
    const second = await createRun({ flowId: flow.id });
    const pickup = async () => FlowRunView.parse((await get(`/api/flow-runs/${second.id}`)).body).pickup;
    const agent = await registerAgent(["etl"], "worker");
    const claim = await post(`/api/agents/${agent.id}/claim`, { waitMs: 0, max: 1 });
    expect(claim.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([first.id]);
    expect(await pickup()).toBe("every agent that could take it is unavailable (busy with other runs: worker)");
    const limit = await call(s.app, { method: "PUT", url: "/api/concurrency-limits/etl", payload: { max: 1 } });
    expect(limit.body).toEqual({ label: "etl", max: 1, holders: [first.id] });
    expect(await pickup()).toBe(`held by the concurrency limit of label etl (1 of 1 slot taken, by ${first.id})`);
    await expectError(s.app, { method: "PUT", url: "/api/concurrency-limits/etl", payload: { max: 0 } }, 400, "BERTH_E_VALIDATION");
    expect((await get("/api/concurrency-limits")).body).toEqual({ limits: [{ label: "etl", max: 1, holders: [first.id] }] });
    expect((await call(s.app, { method: "DELETE", url: "/api/concurrency-limits/etl" })).body).toEqual({ ok: true });
    await expectError(s.app, { method: "DELETE", url: "/api/concurrency-limits/etl" }, 404, "BERTH_E_NOT_FOUND");
    await post(`/api/agents/${agent.id}/heartbeat`, { status: "draining", runs: [{ id: first.id, epoch: 1 }] });
    expect(await pickup()).toBe("every agent that could take it is unavailable (draining, to stop: worker)");
    await registerAgent(["etl"], "spare");
    expect(await pickup()).toBeUndefined(); // spare is between polls: it may take the run at any moment
  });
});

describe("flow-run state", () => {
  async function claimedRun() {
    const flow = await registerFlow();
    const run = await createRun({ flowId: flow.id });
    const agent = await registerAgent();
    const claim = await post(`/api/agents/${agent.id}/claim`, { waitMs: 0 });
    expect(claim.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([run.id]);
    return { run: claim.body.claims[0].flowRun, agent, flow };
  }

  it("walks a run through its states with compare-and-swap", async () => {
    const { run, agent } = await claimedRun();
    expect(run).toMatchObject({ state: "Submitted", version: 1, agentId: agent.id });
    const running = await post(`/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: 1 });
    expect(running.body).toMatchObject({ state: "Running", version: 2 });
    expect(running.body.startedAt).not.toBeNull();
    const again = await post(`/api/flow-runs/${run.id}/state`, { state: "Running", message: "still going", expectedVersion: 2 });
    expect(again.body).toMatchObject({ state: "Running", stateMessage: "still going", version: 3 });

    const stale = await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Success", expectedVersion: 2 } }, 409, "BERTH_E_STALE_VERSION");
    expect(stale.details).toEqual({ expected: 2, actual: 3 });

    const done = await post(`/api/flow-runs/${run.id}/state`, { state: "Success", expectedVersion: 3 });
    expect(done.body).toMatchObject({ state: "Success", version: 4 });
    expect(done.body.endedAt).not.toBeNull();
    const invalid = await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Running", expectedVersion: 4 } }, 409, "BERTH_E_INVALID_TRANSITION");
    expect(invalid.message).toContain("Success");
    expect(invalid.message).toContain("Running");
    expect((await get(`/api/flow-runs/${run.id}`)).body).toMatchObject({ state: "Success", version: 4 });
  });

  it("records the task states and log lines a state write carries, before the state, and none when the write is refused", async () => {
    const { run } = await claimedRun();
    const line = (seq: number, message: string) => ({ at: new Date().toISOString(), level: "info", message, seq });
    const task = (state: string) => ({ taskSlug: "one", taskName: "one", state, attempt: 1 });
    const logs = async () => (await get(`/api/flow-runs/${run.id}/logs?after=0`)).body.logs.map((l: { message: string }) => l.message);
    const taskRuns = async () => (await get(`/api/flow-runs/${run.id}/task-runs`)).body.taskRuns.map((t: { state: string }) => t.state);

    // Refused (a stale version, a stale epoch): nothing of what it carried is recorded.
    await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Running", expectedVersion: 0, epoch: 1, logs: [line(1, "early")], taskRuns: [task("Pending")] } }, 409, "BERTH_E_STALE_VERSION");
    await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Running", expectedVersion: 1, epoch: 0, logs: [line(1, "early")] } }, 409, "BERTH_E_STALE_LEASE");
    expect(await logs()).toEqual([]);
    expect(await taskRuns()).toEqual([]);

    await post(`/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: 1, epoch: 1, logs: [line(1, "starting")], taskRuns: [task("Pending")] });
    expect(await logs()).toEqual(["starting"]);
    expect(await taskRuns()).toEqual(["Pending"]);
    // Sent again (a lost reply): each line is stored once, and the task keeps one state.
    const done = await post(`/api/flow-runs/${run.id}/state`, { state: "Success", expectedVersion: 2, epoch: 1, logs: [line(1, "starting"), line(2, "done")], taskRuns: [task("Success")] });
    expect(done.body).toMatchObject({ state: "Success", version: 3 });
    expect(await logs()).toEqual(["starting", "done"]);
    expect(await taskRuns()).toEqual(["Success"]);
  });

  it("refuses transitions the table does not allow", async () => {
    const flow = await registerFlow();
    const run = await createRun({ flowId: flow.id });
    const err = await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Running", expectedVersion: 0 } }, 409, "BERTH_E_INVALID_TRANSITION");
    expect(err.details).toEqual({ from: "Scheduled", to: "Running" });
    await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Scheduled", expectedVersion: 0 } }, 409, "BERTH_E_INVALID_TRANSITION");
    await expectError(s.app, { method: "POST", url: "/api/flow-runs/nope/state", payload: { state: "Running", expectedVersion: 0 } }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
    for (const payload of [{ state: "Nope", expectedVersion: 0 }, { state: "Running" }, { state: "Running", expectedVersion: -1 }, { state: "Running", expectedVersion: "0" }]) {
      await expectError(s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload }, 400, "BERTH_E_VALIDATION");
    }
    expect((await get(`/api/flow-runs/${run.id}`)).body).toMatchObject({ state: "Scheduled", version: 0 });
  });

  it("cancels: at once before the run starts, through Cancelling after", async () => {
    const flow = await registerFlow();
    const scheduled = await createRun({ flowId: flow.id });
    const cancelled = await post(`/api/flow-runs/${scheduled.id}/cancel`);
    expect(cancelled.body).toMatchObject({ state: "Cancelled", stateMessage: "cancelled by user" });
    const final = await expectError(s.app, { method: "POST", url: `/api/flow-runs/${scheduled.id}/cancel` }, 409, "BERTH_E_INVALID_TRANSITION");
    expect(final.message).toContain("Cancelled");

    const { run, agent } = await claimedRun();
    await post(`/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: 1 });
    const cancelling = await post(`/api/flow-runs/${run.id}/cancel`);
    expect(cancelling.body).toMatchObject({ state: "Cancelling", version: 3 });
    expect((await post(`/api/flow-runs/${run.id}/cancel`)).body).toMatchObject({ state: "Cancelling", version: 3 });
    expect((await post(`/api/flow-runs/${run.id}/heartbeat`)).body).toEqual({ state: "Cancelling", epoch: 1 });
    expect((await post(`/api/agents/${agent.id}/heartbeat`, {})).body).toEqual({ cancelRunIds: [run.id], lostRunIds: [] });
    await post(`/api/flow-runs/${run.id}/state`, { state: "Cancelled", expectedVersion: 3 });
    expect((await post(`/api/agents/${agent.id}/heartbeat`, {})).body).toEqual({ cancelRunIds: [], lostRunIds: [] });
    await expectError(s.app, { method: "POST", url: "/api/flow-runs/nope/cancel" }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
  });

  it("cancels a Submitted run at once", async () => {
    const { run } = await claimedRun();
    expect((await post(`/api/flow-runs/${run.id}/cancel`)).body).toMatchObject({ state: "Cancelled", stateMessage: "cancelled by user" });
  });

  it("records run heartbeats and answers with the state", async () => {
    const flow = await registerFlow();
    const run = await createRun({ flowId: flow.id });
    expect(await post(`/api/flow-runs/${run.id}/heartbeat`)).toEqual({ status: 200, body: { state: "Scheduled", epoch: 0 } });
    expect(await post(`/api/flow-runs/${run.id}/heartbeat`, {})).toEqual({ status: 200, body: { state: "Scheduled", epoch: 0 } });
    expect((await get(`/api/flow-runs/${run.id}`)).body.lastHeartbeatAt).toEqual(expect.any(String));
    await expectError(s.app, { method: "POST", url: "/api/flow-runs/nope/heartbeat" }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
  });
});

describe("task runs and logs", () => {
  it("upserts and lists task runs", async () => {
    const flow = await registerFlow();
    const run = await createRun({ flowId: flow.id });
    const url = `/api/flow-runs/${run.id}/task-runs`;
    expect(await post(url, { taskRuns: [{ taskSlug: "a", taskName: "A", state: "Running", attempt: 1 }] })).toEqual({ status: 200, body: { ok: true } });
    await post(url, { taskRuns: [{ taskSlug: "a", taskName: "A", state: "Success", attempt: 1 }, { taskSlug: "b", taskName: "B", state: "Pending", attempt: 1 }] });
    const { body } = await get(url);
    expect(body.taskRuns.map((t: { taskSlug: string; state: string }) => `${t.taskSlug}=${t.state}`).sort()).toEqual(["a=Success", "b=Pending"]);
    await expectError(s.app, { method: "GET", url: "/api/flow-runs/nope/task-runs" }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
    await expectError(s.app, { method: "GET", url: "/api/flow-runs/nope/states" }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
    await post(`/api/flow-runs/${run.id}/cancel`, {});
    const history = await get(`/api/flow-runs/${run.id}/states`);
    expect(history.status).toBe(200);
    expect(history.body.states.map((h: { state: string }) => h.state)).toEqual(["Scheduled", "Cancelled"]);
    await expectError(s.app, { method: "POST", url: "/api/flow-runs/nope/task-runs", payload: { taskRuns: [{ taskSlug: "a", taskName: "A", state: "Running", attempt: 1 }] } }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
    await expectError(s.app, { method: "POST", url, payload: { taskRuns: [] } }, 400, "BERTH_E_VALIDATION");
    await expectError(s.app, { method: "POST", url, payload: { taskRuns: [{ taskSlug: "a", taskName: "A", state: "Exploded", attempt: 1 }] } }, 400, "BERTH_E_VALIDATION");
  });

  it("appends and pages logs", async () => {
    const flow = await registerFlow();
    const run = await createRun({ flowId: flow.id });
    const url = `/api/flow-runs/${run.id}/logs`;
    const at = new Date().toISOString();
    expect(await post(url, { logs: [{ at, level: "info", message: "one" }, { at, level: "warn", message: "two", task: "t" }] })).toEqual({ status: 200, body: { ok: true } });
    await post(url, { logs: [{ at, level: "error", message: "three" }] });
    const all = (await get(url)).body;
    expect(all.logs.map((l: { message: string }) => l.message)).toEqual(["one", "two", "three"]);
    expect(all.logs[1]).toMatchObject({ level: "warn", task: "t" });
    expect(all.next).toBe(all.logs[2].id);
    const page = (await get(`${url}?after=${all.logs[0].id}&limit=1`)).body;
    expect(page.logs.map((l: { message: string }) => l.message)).toEqual(["two"]);
    expect(page.next).toBe(all.logs[1].id);
    expect((await get(`${url}?after=${all.next}`)).body).toEqual({ logs: [], next: all.next });
    for (const bad of ["?after=-1", "?limit=0", "?limit=10001", "?waitMs=60001", "?after=x", "?since=1"]) {
      await expectError(s.app, { method: "GET", url: `${url}${bad}` }, 400, "BERTH_E_VALIDATION");
    }
    await expectError(s.app, { method: "GET", url: "/api/flow-runs/nope/logs" }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
    await expectError(s.app, { method: "POST", url: "/api/flow-runs/nope/logs", payload: { logs: [{ at, level: "info", message: "x" }] } }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
    await expectError(s.app, { method: "POST", url, payload: { logs: [{ at, level: "loud", message: "x" }] } }, 400, "BERTH_E_VALIDATION");
  });
});

describe("agents", () => {
  it("registers, lists, heartbeats and goes lost when silent", async () => {
    const agent = await registerAgent(["b", "a"], "a1");
    expect(agent).toMatchObject({ name: "a1", labels: ["a", "b"], concurrency: 1, status: "online" });
    expect((await get("/api/agents")).body.agents.map((a: { id: string; status: string }) => [a.id, a.status])).toEqual([[agent.id, "online"]]);
    clock = 61_000;
    expect((await get("/api/agents")).body.agents[0].status).toBe("lost");
    expect(await post(`/api/agents/${agent.id}/heartbeat`, { status: "unhealthy" })).toEqual({ status: 200, body: { cancelRunIds: [], lostRunIds: [] } });
    expect((await get("/api/agents")).body.agents[0].status).toBe("unhealthy");
    await post(`/api/agents/${agent.id}/heartbeat`, { status: "stopped" });
    clock = 240_000;
    expect((await get("/api/agents")).body.agents[0].status).toBe("stopped");
    // A claim is proof of life: the agent is back, heard again.
    const stopped = (await get("/api/agents")).body.agents[0].lastHeartbeatAt as string;
    expect((await post(`/api/agents/${agent.id}/claim`, { waitMs: 0 })).body.claims).toEqual([]);
    const back = (await get("/api/agents")).body.agents[0];
    expect(back.status).toBe("online");
    expect(Date.parse(back.lastHeartbeatAt)).toBeGreaterThan(Date.parse(stopped));
    await expectError(s.app, { method: "POST", url: "/api/agents/nope/heartbeat", payload: {} }, 404, "BERTH_E_AGENT_NOT_FOUND");
    await expectError(s.app, { method: "POST", url: "/api/agents", payload: { name: "x", labels: ["has space"] } }, 400, "BERTH_E_VALIDATION");
    await expectError(s.app, { method: "POST", url: `/api/agents/${agent.id}/heartbeat`, payload: { status: "lost" } }, 400, "BERTH_E_VALIDATION");
  });

  it("claims matching runs oldest first, with their flows, and counts as a heartbeat", async () => {
    const flow = await registerFlow({ labels: ["gpu"] });
    const r1 = await createRun({ flowId: flow.id });
    const r2 = await createRun({ flowId: flow.id });
    await createRun({ flowId: flow.id, labels: ["tpu"] });
    const plain = await registerAgent([]);
    expect((await post(`/api/agents/${plain.id}/claim`, { waitMs: 0 })).body).toEqual({ claims: [], startTimeoutMs: 60_000 });
    const gpu = await registerAgent(["gpu", "linux"]);
    clock = 61_000; // plain has been silent since; gpu's claim is its heartbeat
    const claim = await post(`/api/agents/${gpu.id}/claim`, { max: 5, waitMs: 0 });
    expect(claim.body.claims.map((c: { flowRun: { id: string } }) => c.flowRun.id)).toEqual([r1.id, r2.id]);
    expect(claim.body.claims[0].flow).toEqual(flow);
    expect(claim.body.claims[0].flowRun).toMatchObject({ state: "Submitted", agentId: gpu.id, version: 1 });
    const agents = (await get("/api/agents")).body.agents as { id: string; status: string }[];
    expect(agents.find((a) => a.id === gpu.id)?.status).toBe("online");
    expect(agents.find((a) => a.id === plain.id)?.status).toBe("lost");
    await expectError(s.app, { method: "POST", url: "/api/agents/nope/claim", payload: { waitMs: 0 } }, 404, "BERTH_E_AGENT_NOT_FOUND");
    for (const payload of [{ max: 0 }, { waitMs: 60_001 }, { waitMs: "soon" }, { max: 1, extra: true }]) {
      await expectError(s.app, { method: "POST", url: `/api/agents/${gpu.id}/claim`, payload }, 400, "BERTH_E_VALIDATION");
    }
  });
});

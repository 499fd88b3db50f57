/** Leases and fencing over HTTP: epochs on every write of a run's attempt, lease renewal, agents known by name. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RUNS_TOPIC } from "../server/notifier.js";
import { call, expectError } from "./support/api.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";
import { until } from "./support/wait.js";
import { openSqliteStore } from "../store/sqlite.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

let s: TestServer;
beforeEach(async () => {
  s = await startTestServer({ config: { reaperIntervalMs: 0 } });
});
afterEach(async () => s.close());

const post = (url: string, payload?: unknown) => call(s.app, { method: "POST", url, ...(payload === undefined ? {} : { payload: payload as object }) });
const get = (url: string) => call(s.app, { method: "GET", url });
const at = () => new Date().toISOString();

async function claimedRun(flowOverrides: Parameters<typeof flowBody>[0] = {}) {
  const flow = (await post("/api/flows", flowBody(flowOverrides))).body.flow;
  const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
  const agent = (await post("/api/agents", { name: uniqueName("agent") })).body;
  const claimed = (await post(`/api/agents/${agent.id}/claim`, { waitMs: 0 })).body.claims[0].flowRun;
  expect(claimed.id).toBe(run.id);
  return { flow, run: claimed, agent };
}

describe("flows", () => {
  it("store and return a recovery policy and a run timeout, with defaults", async () => {
    const plain = (await post("/api/flows", flowBody())).body.flow;
    expect(plain).toMatchObject({ recovery: { onLost: "fail", maxAttempts: 3 }, runTimeoutMs: null });
    const custom = (await post("/api/flows", flowBody({ recovery: { onLost: "reschedule", maxAttempts: 5 }, runTimeoutMs: 60_000 }))).body.flow;
    expect((await get(`/api/flows/${custom.id}`)).body).toMatchObject({ recovery: { onLost: "reschedule", maxAttempts: 5 }, runTimeoutMs: 60_000 });
    const partial = (await post("/api/flows", { ...flowBody(), recovery: { onLost: "reschedule" } })).body.flow;
    expect(partial.recovery).toEqual({ onLost: "reschedule", maxAttempts: 3 });
    for (const recovery of [{ onLost: "retry" }, { maxAttempts: 0 }, { maxAttempts: 101 }, { maxAttempts: 2.5 }]) {
      await expectError(s.app, { method: "POST", url: "/api/flows", payload: { ...flowBody(), recovery } }, 400, "BERTH_E_VALIDATION");
    }
    await expectError(s.app, { method: "POST", url: "/api/flows", payload: { ...flowBody(), runTimeoutMs: 0 } }, 400, "BERTH_E_VALIDATION");
  });
});

describe("fencing", () => {
  it("claims give a new epoch and a lease", async () => {
    const { run } = await claimedRun();
    expect(run).toMatchObject({ state: "Submitted", epoch: 1, leaseExpiresAt: expect.any(String) });
    expect(Date.parse(run.leaseExpiresAt) - Date.now()).toBeGreaterThan(20_000);
  });

  it("refuses every write of a stale epoch with 409 BERTH_E_STALE_LEASE, writing nothing", async () => {
    const { run } = await claimedRun();
    const url = `/api/flow-runs/${run.id}`;
    const stale = [
      { method: "POST" as const, url: `${url}/state`, payload: { state: "Running", expectedVersion: run.version, epoch: 0 } },
      // Epoch before version: a superseded attempt must stop rather than re-read and retry.
      { method: "POST" as const, url: `${url}/state`, payload: { state: "Running", expectedVersion: 99, epoch: 2 } },
      { method: "POST" as const, url: `${url}/task-runs`, payload: { taskRuns: [{ taskSlug: "a", taskName: "A", state: "Running", attempt: 1 }], epoch: 0 } },
      { method: "POST" as const, url: `${url}/logs`, payload: { logs: [{ at: at(), level: "info", message: "late" }], epoch: 0 } },
      { method: "POST" as const, url: `${url}/heartbeat`, payload: { epoch: 0 } },
    ];
    for (const request of stale) {
      const err = await expectError(s.app, request, 409, "BERTH_E_STALE_LEASE");
      expect(err.details).toEqual({ expected: 1, actual: request.payload.epoch });
      expect(err.message).toContain("another attempt owns this run");
    }
    expect((await get(url)).body).toMatchObject({ state: "Submitted", version: run.version, lastHeartbeatAt: null });
    expect((await get(`${url}/states`)).body.states).toHaveLength(2);
    expect((await get(`${url}/task-runs`)).body.taskRuns).toEqual([]);
    expect((await get(`${url}/logs`)).body.logs).toEqual([]);

    await expectError(s.app, { method: "POST", url: `${url}/state`, payload: { state: "Running", expectedVersion: 99, epoch: 1 } }, 409, "BERTH_E_STALE_VERSION");
    expect((await post(`${url}/heartbeat`, { epoch: 1 })).body).toEqual({ state: "Submitted", epoch: 1 });
    expect((await post(`${url}/state`, { state: "Running", expectedVersion: run.version, epoch: 1 })).body).toMatchObject({ state: "Running" });
    expect((await post(`${url}/logs`, { logs: [{ at: at(), level: "info", message: "mine" }], epoch: 1 })).status).toBe(200);
    await expectError(s.app, { method: "POST", url: `${url}/heartbeat`, payload: { epoch: -1 } }, 400, "BERTH_E_VALIDATION");
    await expectError(s.app, { method: "POST", url: `${url}/heartbeat`, payload: { epoch: 1, extra: true } }, 400, "BERTH_E_VALIDATION");
    await expectError(s.app, { method: "POST", url: "/api/flow-runs/nope/heartbeat", payload: { epoch: 1 } }, 404, "BERTH_E_FLOW_RUN_NOT_FOUND");
  });

  it("does not fence writers that give no epoch (users)", async () => {
    const { run } = await claimedRun();
    expect((await post(`/api/flow-runs/${run.id}/cancel`)).body).toMatchObject({ state: "Cancelled", epoch: 1, leaseExpiresAt: null });
  });
});

describe("agent heartbeats", () => {
  it("renew the leases of the runs the agent lists, and name the ones it lost", async () => {
    const { run, agent } = await claimedRun();
    const other = await claimedRun();
    const reply = await post(`/api/agents/${agent.id}/heartbeat`, {
      runs: [
        { id: run.id, epoch: 1 },
        { id: other.run.id, epoch: 1 },
        { id: "nope", epoch: 3 },
      ],
    });
    expect(reply.body).toEqual({ cancelRunIds: [], lostRunIds: [other.run.id, "nope"] });
    const renewed = (await get(`/api/flow-runs/${run.id}`)).body.leaseExpiresAt;
    expect(Date.parse(renewed)).toBeGreaterThanOrEqual(Date.parse(run.leaseExpiresAt));
    expect((await get(`/api/flow-runs/${other.run.id}`)).body.leaseExpiresAt).toBe(other.run.leaseExpiresAt);
    await expectError(s.app, { method: "POST", url: `/api/agents/${agent.id}/heartbeat`, payload: { runs: [{ id: run.id }] } }, 400, "BERTH_E_VALIDATION");
  });
});

describe("agent registration", () => {
  it("gives a known name its agent back with 200, updated, so a restarted agent keeps its id", async () => {
    const name = uniqueName("agent");
    const first = await post("/api/agents", { name, labels: ["gpu"] });
    expect(first.status).toBe(201);
    await post(`/api/agents/${first.body.id}/heartbeat`, { status: "stopped" });
    const again = await post("/api/agents", { name, labels: ["cpu"], concurrency: 4 });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: first.body.id, labels: ["cpu"], concurrency: 4, status: "online" });
    expect((await get("/api/agents")).body.agents).toHaveLength(1);
    expect((await post("/api/agents", { name: uniqueName("agent") })).status).toBe(201);
  });

  it("warns when a name is registered again while an agent of that name is waiting in a claim", async () => {
    const name = uniqueName("agent");
    const agent = (await post("/api/agents", { name })).body;
    const claim = post(`/api/agents/${agent.id}/claim`, { waitMs: 200 });
    await until("a claim to park", () => s.notifier.waiting(RUNS_TOPIC) === 1, { timeoutMs: 5_000 });
    expect((await post("/api/agents", { name })).status).toBe(200);
    expect(s.lines.find((l) => l.level === 40 && String(l.msg).includes(`agent name ${name} is in use`))).toMatchObject({ agentId: agent.id });
    await claim;
  });
});

describe("claims and the agent's row", () => {
  it("a claim writes the agent's heartbeat only when it is old or its status changes: one commit per claim otherwise", async () => {
    let clock = Date.parse("2030-01-01T00:00:00Z");
    const store = await openSqliteStore(":memory:", { now: () => new Date(clock) });
    const writes: string[] = [];
    const heartbeat = store.heartbeatAgent.bind(store);
    store.heartbeatAgent = async (id, status) => {
      writes.push(status);
      return heartbeat(id, status);
    };
    await using t = await startTestServer({ store, now: () => clock, config: { reaperIntervalMs: 0, agentLostAfterMs: 60_000 } });
    const agent = JSON.parse((await t.app.inject({ method: "POST", url: "/api/agents", payload: { name: "claimer" } })).body);
    const claim = async () => expect((await t.app.inject({ method: "POST", url: `/api/agents/${agent.id}/claim`, payload: { waitMs: 0 } })).statusCode).toBe(200);
    await claim();
    clock += 5_000;
    await claim();
    expect(writes).toEqual([]);
    // Past a quarter of agentLostAfter, the claim records that the agent is alive.
    clock += 11_000;
    await claim();
    expect(writes).toEqual(["online"]);
    expect(JSON.parse((await t.app.inject({ method: "GET", url: "/api/agents" })).body).agents[0].lastHeartbeatAt).toBe(new Date(clock).toISOString());
    // An agent that said it stopped and claims again is back, however recent its last word.
    await t.app.inject({ method: "POST", url: `/api/agents/${agent.id}/heartbeat`, payload: { status: "stopped" } });
    await claim();
    expect(writes).toEqual(["online", "stopped", "online"]);
  });
});

/**
 * The reaper, on an injected clock: every pass is `app.reaper.reapOnce()` at a time the test chose, and the
 * interval timer is off (reaperIntervalMs 0) except in the one test that checks it runs on its own.
 * Defaults: lease 30s, start timeout 60s, run heartbeat timeout 45s, cancel timeout 30s, agent lost after 60s.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { FlowRun, RecoveryPolicy } from "../wire/schema.js";
import { RUNS_TOPIC } from "../server/notifier.js";
import type { StateStore } from "../store/port.js";
import { openSqliteStore } from "../store/sqlite.js";
import { call, expectError } from "./support/api.js";
import { flowBody, flowInput, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";
import { until } from "./support/wait.js";

type TestServer = Awaited<ReturnType<typeof startTestServer>>;

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();
let clock = T0;
const now = () => clock;
const servers: TestServer[] = [];

async function harness(options: { config?: Record<string, number>; store?: StateStore } = {}) {
  const s = await startTestServer({ now, config: { reaperIntervalMs: 0, ...options.config }, ...(options.store ? { store: options.store } : {}) });
  servers.push(s);
  const post = (url: string, payload?: unknown) => call(s.app, { method: "POST", url, ...(payload === undefined ? {} : { payload: payload as object }) });
  const get = (url: string) => call(s.app, { method: "GET", url });
  const reap = (at = clock) => {
    clock = at;
    return s.app.reaper.reapOnce();
  };
  const agent = async (name = uniqueName("agent")) => (await post("/api/agents", { name })).body as { id: string; name: string };
  /** A run of a flow with `recovery`, claimed by a new agent at the current time. */
  const claimed = async (recovery: Partial<RecoveryPolicy> = {}) => {
    const flow = (await post("/api/flows", flowBody({ recovery: { onLost: "fail", maxAttempts: 3, ...recovery } }))).body.flow;
    const run = (await post("/api/flow-runs", { flowId: flow.id })).body.flowRun;
    const holder = await agent();
    return { flow, agent: holder, run: await claim(holder.id, run.id) };
  };
  const claim = async (agentId: string, runId: string): Promise<FlowRun> => {
    const got = (await post(`/api/agents/${agentId}/claim`, { waitMs: 0 })).body.claims[0]?.flowRun;
    expect(got?.id).toBe(runId);
    return got;
  };
  const running = async (run: FlowRun) => (await post(`/api/flow-runs/${run.id}/state`, { state: "Running", expectedVersion: run.version, epoch: run.epoch })).body as FlowRun;
  const fetch = async (id: string) => (await get(`/api/flow-runs/${id}`)).body;
  return { s, post, get, reap, agent, claimed, claim, running, fetch };
}

const nothing = { rescheduled: [], failed: [], cancelled: [], buildContextsRemoved: [], logsRemoved: 0 };

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  clock = T0;
});

describe("rule 1: a claimed run that does not start", () => {
  it("goes back to Scheduled when its agent stops renewing the lease, waking parked claims", async () => {
    const h = await harness();
    const { run, agent } = await h.claimed();
    expect(run.leaseExpiresAt).toBe(iso(T0 + 30_000));
    expect(await h.reap(T0 + 29_000)).toEqual(nothing);
    await h.post(`/api/agents/${agent.id}/heartbeat`, { runs: [{ id: run.id, epoch: 1 }] }); // renewed until 59s
    expect(await h.reap(T0 + 50_000)).toEqual(nothing);

    const other = await h.agent();
    const parked = h.post(`/api/agents/${other.id}/claim`, { waitMs: 30_000 });
    await until("a claim to park", () => h.s.notifier.waiting(RUNS_TOPIC) === 1, { timeoutMs: 5_000 });

    expect(await h.reap(T0 + 60_000)).toEqual({ ...nothing, rescheduled: [run.id] });
    const message =
      `flow run ${run.id} (attempt 1) was not started: agent ${agent.name} (id ${agent.id}, last heard from at ${iso(T0 + 29_000)}, 31s ago) ` +
      "stopped renewing its lease; rescheduled (2 of 3 attempts left)";
    const history = (await h.get(`/api/flow-runs/${run.id}/states`)).body.states;
    expect(history.slice(-2)).toMatchObject([
      { state: "Scheduled", message, agentId: null },
      { state: "Submitted", agentId: other.id },
    ]);
    expect(h.s.lines.find((l) => l.flowRunId === run.id && l.agentId === agent.id && l.msg === message)).toMatchObject({ level: 40 });

    // The parked claim took it at once as the next attempt; the superseded one can write nothing more, and its agent is told.
    const retaken = (await parked).body.claims[0]?.flowRun;
    expect(retaken).toMatchObject({ id: run.id, epoch: 2, agentId: other.id, state: "Submitted" });
    await expectError(h.s.app, { method: "POST", url: `/api/flow-runs/${run.id}/state`, payload: { state: "Running", expectedVersion: retaken.version, epoch: 1 } }, 409, "BERTH_E_STALE_LEASE");
    expect((await h.post(`/api/agents/${agent.id}/heartbeat`, { runs: [{ id: run.id, epoch: 1 }] })).body.lostRunIds).toEqual([run.id]);
  });

  it("goes back to Scheduled when claimed more than startTimeoutMs ago, even with its lease renewed", async () => {
    const h = await harness();
    const { run, agent } = await h.claimed();
    for (const t of [20_000, 40_000, 60_000]) {
      clock = T0 + t;
      await h.post(`/api/agents/${agent.id}/heartbeat`, { runs: [{ id: run.id, epoch: 1 }] });
      expect(await h.reap()).toEqual(nothing);
    }
    expect(await h.reap(T0 + 61_000)).toEqual({ ...nothing, rescheduled: [run.id] });
    expect((await h.fetch(run.id)).stateMessage).toBe(
      `flow run ${run.id} (attempt 1) did not start within 60s of its claim or last progress report at ${iso(T0)} by agent ${agent.name} ` +
        `(id ${agent.id}, last heard from at ${iso(T0 + 60_000)}, 1s ago); rescheduled (2 of 3 attempts left)`,
    );
  });

  it("is Failed once the flow's maxAttempts claims were made", async () => {
    const h = await harness();
    const { run } = await h.claimed({ maxAttempts: 2 });
    expect(await h.reap(T0 + 31_000)).toEqual({ ...nothing, rescheduled: [run.id] });
    const waiting = await h.fetch(run.id);
    expect(waiting).toMatchObject({ state: "Scheduled", agentId: null, epoch: 1, leaseExpiresAt: null });
    expect(waiting.pickup).toBe(`rescheduled after attempt 1: ${waiting.stateMessage}`);
    const second = await h.claim((await h.agent()).id, run.id);
    expect(second.epoch).toBe(2);
    expect(await h.reap(T0 + 62_000)).toEqual({ ...nothing, failed: [run.id] });
    const failed = await h.fetch(run.id);
    expect(failed).toMatchObject({ state: "Failed", epoch: 2, leaseExpiresAt: null, endedAt: iso(T0 + 62_000) });
    expect(failed.stateMessage).toMatch(/stopped renewing its lease; gave up after 2 attempts$/);
    const states = (await h.get(`/api/flow-runs/${run.id}/states`)).body.states.map((x: { state: string }) => x.state);
    expect(states).toEqual(["Scheduled", "Submitted", "Scheduled", "Submitted", "Failed"]);
  });
});

describe("rule 2: a Running run whose container went silent", () => {
  it("follows the flow's recovery.onLost: reschedule while attempts remain, else fail", async () => {
    const h = await harness();
    const rescheduled = await h.claimed({ onLost: "reschedule" });
    const exhausted = await h.claimed({ onLost: "reschedule", maxAttempts: 1 });
    const failing = await h.claimed({ onLost: "fail" });
    clock = T0 + 5_000;
    for (const c of [rescheduled, exhausted, failing]) await h.running(c.run);
    clock = T0 + 10_000;
    await h.post(`/api/flow-runs/${rescheduled.run.id}/heartbeat`, { epoch: 1 });
    expect(await h.reap(T0 + 50_000)).toEqual(nothing);

    // Rescheduled's container was heard from at 10s; the others never, so they count from their start at 5s.
    expect(await h.reap(T0 + 51_000)).toEqual({ ...nothing, failed: [exhausted.run.id, failing.run.id] });
    const failed = await h.fetch(failing.run.id);
    expect(failed.stateMessage).toBe(
      `flow run ${failing.run.id} (attempt 1) is lost: its container has not been heard from since the run started at ${iso(T0 + 5_000)} ` +
        `(46s ago), on agent ${failing.agent.name} (id ${failing.agent.id}, last heard from at ${iso(T0)}, 51s ago); ` +
        `failed, as the flow's recovery.onLost is "fail"`,
    );
    expect((await h.fetch(exhausted.run.id)).stateMessage).toMatch(/gave up after 1 attempt$/);

    expect(await h.reap(T0 + 56_000)).toEqual({ ...nothing, rescheduled: [rescheduled.run.id] });
    const back = await h.fetch(rescheduled.run.id);
    expect(back).toMatchObject({ state: "Scheduled", agentId: null, startedAt: null, lastHeartbeatAt: null });
    expect(back.stateMessage).toContain(`its container was last heard from at ${iso(T0 + 10_000)} (46s ago)`);
    // The next attempt is judged by its own heartbeats, not the last one's.
    const next = await h.running(await h.claim((await h.agent()).id, rescheduled.run.id));
    expect(next).toMatchObject({ epoch: 2, startedAt: iso(T0 + 56_000) });
    expect(await h.reap(T0 + 100_000)).toEqual(nothing);
  });

  it("leaves a run whose container keeps reporting alone, even with its agent long gone", async () => {
    const h = await harness();
    const { run, agent } = await h.claimed({ onLost: "reschedule" });
    await h.running(run);
    for (let t = 30_000; t <= 600_000; t += 30_000) {
      clock = T0 + t;
      await h.post(`/api/flow-runs/${run.id}/heartbeat`, { epoch: 1 });
      expect(await h.reap()).toEqual(nothing);
    }
    expect((await h.get("/api/agents")).body.agents[0].status).toBe("lost");
    // The agent comes back under its name: same id, and the run is still its own.
    const back = (await h.post("/api/agents", { name: agent.name })).body;
    expect(back.id).toBe(agent.id);
    expect((await h.post(`/api/agents/${agent.id}/heartbeat`, { runs: [{ id: run.id, epoch: 1 }] })).body.lostRunIds).toEqual([]);
    expect(await h.fetch(run.id)).toMatchObject({ state: "Running", epoch: 1, agentId: agent.id, leaseExpiresAt: iso(clock + 30_000) });
  });
});

describe("rule 3: a cancellation nobody confirms", () => {
  it("is recorded Cancelled once the agent is lost, saying the container may still run", async () => {
    const h = await harness();
    const { run, agent } = await h.claimed();
    await h.running(run);
    clock = T0 + 10_000;
    expect((await h.post(`/api/flow-runs/${run.id}/cancel`)).body.state).toBe("Cancelling");
    clock = T0 + 50_000;
    await h.post(`/api/agents/${agent.id}/heartbeat`, {}); // alive, just slow to confirm
    await h.post(`/api/flow-runs/${run.id}/heartbeat`, { epoch: 1 });
    expect(await h.reap(T0 + 100_000)).toEqual(nothing);
    expect(await h.reap(T0 + 111_000)).toEqual({ ...nothing, cancelled: [run.id] });
    const cancelled = await h.fetch(run.id);
    expect(cancelled).toMatchObject({ state: "Cancelled", endedAt: iso(T0 + 111_000) });
    expect(cancelled.stateMessage).toBe(
      `flow run ${run.id} cancelled without confirmation from agent ${agent.name} (id ${agent.id}, last heard from at ${iso(T0 + 50_000)}, 61s ago): ` +
        "its container may still be running",
    );
  });
});

describe("the start grace", () => {
  it("counts no silence from before the server started", async () => {
    // What a server that was down for ten minutes finds: every run silent since long before it started.
    const down = T0 - 600_000;
    clock = down;
    const store = await openSqliteStore(":memory:", { now: () => new Date(clock) });
    const { flow } = await store.registerFlow(flowInput());
    const { agent } = await store.registerAgent({ name: "a1", labels: [], concurrency: 5 });
    for (let i = 0; i < 4; i++) await store.createFlowRun({ flow, parameters: {}, labels: [] });
    const [submitted, silent, resumes, cancelling] = (await store.claimFlowRuns(agent.id, [], 4, 30_000)) as [FlowRun, FlowRun, FlowRun, FlowRun];
    for (const r of [silent, resumes, cancelling]) await store.setFlowRunState(r.id, { state: "Running", expectedVersion: r.version });
    await store.setFlowRunState(cancelling.id, { state: "Cancelling", expectedVersion: cancelling.version + 1 });

    clock = T0;
    const h = await harness({ store });
    expect(await h.reap(T0 + 30_000)).toEqual(nothing);
    expect(await h.reap(T0 + 31_000)).toEqual({ ...nothing, rescheduled: [submitted.id] });
    clock = T0 + 40_000;
    await h.post(`/api/flow-runs/${resumes.id}/heartbeat`, { epoch: 1 }); // its container reaches the server again
    expect(await h.reap(T0 + 45_000)).toEqual(nothing);
    expect(await h.reap(T0 + 46_000)).toEqual({ ...nothing, failed: [silent.id] });
    // The agent, too, is only lost one agentLostAfterMs after the start.
    expect(await h.reap(T0 + 60_000)).toEqual(nothing);
    expect(await h.reap(T0 + 61_000)).toEqual({ ...nothing, cancelled: [cancelling.id] });
    expect((await h.fetch(cancelling.id)).stateMessage).toContain(`last heard from at ${iso(down)}, 11m ago`);
    expect((await h.fetch(resumes.id)).state).toBe("Running");
  });
});

describe("the outage grace", () => {
  it("counts no silence from while the store was failing: after a failed pass, as after a start", async () => {
    clock = T0;
    const real = await openSqliteStore(":memory:", { now: () => new Date(clock) });
    let broken = false;
    // Every call fails while the database is down, whoever makes it.
    const flaky = new Proxy(real, {
      get(target, key, receiver) {
        const value: unknown = Reflect.get(target, key, receiver);
        if (typeof value !== "function" || key === "close") return value;
        return (...args: unknown[]) => (broken ? Promise.reject(new Error("the database is restarting")) : (value as (...a: unknown[]) => unknown).apply(target, args));
      },
    });
    const h = await harness({ store: flaky });
    const { run, agent } = await h.claimed({ onLost: "reschedule" });
    const started = await h.running(run);
    clock = T0 + 10_000;
    await h.post(`/api/flow-runs/${run.id}/heartbeat`, { epoch: 1 });
    await h.post(`/api/agents/${agent.id}/heartbeat`, { runs: [{ id: run.id, epoch: 1 }] });
    // The store fails from 31 s to 100 s: nobody's heartbeat could be recorded meanwhile.
    broken = true;
    await expect(h.reap(T0 + 31_000)).rejects.toThrow("restarting");
    await expect(h.reap(T0 + 90_000)).rejects.toThrow("restarting");
    broken = false;
    // Back at 100 s: the container was last heard 90 s ago, past the 45 s timeout, yet it could not have been heard.
    expect(await h.reap(T0 + 100_000)).toEqual(nothing);
    expect(await h.reap(T0 + 140_000)).toEqual(nothing);
    // Heard again after the outage, it stays; then silent for 45 s after the return, it is lost.
    await h.post(`/api/flow-runs/${run.id}/heartbeat`, { epoch: 1 });
    await h.post(`/api/agents/${agent.id}/heartbeat`, { runs: [{ id: run.id, epoch: 1 }] });
    expect(await h.fetch(run.id)).toMatchObject({ state: "Running", epoch: started.epoch });
    expect(await h.reap(T0 + 186_000)).toEqual({ ...nothing, rescheduled: [run.id] });
  });
});

describe("the reaper's writes", () => {
  it("skip a run that changed meanwhile (compare-and-swap)", async () => {
    clock = T0;
    const real = await openSqliteStore(":memory:", { now: () => new Date(clock) });
    let started: (() => Promise<unknown>) | undefined;
    // The run's container reports Running between the reaper's scan and its write.
    const racing: StateStore = Object.assign(Object.create(real) as StateStore, {
      description: real.description,
      listExpiredLeases: async (...args: Parameters<StateStore["listExpiredLeases"]>) => {
        const found = await real.listExpiredLeases(...args);
        await started?.();
        return found;
      },
    });
    const h = await harness({ store: racing });
    const { run } = await h.claimed();
    started = () => h.running(run);
    expect(await h.reap(T0 + 31_000)).toEqual(nothing);
    expect(await h.fetch(run.id)).toMatchObject({ state: "Running", epoch: 1 });
    expect(h.s.lines.some((l) => l.flowRunId === run.id && String(l.msg).includes("changed meanwhile"))).toBe(true);
  });

  it("happen on their own every reaperIntervalMs, until the server closes", async () => {
    const h = await harness({ config: { reaperIntervalMs: 10 } });
    const { run } = await h.claimed();
    clock = T0 + 31_000;
    await until("the reaper to reschedule the run", async () => (await h.fetch(run.id)).state === "Scheduled", { timeoutMs: 5_000 });
    const started = Date.now();
    await h.s.close();
    servers.splice(servers.indexOf(h.s), 1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("log a failed pass and carry on", async () => {
    const real = await openSqliteStore(":memory:", { now: () => new Date(clock) });
    let broken = true;
    const flaky: StateStore = Object.assign(Object.create(real) as StateStore, {
      description: real.description,
      listSilentRunningRuns: async (...args: Parameters<StateStore["listSilentRunningRuns"]>) => {
        if (broken) throw new Error("disk on fire");
        return real.listSilentRunningRuns(...args);
      },
    });
    const h = await harness({ store: flaky, config: { reaperIntervalMs: 10 } });
    clock = T0 + 60_000;
    await until("the failure to be logged", () => h.s.lines.some((l) => l.level === 50 && String(l.msg).includes("reaper pass failed")), { timeoutMs: 5_000 });
    broken = false;
    await expect(h.s.app.reaper.reapOnce()).resolves.toEqual(nothing);
  });
});

describe("concurrency slots of lost runs", () => {
  it("frees a slot held by a lost agent's run once the reaper acts, so the limit never stays taken", async () => {
    const h = await harness();
    const flow = (await h.post("/api/flows", flowBody({ labels: ["etl"], recovery: { onLost: "fail", maxAttempts: 1 } }))).body.flow;
    const first = (await h.post("/api/flow-runs", { flowId: flow.id })).body.flowRun as FlowRun;
    const second = (await h.post("/api/flow-runs", { flowId: flow.id })).body.flowRun as FlowRun;
    expect((await call(h.s.app, { method: "PUT", url: "/api/concurrency-limits/etl", payload: { max: 1 } })).status).toBe(200);
    const lost = (await h.post("/api/agents", { name: uniqueName("lost"), labels: ["etl"] })).body as { id: string };
    const taken = (await h.post(`/api/agents/${lost.id}/claim`, { waitMs: 0, max: 5 })).body.claims.map((c: { flowRun: FlowRun }) => c.flowRun.id);
    expect(taken).toEqual([first.id]); // the limit held the second back
    await h.running((await h.fetch(first.id)) as FlowRun);
    // The agent and the run's container go silent; a new agent finds the slot taken until the reaper acts.
    const fresh = (await h.post("/api/agents", { name: uniqueName("fresh"), labels: ["etl"] })).body as { id: string };
    expect((await h.post(`/api/agents/${fresh.id}/claim`, { waitMs: 0 })).body.claims).toEqual([]);
    expect((await h.fetch(second.id)).pickup).toBe(`held by the concurrency limit of label etl (1 of 1 slot taken, by ${first.id})`);
    expect((await h.reap(T0 + 46_000)).failed).toEqual([first.id]);
    expect((await h.post(`/api/agents/${fresh.id}/claim`, { waitMs: 0 })).body.claims.map((c: { flowRun: FlowRun }) => c.flowRun.id)).toEqual([second.id]);
  });
});

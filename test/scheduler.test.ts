/**
 * The scheduler inside the server, on a clock the test moves: runs made ahead once per slot, catch-up after
 * an outage, pause and resume, re-registration, and bad schedules refused at the door.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect } from "vitest";
import { clockKey } from "../flows/schedules.js";
import { AHEAD_MS } from "../server/scheduler.js";
import { openSqliteStore } from "../store/sqlite.js";
import type { ClockSpecInput, FlowRun } from "../wire/schema.js";
import { call, expectError } from "./support/api.js";
import { flowBody } from "./support/fixtures.js";
import { test as it, type TestServer } from "./support/server.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const MINUTE = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

const every = (ms: number, extra: Partial<ClockSpecInput> = {}): ClockSpecInput => ({ type: "interval", everyMs: ms, ...extra }) as ClockSpecInput;
const cron = (expr: string, extra: Partial<ClockSpecInput> = {}): ClockSpecInput => ({ type: "cron", cron: expr, ...extra }) as ClockSpecInput;

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A server on a clock the test moves, whose scheduler runs only when the test says. */
function clocked(startServer: (o?: Parameters<typeof import("./support/server.js").startTestServer>[0]) => Promise<TestServer>, at = T0) {
  const clock = { ms: at };
  return { clock, start: (store?: Awaited<ReturnType<typeof openSqliteStore>>) => startServer({ now: () => clock.ms, config: { schedulerIntervalMs: 0, reaperIntervalMs: 0 }, ...(store ? { store } : {}) }) };
}

async function register(server: TestServer, name: string, schedule: ClockSpecInput[], extra: Record<string, unknown> = {}) {
  const res = await call(server.app, { method: "POST", url: "/api/flows", payload: flowBody({ name, schedule, ...extra } as never) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.flow as { id: string; name: string; version: number };
}

async function runsOf(server: TestServer, name: string): Promise<FlowRun[]> {
  return (await server.store.listFlowRuns({ flowName: name, limit: 10_000 })).sort((a, b) => a.scheduledStart.localeCompare(b.scheduledStart));
}

describe("the scheduler", () => {
  it("makes the runs of the next ten minutes once, each starting at its slot, with the clock's parameters and labels", async ({ startServer }) => {
    const { clock, start } = clocked(startServer);
    const server = await start();
    await register(server, "every-minute", [every(MINUTE, { parameters: {}, labels: ["fast"] })]);
    const runs = await runsOf(server, "every-minute");
    expect(runs.map((r) => r.scheduledStart)).toEqual(Array.from({ length: AHEAD_MS / MINUTE }, (_, i) => iso(T0 + (i + 1) * MINUTE)));
    expect(runs.every((r) => r.state === "Scheduled" && r.labels.join() === "fast" && r.clock !== null)).toBe(true);
    // Again, and later: each slot once.
    await server.app.scheduler.tickOnce();
    clock.ms += 3 * MINUTE;
    await server.app.scheduler.tickOnce();
    const after = await runsOf(server, "every-minute");
    expect(after).toHaveLength(AHEAD_MS / MINUTE + 3);
    expect(new Set(after.map((r) => r.scheduledStart)).size).toBe(after.length);
  });

  it("always makes a far clock's next run, once, and shows it as the schedule's next slot", async ({ startServer }) => {
    const { clock, start } = clocked(startServer);
    const server = await start();
    await register(server, "nightly", [cron("0 2 * * *", { timezone: "Europe/Berlin" })]);
    for (const later of [0, 5 * MINUTE, 30 * MINUTE]) {
      clock.ms = T0 + later;
      await server.app.scheduler.tickOnce();
    }
    const runs = await runsOf(server, "nightly");
    expect(runs.map((r) => r.scheduledStart)).toEqual(["2030-01-01T01:00:00.000Z"]);
    clock.ms = Date.parse("2030-01-01T01:00:30.000Z");
    await server.app.scheduler.tickOnce();
    expect((await runsOf(server, "nightly")).map((r) => r.scheduledStart)).toEqual(["2030-01-01T01:00:00.000Z", "2030-01-02T01:00:00.000Z"]);
    clock.ms = T0;
    const view = await call(server.app, { method: "GET", url: "/api/schedules/nightly" });
    expect(view.body).toMatchObject({ flowName: "nightly", paused: false, catchUp: "latest", clocks: [{ description: 'cron "0 2 * * *" in Europe/Berlin' }] });
    expect(view.body.ticks.map((t: { slot: string }) => t.slot)).toEqual(["2030-01-02T01:00:00.000Z", "2030-01-01T01:00:00.000Z"]);
    expect(view.body.ticks[1]).toEqual({ clock: view.body.clocks[0].key, slot: "2030-01-01T01:00:00.000Z", outcome: "created", flowRunId: runs[0]!.id, at: iso(T0) });
  });

  for (const [catchUp, expected] of [
    ["none", []],
    ["latest", [iso(T0 + 60 * MINUTE)]],
    ["all", Array.from({ length: 60 }, (_, i) => iso(T0 + (i + 1) * MINUTE))],
  ] as const) {
    it(`after an hour down, catchUp "${catchUp}" runs ${catchUp === "all" ? "every missed slot" : catchUp === "none" ? "no missed slot" : "the newest missed slot"}, and records the others missed`, async ({ startServer }) => {
      const dir = await mkdtemp(path.join(os.tmpdir(), "berth-scheduler-"));
      dirs.push(dir);
      const file = path.join(dir, "berth.db");
      const { clock, start } = clocked(startServer);
      const first = await start(await openSqliteStore(file, { now: () => new Date(clock.ms) }));
      await register(first, "hourly-down", [every(MINUTE)], { catchUp });
      const madeAhead = (await runsOf(first, "hourly-down")).map((r) => r.id);
      expect(madeAhead).toHaveLength(10);
      await first.close();

      clock.ms = T0 + 60 * MINUTE + 30_000;
      const second = await start(await openSqliteStore(file, { now: () => new Date(clock.ms) }));
      const report = await second.app.scheduler.tickOnce();
      const runs = await runsOf(second, "hourly-down");
      const due = runs.filter((r) => Date.parse(r.scheduledStart) <= clock.ms).map((r) => r.scheduledStart);
      expect(due).toEqual(expected);
      expect(runs.filter((r) => Date.parse(r.scheduledStart) > clock.ms)).toHaveLength(10);
      expect(report.skipped["hourly-down"] ?? 0).toBe(60 - expected.length);
      const ticks = await second.store.listScheduleTicks("hourly-down", 1000);
      expect(ticks.filter((t) => Date.parse(t.slot) <= clock.ms && t.outcome === "missed")).toHaveLength(60 - expected.length);
      // Again: nothing changes.
      await second.app.scheduler.tickOnce();
      expect(await runsOf(second, "hourly-down")).toHaveLength(runs.length);
    });
  }

  it("keeps runs that came due while a scheduler ran, across a quick restart or a second server; only downtime misses slots", async ({ startServer }) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "berth-scheduler-"));
    dirs.push(dir);
    const file = path.join(dir, "berth.db");
    const { clock, start } = clocked(startServer);
    const open = async () => start(await openSqliteStore(file, { now: () => new Date(clock.ms) }));
    const first = await open();
    await register(first, "backlog", [every(MINUTE)], { catchUp: "none" });
    for (let minute = 1; minute <= 5; minute++) {
      clock.ms = T0 + minute * MINUTE + 50_000;
      await first.app.scheduler.tickOnce();
    }
    const dueIds = async (server: TestServer) => (await runsOf(server, "backlog")).filter((r) => Date.parse(r.scheduledStart) <= clock.ms).map((r) => r.id);
    expect(await dueIds(first)).toHaveLength(5); // no agent: they wait, Scheduled
    // A second server joins 20 s after the first's last pass; the slot at 6m came in between.
    clock.ms = T0 + 6 * MINUTE + 10_000;
    const second = await open();
    expect((await second.app.scheduler.tickOnce()).skipped).toEqual({});
    const queued = await dueIds(second);
    expect(queued).toHaveLength(6);
    // Both stop; three minutes later one starts again: slots 7, 8 and 9 came while no scheduler ran.
    await first.close();
    await second.close();
    clock.ms = T0 + 9 * MINUTE + 10_000;
    const restarted = await open();
    expect((await restarted.app.scheduler.tickOnce()).skipped).toEqual({ backlog: 3 });
    expect(await dueIds(restarted)).toEqual(queued);
    expect((await restarted.store.listScheduleTicks("backlog", 1000)).filter((t) => t.outcome !== "created").map((t) => t.slot)).toEqual(
      [9, 8, 7].map((m) => iso(T0 + m * MINUTE)),
    );
  });

  it("pause drops the runs made ahead at once and lets slots pass as paused; resume makes runs again", async ({ startServer }) => {
    const { clock, start } = clocked(startServer);
    const server = await start();
    await register(server, "pausable", [every(MINUTE)]);
    expect(await runsOf(server, "pausable")).toHaveLength(10);
    const paused = await call(server.app, { method: "POST", url: "/api/schedules/pausable/pause" });
    expect(paused.body.paused).toBe(true);
    expect(await runsOf(server, "pausable")).toEqual([]);
    clock.ms += 5 * MINUTE;
    await server.app.scheduler.tickOnce();
    expect(await runsOf(server, "pausable")).toEqual([]);
    const ticks = await server.store.listScheduleTicks("pausable", 100);
    expect(ticks.filter((t) => t.outcome === "paused" && Date.parse(t.slot) <= clock.ms)).toHaveLength(5);
    const resumed = await call(server.app, { method: "POST", url: "/api/schedules/pausable/resume" });
    expect(resumed.body.paused).toBe(false);
    const runs = await runsOf(server, "pausable");
    expect(runs.map((r) => r.scheduledStart)).toEqual(Array.from({ length: 10 }, (_, i) => iso(clock.ms + (i + 1) * MINUTE)));
  });

  it("a new version's schedule replaces the runs the old one made ahead; a version without one ends it", async ({ startServer }) => {
    const { clock, start } = clocked(startServer);
    const server = await start();
    const v1 = await register(server, "replaced", [every(MINUTE)]);
    clock.ms += 90_000;
    const v2 = await register(server, "replaced", [every(2 * MINUTE)]);
    const runs = await runsOf(server, "replaced");
    const future = runs.filter((r) => Date.parse(r.scheduledStart) > clock.ms);
    expect(future.every((r) => r.flowVersion === v2.version && r.clock === clockKey({ type: "interval", everyMs: 2 * MINUTE, startAt: null, endAt: null, parameters: {}, labels: null }))).toBe(true);
    expect(future.map((r) => r.scheduledStart)[0]).toBe(iso(T0 + 2 * MINUTE));
    expect(runs.filter((r) => r.flowVersion === v1.version).map((r) => r.scheduledStart)).toEqual([iso(T0 + MINUTE)]);
    await register(server, "replaced", []);
    expect((await runsOf(server, "replaced")).filter((r) => Date.parse(r.scheduledStart) > clock.ms)).toEqual([]);
    await expectError(server.app, { method: "GET", url: "/api/schedules/replaced" }, 404, "BERTH_E_NOT_FOUND");
  });

  it("shows a flow's clocks, next slot and slot history over the API, as many slots as asked for", async ({ startServer }) => {
    const { clock, start } = clocked(startServer);
    const server = await start();
    await register(server, "shown", [every(MINUTE), cron("0 3 * * *", { timezone: "Europe/Berlin" })]);
    clock.ms += 30 * MINUTE;
    await server.app.scheduler.tickOnce();
    const view = (await call(server.app, { method: "GET", url: "/api/schedules/shown" })).body;
    expect(view).toMatchObject({ flowName: "shown", flowVersion: 1, paused: false, catchUp: "latest" });
    expect(view.clocks.map((c: { description: string; next: string }) => [c.description, c.next])).toEqual([
      ["every 1m", iso(clock.ms + MINUTE)],
      ['cron "0 3 * * *" in Europe/Berlin', "2030-01-01T02:00:00.000Z"],
    ]);
    expect(view.ticks).toHaveLength(20);
    expect(view.ticks[0]).toMatchObject({ slot: "2030-01-01T02:00:00.000Z", outcome: "created" });
    const all = (await call(server.app, { method: "GET", url: "/api/schedules/shown?ticks=1000" })).body.ticks as { slot: string; outcome: string }[];
    expect(all).toHaveLength(41); // 40 minutes made ahead so far, and the cron clock's next slot
    expect(all.every((t) => t.outcome === "created")).toBe(true);
    await expectError(server.app, { method: "GET", url: "/api/schedules/shown?ticks=1001" }, 400, "BERTH_E_VALIDATION");
    const list = (await call(server.app, { method: "GET", url: "/api/schedules" })).body.schedules;
    expect(list.map((s: { flowName: string }) => s.flowName)).toEqual(["shown"]);
    await expectError(server.app, { method: "GET", url: "/api/schedules/nobody" }, 404, "BERTH_E_FLOW_NOT_FOUND");
  });

  it("refuses a schedule that could not make runs, naming the field and the value, and stores nothing", async ({ startServer }) => {
    const { start } = clocked(startServer);
    const server = await start();
    const refuse = async (schedule: ClockSpecInput[], status: number, code: string, extra: Record<string, unknown> = {}) =>
      (await expectError(server.app, { method: "POST", url: "/api/flows", payload: flowBody({ name: "bad", schedule, ...extra } as never) }, status, code)).message as string;
    expect(await refuse([cron("61 * * * *")], 400, "BERTH_E_VALIDATION")).toContain("schedule.0");
    expect(await refuse([cron("0 2 * * *", { timezone: "Mars/Olympus" })], 400, "BERTH_E_VALIDATION")).toContain("Mars/Olympus");
    expect(await refuse([every(0)], 400, "BERTH_E_VALIDATION")).toContain("everyMs");
    expect(await refuse([every(MINUTE, { startAt: iso(T0 + MINUTE), endAt: iso(T0) })], 400, "BERTH_E_VALIDATION")).toContain("startAt");
    const parameters = [{ name: "day", required: true }];
    expect(await refuse([every(MINUTE)], 422, "BERTH_E_PARAMETERS", { parameters })).toBe('flow "bad" schedule clock 1: missing required parameter day');
    expect(await refuse([every(MINUTE, { parameters: { nope: 1 } })], 422, "BERTH_E_PARAMETERS")).toContain("unknown parameter nope");
    expect(await server.store.listFlows()).toEqual([]);
  });
});

describe("start times", () => {
  it("refuses a start in the past, and keeps a run to come from every claim until its start", async ({ startServer }) => {
    const { clock, start } = clocked(startServer);
    const server = await start();
    const flow = await register(server, "later", []);
    const past = await expectError(server.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, scheduledStart: iso(T0 - 5 * MINUTE) } }, 400, "BERTH_E_VALIDATION");
    expect(past.message).toContain(`scheduledStart ${iso(T0 - 5 * MINUTE)} is in the past`);
    await expectError(server.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, scheduledStart: "tomorrow" } }, 400, "BERTH_E_VALIDATION");
    const created = await call(server.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, scheduledStart: "2030-01-01T01:00:00+01:00" } });
    expect(created.body.flowRun).toMatchObject({ scheduledStart: iso(T0), state: "Scheduled" });
    const later = await call(server.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, scheduledStart: iso(T0 + 10 * MINUTE) } });
    expect(later.body.flowRun.pickup).toMatch(/^starts at 2030-01-01T00:10:00.000Z \(in 10m\)/);
    const agent = await call(server.app, { method: "POST", url: "/api/agents", payload: { name: "a" } });
    const claim = () => call(server.app, { method: "POST", url: `/api/agents/${agent.body.id}/claim`, payload: { waitMs: 0, max: 5 } });
    expect((await claim()).body.claims.map((c: { flowRun: FlowRun }) => c.flowRun.id)).toEqual([created.body.flowRun.id]);
    expect((await claim()).body.claims).toEqual([]);
    clock.ms += 10 * MINUTE;
    expect((await claim()).body.claims.map((c: { flowRun: FlowRun }) => c.flowRun.id)).toEqual([later.body.flowRun.id]);
  });

  it("parks a claim quietly when the next run is weeks away (beyond any timer's reach)", async ({ startServer }) => {
    const store = await openSqliteStore(":memory:");
    let looks = 0;
    const claimFlowRuns = store.claimFlowRuns.bind(store);
    store.claimFlowRuns = (...args) => {
      looks++;
      return claimFlowRuns(...args);
    };
    const server = await startServer({ store, config: { schedulerIntervalMs: 0 } });
    const flow = await register(server, "next-month", []);
    const agent = await call(server.app, { method: "POST", url: "/api/agents", payload: { name: "patient" } });
    const run = await call(server.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, scheduledStart: iso(Date.now() + 30 * 24 * 3_600_000) } });
    expect(run.status).toBe(201);
    const claimed = await call(server.app, { method: "POST", url: `/api/agents/${agent.body.id}/claim`, payload: { waitMs: 1_000, max: 1 } });
    expect(claimed.body.claims).toEqual([]);
    // One look, then parked: a timer past 2^31 ms would fire at once, and the claim would look again and again.
    expect(looks).toBe(1);
  });

  it("wakes a parked claim when a run to come becomes due, not at the end of its wait", async ({ startServer }) => {
    const server = await startServer({ config: { schedulerIntervalMs: 0 } }); // the real clock
    const flow = await register(server, "due-soon", []);
    const agent = await call(server.app, { method: "POST", url: "/api/agents", payload: { name: "parked" } });
    const startsAt = Date.now() + 1_500;
    const run = await call(server.app, { method: "POST", url: "/api/flow-runs", payload: { flowId: flow.id, scheduledStart: iso(startsAt) } });
    expect(run.status).toBe(201);
    // Parked for up to 15 s: only the server's timer for the run's start can end it with the run.
    const claimed = await call(server.app, { method: "POST", url: `/api/agents/${agent.body.id}/claim`, payload: { waitMs: 15_000, max: 1 } });
    expect(Date.now()).toBeGreaterThanOrEqual(startsAt);
    expect(claimed.body.claims.map((c: { flowRun: FlowRun }) => c.flowRun.id)).toEqual([run.body.flowRun.id]);
  }, 30_000);
});

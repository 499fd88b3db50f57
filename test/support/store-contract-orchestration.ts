/**
 * The orchestration part of the StateStore contract (see store-contract.ts): start times, concurrency limits
 * enforced inside the claim, and the scheduler's slots, each recorded once. Each test runs the store on a
 * clock it moves itself.
 */
import { expect, it } from "vitest";
import { clockKey } from "../../flows/schedules.js";
import type { StateStore } from "../../store/port.js";
import type { ClockSpec, FlowRecord, FlowRun } from "../../wire/schema.js";
import { flowInput } from "./fixtures.js";
import { LEASE_MS } from "./store-contract-leases.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const MINUTE = 60_000;

class Clock {
  ms = T0;
  readonly now = (): Date => new Date(this.ms);
  at(offsetMs: number): Date {
    return new Date(T0 + offsetMs);
  }
}

const ids = (runs: readonly FlowRun[]): string[] => runs.map((r) => r.id);
const everyMinute: ClockSpec = { type: "interval", everyMs: MINUTE, startAt: null, endAt: null, parameters: {}, labels: null };

export function orchestrationContract(fresh: (now?: () => Date) => Promise<StateStore>): void {
  async function setUp(labels: string[] = [], overrides: Parameters<typeof flowInput>[0] = {}) {
    const clock = new Clock();
    const store = await fresh(clock.now);
    const { flow } = await store.registerFlow(flowInput({ labels, ...overrides }));
    const run = async (options: { labels?: string[]; startsIn?: number; of?: FlowRecord } = {}) =>
      (
        await store.createFlowRun({
          flow: options.of ?? flow,
          parameters: {},
          labels: options.labels ?? labels,
          scheduledStart: options.startsIn === undefined ? undefined : clock.at(options.startsIn),
        })
      ).flowRun;
    const claim = (agentLabels: string[] = labels, max = 10) => store.claimFlowRuns("agent-1", agentLabels, max, LEASE_MS);
    const finish = async (r: FlowRun, state: "Success" | "Cancelling" = "Success") => {
      const current = (await store.getFlowRun(r.id))!;
      await store.setFlowRunState(r.id, { state, expectedVersion: current.version });
    };
    return { clock, store, flow, run, claim, finish };
  }

  it("claims across every label set the agent satisfies, earliest start first, past more than a page of runs of each", async () => {
    const { clock, run, claim } = await setUp();
    clock.ms = T0 + 10 * MINUTE;
    // Runs the agent cannot take, queued first; then 70 of [a] (more than a claim reads at once), interleaved
    // in start with one of [b] and one of [a, b]; an unlabelled run no labelled agent takes.
    for (let i = 0; i < 80; i++) await run({ labels: ["c"], startsIn: 0 });
    const a: FlowRun[] = [];
    for (let i = 0; i < 70; i++) a.push(await run({ labels: ["a"], startsIn: MINUTE + i * 1000 }));
    const b = await run({ labels: ["b"], startsIn: MINUTE + 500 });
    const ab = await run({ labels: ["a", "b"], startsIn: MINUTE + 69_500 });
    await run({ labels: [], startsIn: 0 });
    const claimed = await claim(["a", "b"], 100);
    expect(ids(claimed)).toEqual([a[0]!.id, b.id, ...ids(a.slice(1)), ab.id]);
    expect(await claim(["a", "b"], 100)).toEqual([]);
    expect(await claim(["c"], 1)).toHaveLength(1);
  });

  it("claims a run only once its scheduled start has come, earliest start first, and says when the next one comes", async () => {
    const { clock, store, run, claim } = await setUp(["etl"]);
    const later = await run({ startsIn: 10 * MINUTE });
    const sooner = await run({ startsIn: 5 * MINUTE });
    expect(sooner.scheduledStart).toBe(clock.at(5 * MINUTE).toISOString());
    const now = await run();
    expect(now.scheduledStart).toBe(now.createdAt);
    expect(ids(await claim())).toEqual([now.id]);
    expect(await store.nextScheduledStart(["etl"])).toBe(sooner.scheduledStart);
    expect(await store.nextScheduledStart(["other"])).toBeUndefined();
    clock.ms = T0 + 10 * MINUTE;
    expect(ids(await claim())).toEqual([sooner.id, later.id]);
    expect(await store.nextScheduledStart(["etl"])).toBeUndefined();
  });

  it("keeps the phases of the current attempt: claimed by the claim, the agent's steps merged, per epoch", async () => {
    const { clock, store, run, claim } = await setUp();
    clock.ms = T0 + MINUTE;
    const queued = await run();
    expect(queued.phases).toMatchObject({ queued: queued.scheduledStart, claimed: null, runtimeUp: null });
    const [claimed] = await claim([], 1);
    expect(claimed!.phases).toMatchObject({ queued: queued.scheduledStart, claimed: clock.at(MINUTE).toISOString(), imageReady: null });
    await store.recordPhases(queued.id, 1, { imageReady: clock.at(MINUTE + 5).toISOString(), imageSource: "built" });
    const merged = await store.recordPhases(queued.id, 1, { containerCreated: clock.at(MINUTE + 9).toISOString() });
    expect(merged!.phases).toMatchObject({ claimed: clock.at(MINUTE).toISOString(), imageReady: clock.at(MINUTE + 5).toISOString(), imageSource: "built", containerCreated: clock.at(MINUTE + 9).toISOString(), containerStarted: null });
    const running = await store.setFlowRunState(queued.id, { state: "Running", expectedVersion: merged!.version, epoch: 1 });
    expect(running.phases!.runtimeUp).toBe(running.startedAt);
    await expect(store.recordPhases(queued.id, 0, { cleanedUp: clock.at(MINUTE).toISOString() })).rejects.toMatchObject({ code: "BERTH_E_STALE_LEASE" });
    expect(await store.recordPhases("no-such-run", 1, {})).toBeUndefined();
    // Given back to the queue, the attempt's steps are no longer the run's; the next claim starts afresh.
    const back = await store.setFlowRunState(queued.id, { state: "Scheduled", expectedVersion: running.version });
    expect(back.phases).toMatchObject({ claimed: null, imageReady: null, imageSource: null, runtimeUp: null });
    clock.ms = T0 + 2 * MINUTE;
    const [again] = await claim([], 1);
    expect(again!.phases).toMatchObject({ claimed: clock.at(2 * MINUTE).toISOString(), imageReady: null, containerCreated: null });
  });

  it("names the flow versions whose runs are not over, or were created since a time", async () => {
    const { clock, store, flow, run, claim } = await setUp();
    const other = (await store.registerFlow(flowInput())).flow;
    const done = (await store.registerFlow(flowInput())).flow;
    clock.ms = T0 + MINUTE;
    const old = await run({ of: done });
    await store.setFlowRunState(old.id, { state: "Cancelled", expectedVersion: old.version });
    clock.ms = T0 + 10 * MINUTE;
    await run();
    const running = await run({ of: other });
    expect((await claim([], 10)).map((r) => r.id)).toContain(running.id);
    expect((await store.flowIdsInUse(new Date(T0 + 5 * MINUTE))).sort()).toEqual([flow.id, other.id].sort());
    expect((await store.flowIdsInUse(new Date(T0))).sort()).toEqual([flow.id, other.id, done.id].sort());
  });

  it("counts runs by flow and state, and the due queue by label set with its oldest due time", async () => {
    const { clock, store, run, claim, finish } = await setUp();
    const other = (await store.registerFlow(flowInput({ name: "other-flow" }))).flow;
    clock.ms = T0 + 10 * MINUTE;
    const oldest = await run({ labels: ["gpu", "etl"], startsIn: MINUTE });
    await run({ labels: ["etl", "gpu"], startsIn: 2 * MINUTE });
    await run({ labels: ["etl"], startsIn: 3 * MINUTE });
    await run({ labels: ["etl"], startsIn: 20 * MINUTE }); // not due: counted as Scheduled, not queued
    const done = await run({ labels: [], of: other });
    await finish((await claim([], 1))[0]!);
    const snapshot = await store.runsSnapshot();
    expect(snapshot.runs).toEqual([
      { flowName: "other-flow", state: "Success", count: 1 },
      { flowName: oldest.flowName, state: "Scheduled", count: 4 },
    ].sort((a, b) => (a.flowName < b.flowName ? -1 : 1)));
    expect(done.flowName).toBe("other-flow");
    expect(snapshot.queue).toEqual([
      { labels: ["etl"], count: 1, oldestDue: clock.at(3 * MINUTE).toISOString() },
      { labels: ["etl", "gpu"], count: 2, oldestDue: oldest.scheduledStart },
    ]);
  });

  it("holds a label's runs to its limit inside the claim, and frees a slot when a run ends, not while it is cancelling", async () => {
    const { store, run, claim, finish } = await setUp(["etl"]);
    await store.setConcurrencyLimit("etl", 2);
    const runs = [await run(), await run(), await run(), await run()];
    const first = await claim();
    expect(ids(first)).toEqual(ids(runs.slice(0, 2)));
    expect(await claim()).toEqual([]);
    expect((await store.listConcurrencyLimits()).map((l) => ({ ...l }))).toEqual([{ label: "etl", max: 2, holders: ids(first) }]);
    await finish(first[0]!, "Cancelling");
    expect(await claim(), "a Cancelling run's container still runs: its slot is taken").toEqual([]);
    await finish(first[1]!);
    expect(ids(await claim())).toEqual([runs[2]!.id]);
    expect(await store.deleteConcurrencyLimit("etl")).toBe(true);
    expect(await store.deleteConcurrencyLimit("etl")).toBe(false);
    expect(ids(await claim())).toEqual([runs[3]!.id]);
  });

  it("passes over runs a limit holds, to runs behind them that no limit holds", async () => {
    const { store, run, claim } = await setUp();
    await store.setConcurrencyLimit("gpu", 1);
    const gpu = [await run({ labels: ["gpu"] }), await run({ labels: ["gpu"] })];
    const cpu = await run({ labels: ["cpu"] });
    expect(ids(await claim(["gpu", "cpu"], 10))).toEqual([gpu[0]!.id, cpu.id]);
    expect(ids(await store.listActiveRuns({ label: "gpu" }, 10))).toEqual([gpu[0]!.id]);
    // A claim that starts with the limit full looks past its runs too, earliest start first.
    const more = [await run({ labels: ["cpu"], startsIn: 0 }), await run({ labels: ["cpu", "x"] }), await run({ labels: ["gpu", "x"] })];
    expect(ids(await claim(["gpu", "cpu", "x"], 10))).toEqual([more[0]!.id, more[1]!.id]);
  });

  it("holds a flow's runs, of every version, to its newest version's maxConcurrentRuns", async () => {
    const { store, flow, run, claim, finish } = await setUp([], { maxConcurrentRuns: 1 });
    const { flow: v2 } = await store.registerFlow(flowInput({ name: flow.name, maxConcurrentRuns: 2 }));
    const runs = [await run(), await run({ of: v2 }), await run(), await run({ of: v2 })];
    expect(ids(await claim())).toEqual(ids(runs.slice(0, 2)));
    await finish(runs[0]!);
    expect(ids(await claim())).toEqual([runs[2]!.id]);
    expect(ids(await store.listActiveRuns({ flowName: flow.name }, 10))).toEqual([runs[1]!.id, runs[2]!.id]);
  });

  it("never lets claims made at the same time exceed a limit", async () => {
    const { store, run } = await setUp(["etl"]);
    await store.setConcurrencyLimit("etl", 3);
    for (let i = 0; i < 20; i++) await run();
    const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => store.claimFlowRuns(`agent-${i}`, ["etl"], 2, LEASE_MS)));
    expect(claims.flat()).toHaveLength(3);
  });

  it("records a slot once, makes its run once, and moves a clock's cursor only forward", async () => {
    const { clock, store, flow } = await setUp([], { schedule: [everyMinute] });
    const key = clockKey(everyMinute);
    expect((await store.getScheduleState(flow.name)).cursors).toEqual({ [key]: clock.at(0).toISOString() });
    const slot = clock.at(MINUTE);
    const made = (await store.applySlots({ flow, clock: key, paused: false, decisions: [{ slot, outcome: "created", run: { flow, parameters: { n: 1 }, labels: ["x"] } }], cursor: slot }))!;
    expect(made).toHaveLength(1);
    expect(made[0]).toMatchObject({ clock: key, scheduledStart: slot.toISOString(), parameters: { n: 1 }, labels: ["x"], state: "Scheduled" });
    // Another scheduler deciding the same slot, even otherwise, changes nothing.
    expect(await store.applySlots({ flow, clock: key, paused: false, decisions: [{ slot, outcome: "missed" }], cursor: clock.at(0) })).toEqual([]);
    expect(await store.applySlots({ flow, clock: key, paused: false, decisions: [{ slot, outcome: "created", run: { flow, parameters: {}, labels: [] } }], cursor: slot })).toEqual([]);
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => [t.slot, t.outcome, t.flowRunId])).toEqual([[slot.toISOString(), "created", made[0]!.id]]);
    expect((await store.getScheduleState(flow.name)).cursors[key]).toBe(slot.toISOString());
    expect(await store.listScheduledFlows()).toEqual([flow]);
  });

  it("hands a new version the schedule: unclaimed runs still to come go (to be made again), the others stay", async () => {
    const { clock, store, flow, claim } = await setUp([], { schedule: [everyMinute] });
    const key = clockKey(everyMinute);
    const make = (n: number) => ({ slot: clock.at(n * MINUTE), outcome: "created" as const, run: { flow, parameters: {}, labels: [] } });
    const [due, dueUnclaimed, ahead] = (await store.applySlots({ flow, clock: key, paused: false, decisions: [make(1), make(2), make(3)], cursor: clock.at(3 * MINUTE) }))!;
    clock.ms = T0 + 2 * MINUTE;
    expect(ids(await claim([], 1))).toEqual([due!.id]);
    clock.ms = T0 + 2 * MINUTE + 1;
    // `dueUnclaimed` is due but not claimed, `ahead` is still to come.
    await store.registerFlow(flowInput({ name: flow.name, schedule: [everyMinute] }));
    expect(await store.getFlowRun(dueUnclaimed!.id)).toBeDefined();
    expect(await store.getFlowRun(ahead!.id)).toBeUndefined();
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => t.slot)).toEqual([clock.at(2 * MINUTE).toISOString(), clock.at(MINUTE).toISOString()]);
    expect((await store.getScheduleState(flow.name)).cursors[key]).toBe(clock.now().toISOString());
    // A version without the clock drops it.
    await store.registerFlow(flowInput({ name: flow.name, schedule: [] }));
    expect((await store.getScheduleState(flow.name)).cursors).toEqual({});
    expect(await store.listScheduledFlows()).toEqual([]);
  });

  it("pausing drops the runs made ahead and marks their slots paused; resuming lets them be made again", async () => {
    const { clock, store, flow } = await setUp([], { schedule: [everyMinute] });
    const key = clockKey(everyMinute);
    const slot = clock.at(5 * MINUTE);
    const [ahead] = (await store.applySlots({ flow, clock: key, paused: false, decisions: [{ slot, outcome: "created", run: { flow, parameters: {}, labels: [] } }], cursor: slot }))!;
    const { dropped } = await store.setSchedulePaused(flow.name, true);
    expect(dropped).toEqual([ahead!.id]);
    expect(await store.getFlowRun(ahead!.id)).toBeUndefined();
    expect(await store.getScheduleState(flow.name)).toMatchObject({ paused: true });
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => [t.outcome, t.flowRunId])).toEqual([["paused", null]]);
    await store.setSchedulePaused(flow.name, false);
    expect(await store.getScheduleState(flow.name)).toEqual({ paused: false, cursors: { [key]: clock.now().toISOString() } });
    expect(await store.listScheduleTicks(flow.name, 10)).toEqual([]);
    expect(await store.applySlots({ flow, clock: key, paused: false, decisions: [{ slot, outcome: "created", run: { flow, parameters: {}, labels: [] } }], cursor: slot })).toHaveLength(1);
  });

  it("writes a clock's decisions only while the schedule is as they saw it: the newest version, the clock, not paused", async () => {
    const { store, flow } = await setUp([], { schedule: [everyMinute] });
    const key = clockKey(everyMinute);
    const slot = new Date(T0 + MINUTE);
    const decide = (of: FlowRecord, clock: string, paused: boolean) =>
      store.applySlots({ flow: of, clock, paused, decisions: [{ slot, outcome: "created", run: { flow: of, parameters: {}, labels: [] } }], cursor: slot });
    expect(await decide(flow, key, true)).toBeUndefined(); // not paused
    expect(await decide(flow, "0123456789abcdef", false)).toBeUndefined(); // no such clock
    const hourly: ClockSpec = { type: "interval", everyMs: 60 * MINUTE, startAt: null, endAt: null, parameters: {}, labels: null };
    const { flow: v2 } = await store.registerFlow(flowInput({ name: flow.name, schedule: [everyMinute, hourly] }));
    expect(await decide(flow, key, false)).toBeUndefined(); // an older version
    expect(await store.listScheduleTicks(flow.name, 10)).toEqual([]);
    expect(await store.listFlowRuns({ flowName: flow.name })).toEqual([]);
    expect(await decide(v2, key, false)).toHaveLength(1);
    await store.setSchedulePaused(flow.name, true);
    expect(await decide(v2, clockKey(hourly), false)).toBeUndefined(); // paused meanwhile
    const pausedPass = { flow: v2, clock: clockKey(hourly), paused: true, decisions: [{ slot, outcome: "paused" as const }], cursor: slot };
    expect(await store.applySlots(pausedPass)).toEqual([]); // as a paused pass sees it
    // The pause dropped the run v2 made for the minute clock: both slots are paused.
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => [t.clock, t.outcome])).toEqual([
      [clockKey(hourly), "paused"],
      [key, "paused"],
    ]);
  });

  it("resuming records the slots that passed since the last paused pass as paused, so that none runs late", async () => {
    const { clock, store, flow } = await setUp([], { schedule: [everyMinute] });
    const key = clockKey(everyMinute);
    await store.setSchedulePaused(flow.name, true);
    clock.ms = T0 + 2.5 * MINUTE; // no pass since the pause: the cursor is still at T0
    await store.setSchedulePaused(flow.name, false);
    expect(await store.getScheduleState(flow.name)).toEqual({ paused: false, cursors: { [key]: clock.now().toISOString() } });
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => [t.slot, t.outcome, t.flowRunId])).toEqual([
      [clock.at(2 * MINUTE).toISOString(), "paused", null],
      [clock.at(MINUTE).toISOString(), "paused", null],
    ]);
    expect(await store.listFlowRuns({ flowName: flow.name })).toEqual([]);
  });

  it("remembers when the last scheduler pass ran, whichever server ran it, never going back", async () => {
    const { store } = await setUp();
    expect(await store.recordSchedulerPass(new Date(T0))).toBeUndefined();
    expect(await store.recordSchedulerPass(new Date(T0 + MINUTE))).toEqual(new Date(T0));
    expect(await store.recordSchedulerPass(new Date(T0 + 30_000))).toEqual(new Date(T0 + MINUTE)); // a slower clock
    expect(await store.recordSchedulerPass(new Date(T0 + 2 * MINUTE))).toEqual(new Date(T0 + MINUTE));
  });

  it("drops only unclaimed slot runs, and keeps the newest slots when pruning", async () => {
    const { clock, store, flow, claim } = await setUp([], { schedule: [everyMinute] });
    const key = clockKey(everyMinute);
    const decisions = Array.from({ length: 5 }, (_, i) => ({ slot: clock.at((i + 1) * MINUTE), outcome: "created" as const, run: { flow, parameters: {}, labels: [] } }));
    const made = (await store.applySlots({ flow, clock: key, paused: false, decisions, cursor: clock.at(5 * MINUTE) }))!;
    clock.ms = T0 + MINUTE;
    const [taken] = await claim([], 1);
    expect(ids(await store.listUnclaimedSlotRuns(flow.name, key, clock.at(0), clock.at(3 * MINUTE)))).toEqual([made[1]!.id]);
    expect(ids(await store.listUnclaimedSlotRuns(flow.name, key, clock.at(3 * MINUTE), clock.at(5 * MINUTE)))).toEqual([made[2]!.id, made[3]!.id]);
    expect(await store.dropSlotRuns([taken!.id, made[1]!.id], "missed")).toEqual([made[1]!.id]);
    expect(await store.getFlowRun(taken!.id)).toBeDefined();
    expect(await store.pruneScheduleTicks(flow.name, 3, clock.at(5 * MINUTE))).toBe(2);
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => t.slot)).toEqual([5, 4, 3].map((n) => clock.at(n * MINUTE).toISOString()));
    // Slots still to come keep their ticks, whatever the bound: they are what stops a second run.
    expect(await store.pruneScheduleTicks(flow.name, 1, clock.at(3 * MINUTE + 1))).toBe(0);
    expect(await store.pruneScheduleTicks(flow.name, 0, clock.at(4 * MINUTE))).toBe(2);
    expect((await store.listScheduleTicks(flow.name, 10)).map((t) => t.slot)).toEqual([clock.at(5 * MINUTE).toISOString()]);
  });
}

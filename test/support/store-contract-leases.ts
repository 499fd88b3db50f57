/**
 * The lease part of the StateStore contract (see store-contract.ts): epochs, fencing, lease renewal, what the
 * reaper scans, and agents known by name. Each test runs the store on a clock it moves itself.
 */
import { expect, it } from "vitest";
import { isBerthError } from "../../wire/errors.js";
import type { FlowRun, LogLine, TaskRun } from "../../wire/schema.js";
import type { StateStore } from "../../store/port.js";
import { flowInput } from "./fixtures.js";

export const LEASE_MS = 30_000;

/** Opens a fresh, empty store whose timestamps come from `now` (default: the system clock). */
export type OpenStore = (now?: () => Date) => Promise<StateStore>;

class Clock {
  ms = Date.parse("2030-01-01T00:00:00.000Z");
  readonly now = (): Date => new Date(this.ms);
  advance(ms: number): void {
    this.ms += ms;
  }
  /** The clock's time plus `afterMs`, as the store writes it. */
  iso(afterMs = 0): string {
    return new Date(this.ms + afterMs).toISOString();
  }
}

const ids = (runs: readonly FlowRun[]): string[] => runs.map((r) => r.id);
const taskRun: TaskRun = { taskSlug: "a", taskName: "A", state: "Running", attempt: 1 };
const line = (message: string): LogLine => ({ at: new Date().toISOString(), level: "info", message, task: null });

async function expectStaleLease(promise: Promise<unknown>, expected: number, actual: number): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(isBerthError(caught, "BERTH_E_STALE_LEASE"), String(caught)).toBe(true);
  expect((caught as { details: unknown }).details).toEqual({ expected, actual });
}

/** Registers the lease tests; call inside the contract's describe. */
export function leaseContract(open: OpenStore): void {
  async function setup() {
    const clock = new Clock();
    const store = await open(clock.now);
    const { flow } = await store.registerFlow(flowInput());
    const run = async () => (await store.createFlowRun({ flow, parameters: {}, labels: [] })).flowRun;
    const claim = async (agentId = "agent-1"): Promise<FlowRun> => {
      const [claimed] = await store.claimFlowRuns(agentId, [], 1, LEASE_MS);
      if (!claimed) throw new Error("nothing to claim");
      return claimed;
    };
    return { clock, store, run, claim };
  }

  it("gives each claim a new epoch and a lease; back to Scheduled forgets the attempt, a final state the lease", async () => {
    const { clock, store, run, claim } = await setup();
    const r = await run();
    expect(r).toMatchObject({ epoch: 0, leaseExpiresAt: null });
    const first = await claim();
    expect(first).toMatchObject({ id: r.id, epoch: 1, agentId: "agent-1", leaseExpiresAt: clock.iso(LEASE_MS) });
    const running = await store.setFlowRunState(r.id, { state: "Running", expectedVersion: first.version, epoch: 1 });
    await store.heartbeatFlowRun(r.id, 1);
    clock.advance(1_000);
    const back = await store.setFlowRunState(r.id, { state: "Scheduled", message: "lost", expectedVersion: running.version });
    expect(back).toMatchObject({ state: "Scheduled", epoch: 1, agentId: null, leaseExpiresAt: null, startedAt: null, lastHeartbeatAt: null });
    const second = await claim("agent-2");
    expect(second).toMatchObject({ epoch: 2, agentId: "agent-2", leaseExpiresAt: clock.iso(LEASE_MS) });
    expect(await store.setFlowRunState(r.id, { state: "Cancelled", expectedVersion: second.version })).toMatchObject({ epoch: 2, leaseExpiresAt: null });
  });

  it("refuses a stale epoch for state, task runs, logs and heartbeats, writing nothing", async () => {
    const { store, run, claim } = await setup();
    const r = await run();
    const claimed = await claim();
    const before = await store.getFlowRun(r.id);
    await expectStaleLease(store.setFlowRunState(r.id, { state: "Running", expectedVersion: claimed.version, epoch: 0 }), 1, 0);
    // The epoch is checked before the version: a superseded attempt must stop, not re-read and retry.
    await expectStaleLease(store.setFlowRunState(r.id, { state: "Running", expectedVersion: 99, epoch: 2 }), 1, 2);
    await expectStaleLease(store.upsertTaskRuns(r.id, [taskRun], 0), 1, 0);
    await expectStaleLease(store.appendLogs(r.id, [line("late")], 0), 1, 0);
    await expectStaleLease(store.heartbeatFlowRun(r.id, 2), 1, 2);
    expect(await store.getFlowRun(r.id)).toEqual(before);
    expect(await store.listFlowRunStates(r.id)).toHaveLength(2);
    expect(await store.listTaskRuns(r.id)).toEqual([]);
    expect(await store.listLogs(r.id, 0, 10)).toEqual([]);

    // The current epoch passes; so do writers that give none (users, the CLI).
    const stale = await store.setFlowRunState(r.id, { state: "Running", expectedVersion: 99, epoch: 1 }).catch((err: unknown) => err);
    expect(isBerthError(stale, "BERTH_E_STALE_VERSION")).toBe(true);
    await store.upsertTaskRuns(r.id, [taskRun], 1);
    await store.appendLogs(r.id, [line("mine")], 1);
    await store.appendLogs(r.id, [line("anyone's")]);
    expect((await store.heartbeatFlowRun(r.id, 1))?.lastHeartbeatAt).toEqual(expect.any(String));
    expect(await store.setFlowRunState(r.id, { state: "Running", expectedVersion: claimed.version, epoch: 1 })).toMatchObject({ state: "Running" });
    expect(await store.listTaskRuns(r.id)).toHaveLength(1);
    expect((await store.listLogs(r.id, 0, 10)).map((l) => l.message)).toEqual(["mine", "anyone's"]);
    expect(await store.heartbeatFlowRun("no-such-run", 1)).toBeUndefined();
    const missing = await store.appendLogs("no-such-run", [line("x")], 1).catch((err: unknown) => err);
    expect(isBerthError(missing, "BERTH_E_FLOW_RUN_NOT_FOUND")).toBe(true);
  });

  it("renews the leases an agent still holds and reports every other listed run lost", async () => {
    const { clock, store, run } = await setup();
    const runs = await Promise.all(Array.from({ length: 6 }, () => run()));
    const claimed = await store.claimFlowRuns("agent-1", [], 6, LEASE_MS);
    // Made at once, on one clock: which of them came first is the store's (a networked one takes them in any order).
    expect(ids(claimed).sort()).toEqual(ids(runs).sort());
    const [submitted, running, cancelling, ended, taken, misremembered] = claimed as [FlowRun, FlowRun, FlowRun, FlowRun, FlowRun, FlowRun];
    await store.setFlowRunState(running.id, { state: "Running", expectedVersion: running.version });
    const c = await store.setFlowRunState(cancelling.id, { state: "Running", expectedVersion: cancelling.version });
    await store.setFlowRunState(cancelling.id, { state: "Cancelling", expectedVersion: c.version });
    await store.setFlowRunState(ended.id, { state: "Success", expectedVersion: ended.version });
    await store.setFlowRunState(taken.id, { state: "Scheduled", expectedVersion: taken.version });
    const retaken = (await store.claimFlowRuns("agent-2", [], 1, LEASE_MS))[0];
    expect(retaken).toMatchObject({ id: taken.id, epoch: 2 });

    clock.advance(10_000);
    const listed = [submitted, running, cancelling, ended, taken].map((r) => ({ id: r.id, epoch: 1 }));
    const { lostRunIds } = await store.renewLeases("agent-1", [...listed, { id: misremembered.id, epoch: 7 }, { id: "no-such-run", epoch: 1 }], LEASE_MS);
    expect(lostRunIds.sort()).toEqual([ended.id, taken.id, misremembered.id, "no-such-run"].sort());
    for (const r of [submitted, running, cancelling]) expect((await store.getFlowRun(r.id))?.leaseExpiresAt).toBe(clock.iso(LEASE_MS));
    expect((await store.getFlowRun(taken.id))?.leaseExpiresAt).toBe(retaken?.leaseExpiresAt);
    expect((await store.getFlowRun(misremembered.id))?.leaseExpiresAt).toBe(misremembered.leaseExpiresAt);
    expect(await store.renewLeases("agent-1", [], LEASE_MS)).toEqual({ lostRunIds: [] });
  });

  it("finds what the reaper scans for: expired leases, silent Running runs, runs stuck in a state", async () => {
    const { clock, store, run, claim } = await setup();
    const t0 = clock.ms;
    const at = (seconds: number) => new Date(t0 + seconds * 1_000);
    const [a, b, c] = [await run(), await run(), await run()];
    await claim(); // a: claimed at 0s, lease until 30s
    clock.advance(5_000);
    const cb = await claim(); // b: 5s, lease until 35s
    clock.advance(5_000);
    const cc = await claim(); // c: 10s, lease until 40s
    await store.setFlowRunState(c.id, { state: "Running", expectedVersion: cc.version }); // started at 10s
    clock.advance(5_000);
    await store.setFlowRunState(b.id, { state: "Running", expectedVersion: cb.version }); // started at 15s, never heard from
    clock.advance(5_000);
    await store.heartbeatFlowRun(c.id); // heard from at 20s

    expect(ids(await store.listExpiredLeases(["Submitted"], at(30), 10))).toEqual([]);
    expect(ids(await store.listExpiredLeases(["Submitted"], at(31), 10))).toEqual([a.id]);
    expect(ids(await store.listExpiredLeases(["Submitted", "Running"], at(60), 10))).toEqual([a.id, b.id, c.id]);
    expect(ids(await store.listExpiredLeases(["Submitted", "Running"], at(60), 2))).toEqual([a.id, b.id]);
    expect(ids(await store.listExpiredLeases(["Cancelling"], at(60), 10))).toEqual([]);

    expect(ids(await store.listSilentRunningRuns(at(15), 10))).toEqual([]);
    expect(ids(await store.listSilentRunningRuns(at(16), 10))).toEqual([b.id]);
    expect(ids(await store.listSilentRunningRuns(at(21), 10))).toEqual([b.id, c.id]);
    expect(ids(await store.listSilentRunningRuns(at(21), 1))).toEqual([b.id]);

    expect(ids(await store.listRunsUpdatedBefore("Submitted", at(1), 10))).toEqual([a.id]);
    expect(ids(await store.listRunsUpdatedBefore("Running", at(16), 10))).toEqual([c.id, b.id]);
    expect(ids(await store.listRunsUpdatedBefore("Running", at(11), 10))).toEqual([c.id]);
    expect(await store.listRunsUpdatedBefore("Cancelling", at(60), 10)).toEqual([]);
  });

  it("knows agents by name: registering a known name gets that agent back, updated", async () => {
    const clock = new Clock();
    const store = await open(clock.now);
    const { agent, created } = await store.registerAgent({ name: "a1", labels: ["gpu"], concurrency: 1 });
    expect(created).toBe(true);
    await store.heartbeatAgent(agent.id, "stopped");
    clock.advance(60_000);
    const again = await store.registerAgent({ name: "a1", labels: ["cpu", "arm"], concurrency: 3 });
    expect(again).toEqual({
      created: false,
      agent: { ...agent, labels: ["arm", "cpu"], concurrency: 3, status: "online", lastHeartbeatAt: clock.iso() },
    });
    expect(await store.getAgent(agent.id)).toEqual(again.agent);
    const other = await store.registerAgent({ name: "a2", labels: [], concurrency: 1 });
    expect(other.created).toBe(true);
    expect((await store.listAgents()).map((x) => x.id)).toEqual([agent.id, other.agent.id]);
  });
}

/**
 * The StateStore contract: every implementation (SQLite now, PostgreSQL later) must pass this one suite.
 * `open` gives a fresh, empty store (on the given clock, when one is given); `openSibling`, when the store is
 * persistent, opens a second connection to the same database (for durability, and claims over two connections).
 * The lease tests live in store-contract-leases.ts; claims racing in separate processes, in claim-race.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { isBerthError } from "../../wire/errors.js";
import type { FlowRun, LogLine } from "../../wire/schema.js";
import { labelsMatch } from "../../store/labels.js";
import type { StateStore } from "../../store/port.js";
import { flowInput, uniqueName } from "./fixtures.js";
import { LEASE_MS, leaseContract, type OpenStore } from "./store-contract-leases.js";
import { orchestrationContract } from "./store-contract-orchestration.js";

export interface StoreContractOptions {
  openSibling?: (store: StateStore) => Promise<StateStore>;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

function log(message: string, task: string | null = null): LogLine {
  return { at: new Date().toISOString(), level: "info", message, task };
}

export function describeStoreContract(name: string, open: OpenStore, options: StoreContractOptions = {}): void {
  describe(`StateStore contract: ${name}`, () => {
    const opened: StateStore[] = [];
    const fresh = async (now?: () => Date): Promise<StateStore> => {
      const store = await open(now);
      opened.push(store);
      return store;
    };
    const sibling = async (store: StateStore): Promise<StateStore> => {
      if (!options.openSibling) throw new Error("no sibling");
      const other = await options.openSibling(store);
      opened.push(other);
      return other;
    };
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
    });

    async function storeWithFlow(labels: string[] = []) {
      const store = await fresh();
      const { flow } = await store.registerFlow(flowInput({ labels }));
      const run = async (runLabels: string[] = labels, idempotencyKey?: string) =>
        (await store.createFlowRun({ flow, parameters: {}, labels: runLabels, idempotencyKey })).flowRun;
      return { store, flow, run };
    }

    it("describes itself", async () => {
      expect((await fresh()).description).toMatch(/\S/);
    });

    it("versions flows per name and makes no version for an unchanged content hash", async () => {
      const store = await fresh();
      const name = uniqueName();
      const v1 = await store.registerFlow(flowInput({ name, contentHash: "h1", labels: ["b", "a", "b"] }));
      expect(v1.created).toBe(true);
      expect(v1.flow).toMatchObject({ name, version: 1, contentHash: "h1", labels: ["a", "b"] });
      expect(v1.flow.slug).toMatch(/^[a-z0-9-]+$/);

      const again = await store.registerFlow(flowInput({ name, contentHash: "h1" }));
      expect(again).toEqual({ flow: v1.flow, created: false });

      const v2 = await store.registerFlow(flowInput({ name, contentHash: "h2" }));
      expect(v2.created).toBe(true);
      expect(v2.flow.version).toBe(2);
      // Only the newest version counts: going back to an older content makes a new version.
      expect((await store.registerFlow(flowInput({ name, contentHash: "h1" }))).flow.version).toBe(3);

      const other = await store.registerFlow(flowInput({ name: `${name}-other`, contentHash: "h1" }));
      expect(other.flow.version).toBe(1);

      expect(await store.getFlow(v1.flow.id)).toEqual(v1.flow);
      expect(await store.getFlow("no-such-flow")).toBeUndefined();
      expect((await store.getFlowByName(name))?.version).toBe(3);
      expect((await store.getFlowByName(name, 2))?.id).toBe(v2.flow.id);
      expect(await store.getFlowByName(name, 9)).toBeUndefined();
      expect(await store.getFlowByName("no-such-name")).toBeUndefined();
      const listed = (await store.listFlows()).map((f) => `${f.name}@${f.version}`);
      expect(listed).toEqual([`${name}@3`, `${name}@2`, `${name}@1`, `${name}-other@1`]);
    });

    it("keeps every field of a flow", async () => {
      const store = await fresh();
      const input = flowInput({
        parameters: [{ name: "x", required: true }, { name: "y", required: false, default: { deep: [1, "two"] } }],
        environment: { type: "custom", className: "MyEnv", labels: ["gpu"], metadata: { a: 1 } },
        storage: { type: "local", directory: "/tmp/flows", flows: { f: "/tmp/flows/f.mjs" } },
      });
      const { flow } = await store.registerFlow(input);
      expect(flow).toMatchObject({ ...input, labels: [] });
      expect(await store.getFlow(flow.id)).toEqual(flow);
    });

    it("creates Scheduled runs and honours idempotency keys", async () => {
      const { store, flow } = await storeWithFlow();
      const key = uniqueName("key");
      const first = await store.createFlowRun({ flow, parameters: { x: 1 }, labels: ["z", "a"], idempotencyKey: key });
      expect(first.created).toBe(true);
      expect(first.flowRun).toMatchObject({
        flowId: flow.id,
        flowName: flow.name,
        flowVersion: flow.version,
        state: "Scheduled",
        version: 0,
        labels: ["a", "z"],
        parameters: { x: 1 },
        idempotencyKey: key,
        agentId: null,
        startedAt: null,
        endedAt: null,
      });
      const repeat = await store.createFlowRun({ flow, parameters: { x: 2 }, labels: [], idempotencyKey: key });
      expect(repeat).toEqual({ flowRun: first.flowRun, created: false });
      const other = await store.createFlowRun({ flow, parameters: {}, labels: [], idempotencyKey: `${key}-2` });
      expect(other.created).toBe(true);
      expect(other.flowRun.id).not.toBe(first.flowRun.id);
      const unkeyed = await store.createFlowRun({ flow, parameters: {}, labels: [] });
      expect(unkeyed.flowRun.idempotencyKey).toBeNull();
      expect(await store.getFlowRun(first.flowRun.id)).toEqual(first.flowRun);
      expect(await store.getFlowRun("no-such-run")).toBeUndefined();
    });

    it("tells a run's creator once the run is committed, before answering, and whether it was new", async () => {
      const { store, flow } = await storeWithFlow();
      const label = uniqueName("heard");
      const events: string[] = [];
      // A claimer woken by the listener looks at once: what it reads then must hold the run.
      let lookedThen: Promise<FlowRun[]> | undefined;
      const create = (idempotencyKey: string) =>
        store
          .createFlowRun({ flow, parameters: {}, labels: [label], idempotencyKey }, (created) => {
            events.push(`committed ${created}`);
            lookedThen ??= store.listFlowRuns({ label, limit: 10 });
          })
          .then((outcome) => (events.push("answered"), outcome));
      const first = await create("one");
      expect(events).toEqual(["committed true", "answered"]);
      expect((await lookedThen!).map((r) => r.id)).toEqual([first.flowRun.id]);
      await create("one");
      expect(events).toEqual(["committed true", "answered", "committed false", "answered"]);
    });

    it("lists runs newest first, filtered", async () => {
      const { store, flow, run } = await storeWithFlow();
      const a = await run();
      const b = await run();
      const c = await run();
      const other = await store.registerFlow(flowInput());
      const d = (await store.createFlowRun({ flow: other.flow, parameters: {}, labels: [] })).flowRun;
      expect((await store.listFlowRuns({})).map((r) => r.id)).toEqual([d.id, c.id, b.id, a.id]);
      expect((await store.listFlowRuns({ flowId: flow.id })).map((r) => r.id)).toEqual([c.id, b.id, a.id]);
      expect((await store.listFlowRuns({ flowName: other.flow.name })).map((r) => r.id)).toEqual([d.id]);
      expect((await store.listFlowRuns({ limit: 2 })).map((r) => r.id)).toEqual([d.id, c.id]);
      await store.setFlowRunState(b.id, { state: "Cancelled", expectedVersion: 0 });
      expect((await store.listFlowRuns({ state: "Cancelled" })).map((r) => r.id)).toEqual([b.id]);
      const [claimed] = await store.claimFlowRuns("agent-1", [], 1, LEASE_MS);
      expect((await store.listFlowRuns({ agentId: "agent-1" })).map((r) => r.id)).toEqual([claimed?.id]);
    });

    it("lists runs by label and creation time, and pages through them after a cursor run", async () => {
      const { store, flow } = await storeWithFlow();
      const make = async (labels: string[]) => (await store.createFlowRun({ flow, parameters: {}, labels })).flowRun;
      const runs: FlowRun[] = [];
      for (let i = 0; i < 7; i++) runs.push(await make(i % 2 === 0 ? ["etl", "gpu"] : ["etl"]));
      const ids = (list: { id: string }[]) => list.map((r) => r.id);
      const newestFirst = ids(runs).reverse();
      const mine = { flowId: flow.id };
      expect(ids(await store.listFlowRuns({ ...mine, label: "gpu" }))).toEqual(newestFirst.filter((_, i) => (6 - i) % 2 === 0));
      expect(await store.listFlowRuns({ ...mine, label: "nobody" })).toEqual([]);
      // Pages of three: every run once, in order, however many share a creation instant.
      const pages: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.listFlowRuns({ ...mine, limit: 3, ...(after ? { after } : {}) });
        pages.push(...ids(page));
        if (page.length < 3) break;
        after = page.at(-1)!.id;
      }
      expect(pages).toEqual(newestFirst);
      expect(await store.listFlowRuns({ ...mine, after: "no-such-run" })).toEqual([]);
      const created = runs.map((r) => r.createdAt);
      const since = created[3]!;
      expect(ids(await store.listFlowRuns({ ...mine, createdSince: since }))).toEqual(newestFirst.filter((id) => runs.find((r) => r.id === id)!.createdAt >= since));
      expect(ids(await store.listFlowRuns({ ...mine, createdBefore: since }))).toEqual(newestFirst.filter((id) => runs.find((r) => r.id === id)!.createdAt < since));
    });

    it("changes state by compare-and-swap and refuses a stale writer", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      const submitted = await store.setFlowRunState(r.id, { state: "Submitted", expectedVersion: 0, agentId: "agent-1" });
      expect(submitted).toMatchObject({ state: "Submitted", version: 1, agentId: "agent-1", startedAt: null });

      const stale = await rejection(store.setFlowRunState(r.id, { state: "Running", expectedVersion: 0 }));
      expect(isBerthError(stale, "BERTH_E_STALE_VERSION")).toBe(true);
      expect((stale as { details: unknown }).details).toEqual({ expected: 0, actual: 1 });
      expect((await store.getFlowRun(r.id))?.state).toBe("Submitted");

      const running = await store.setFlowRunState(r.id, { state: "Running", message: "started", expectedVersion: 1 });
      expect(running).toMatchObject({ state: "Running", stateMessage: "started", version: 2, agentId: "agent-1", endedAt: null });
      expect(running.startedAt).not.toBeNull();
      const done = await store.setFlowRunState(r.id, { state: "Success", expectedVersion: 2 });
      expect(done).toMatchObject({ state: "Success", version: 3, startedAt: running.startedAt, stateMessage: null });
      expect(done.endedAt).not.toBeNull();

      const missing = await rejection(store.setFlowRunState("no-such-run", { state: "Running", expectedVersion: 0 }));
      expect(isBerthError(missing, "BERTH_E_FLOW_RUN_NOT_FOUND")).toBe(true);
    });

    it("keeps every state of a run, oldest first, and nothing a refused writer sent", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      const [claimed] = await store.claimFlowRuns("agent-1", [], 1, LEASE_MS);
      expect(claimed?.id).toBe(r.id);
      await store.setFlowRunState(r.id, { state: "Running", message: "started", expectedVersion: 1 });
      await rejection(store.setFlowRunState(r.id, { state: "Failed", expectedVersion: 1 }));
      await store.setFlowRunState(r.id, { state: "Success", expectedVersion: 2 });
      const history = await store.listFlowRunStates(r.id);
      expect(history.map((h) => [h.state, h.version, h.message])).toEqual([
        ["Scheduled", 0, null],
        ["Submitted", 1, null],
        ["Running", 2, "started"],
        ["Success", 3, null],
      ]);
      expect(history[1]?.agentId).toBe("agent-1");
      expect(await store.listFlowRunStates("no-such-run")).toEqual([]);
    });

    it("forgets the agent when a run goes back to Scheduled", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      const [claimed] = await store.claimFlowRuns("agent-1", [], 1, LEASE_MS);
      expect(claimed?.id).toBe(r.id);
      const back = await store.setFlowRunState(r.id, { state: "Scheduled", expectedVersion: claimed?.version ?? -1 });
      expect(back).toMatchObject({ state: "Scheduled", agentId: null, version: 2 });
      expect((await store.claimFlowRuns("agent-2", [], 1, LEASE_MS)).map((x) => x.id)).toEqual([r.id]);
    });

    it("records run heartbeats without changing the version", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      const beat = await store.heartbeatFlowRun(r.id);
      expect(beat?.version).toBe(0);
      expect(beat?.lastHeartbeatAt).toEqual(expect.any(String));
      expect(await store.heartbeatFlowRun("no-such-run")).toBeUndefined();
    });

    it("claims oldest first, marking runs Submitted for the agent", async () => {
      const { store, run } = await storeWithFlow();
      const a = await run();
      const b = await run();
      const c = await run();
      const first = await store.claimFlowRuns("agent-1", [], 2, LEASE_MS);
      expect(first.map((r) => r.id)).toEqual([a.id, b.id]);
      for (const r of first) expect(r).toMatchObject({ state: "Submitted", agentId: "agent-1", version: 1 });
      expect((await store.claimFlowRuns("agent-2", [], 5, LEASE_MS)).map((r) => r.id)).toEqual([c.id]);
      expect(await store.claimFlowRuns("agent-2", [], 5, LEASE_MS)).toEqual([]);
      expect((await store.getFlowRun(a.id))?.agentId).toBe("agent-1");
    });

    it("claims only runs whose labels the agent satisfies (the rule of store/labels.ts)", async () => {
      const runLabelSets = [[], ["gpu"], ["gpu", "linux"], ["arm"], ["arm", "gpu"], ["linux"]];
      const agentLabelSets = [[], ["gpu"], ["gpu", "linux"], ["arm", "gpu", "linux"], ["cpu"]];
      for (const agentLabels of agentLabelSets) {
        const { store, run } = await storeWithFlow();
        const byId = new Map<string, string[]>();
        for (const labels of runLabelSets) byId.set((await run(labels)).id, labels);
        const claimed = await store.claimFlowRuns("agent", agentLabels, 100, LEASE_MS);
        const expected = [...byId].filter(([, labels]) => labelsMatch(labels, agentLabels)).map(([id]) => id);
        expect(claimed.map((r) => r.id).sort(), `agent [${agentLabels.join(",")}]`).toEqual(expected.sort());
      }
    });

    it("claims oldest first across the label sets an agent satisfies", async () => {
      const { store, run } = await storeWithFlow();
      const created = [];
      for (const labels of [["gpu", "linux"], ["linux"], ["gpu"], ["linux"], ["gpu", "linux"], ["arm"]]) created.push(await run(labels));
      const [r1, r2, r3, r4, r5] = created.map((r) => r.id);
      const claim = async () => (await store.claimFlowRuns("agent", ["gpu", "linux"], 2, LEASE_MS)).map((r) => r.id);
      expect(await claim()).toEqual([r1, r2]);
      expect(await claim()).toEqual([r3, r4]);
      expect(await claim()).toEqual([r5]);
      expect(await claim()).toEqual([]);
    });

    it("does not claim runs that are not Scheduled", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      await store.setFlowRunState(r.id, { state: "Cancelled", expectedVersion: 0 });
      expect(await store.claimFlowRuns("agent", [], 10, LEASE_MS)).toEqual([]);
    });

    // A quick check in one process, not the proof of exclusion: a synchronous store (better-sqlite3) runs each
    // claim to completion before the next starts, so these claims take turns and cannot overlap. They would
    // overlap for a store whose calls yield, such as one over PostgreSQL. The proof is the claim race
    // (claim-race.ts), which races claimers in separate processes on one database.
    it("hands each run out once to many claimers in one process", async () => {
      const { store, run } = await storeWithFlow(["gpu"]);
      const stores = options.openSibling ? [store, await sibling(store)] : [store];
      const ids = new Set<string>();
      for (let i = 0; i < 60; i++) ids.add((await run()).id);
      const claimer = async (n: number): Promise<FlowRun[]> => {
        const mine: FlowRun[] = [];
        const s = stores[n % stores.length] as StateStore;
        for (;;) {
          const got = await s.claimFlowRuns(`agent-${n}`, ["gpu", "linux"], 1 + (n % 3), LEASE_MS);
          if (got.length === 0) return mine;
          mine.push(...got);
        }
      };
      const results = await Promise.all(Array.from({ length: 16 }, (_, n) => claimer(n)));
      const claimed = results.flat().map((r) => r.id);
      expect(claimed).toHaveLength(ids.size);
      expect(new Set(claimed)).toEqual(ids);
    });

    it("claims for an agent with the labels stored for it, and for an agent not registered claims nothing", async () => {
      const { store, run } = await storeWithFlow(["gpu"]);
      const runs = [await run(), await run(["cpu"]), await run()];
      expect(await store.claimForAgent("nobody", 5, LEASE_MS)).toBeUndefined();
      expect((await store.getFlowRun(runs[0]!.id))?.state).toBe("Scheduled");
      const { agent } = await store.registerAgent({ name: "a1", labels: ["gpu"], concurrency: 2 });
      const first = await store.claimForAgent(agent.id, 5, LEASE_MS);
      expect(first?.agent).toEqual(await store.getAgent(agent.id));
      expect(first?.runs.map((r) => r.id)).toEqual([runs[0]!.id, runs[2]!.id]);
      expect(first?.runs[0]).toEqual(await store.getFlowRun(runs[0]!.id));
      expect(first?.runs[0]).toMatchObject({ state: "Submitted", agentId: agent.id, epoch: 1 });
      // Labels changed by registering again under the same name are the ones the next claim uses.
      await store.registerAgent({ name: "a1", labels: ["cpu"], concurrency: 2 });
      expect((await store.claimForAgent(agent.id, 5, LEASE_MS))?.runs.map((r) => r.id)).toEqual([runs[1]!.id]);
    });

    // A store guesses from its last claim that no limit is set and claims the short way: a limit another server
    // sets meanwhile must hold from the next claim on, and claims go the short way again once it is gone.
    if (options.openSibling) it("holds a limit another server set after this one's claims found none", async () => {
      const { store, run } = await storeWithFlow(["etl"]);
      const other = await sibling(store);
      const runs = [await run(), await run(), await run()];
      expect((await store.claimFlowRuns("agent-1", ["etl"], 1, LEASE_MS)).map((r) => r.id)).toEqual([runs[0]!.id]);
      await other.setConcurrencyLimit("etl", 1);
      const { agent } = await store.registerAgent({ name: "a1", labels: ["etl"], concurrency: 5 });
      expect((await store.claimForAgent(agent.id, 5, LEASE_MS))?.runs, "the limit's one slot is taken").toEqual([]);
      expect(await other.deleteConcurrencyLimit("etl")).toBe(true);
      expect((await store.claimFlowRuns("agent-1", ["etl"], 5, LEASE_MS)).map((r) => r.id)).toEqual([runs[1]!.id, runs[2]!.id]);
      expect((await store.claimFlowRuns("agent-1", ["etl"], 5, LEASE_MS)).map((r) => r.id)).toEqual([]);
    });

    it("appends logs in order and pages them with `after`", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      const other = await run();
      await store.appendLogs(r.id, [log("one"), log("two", "task-a")]);
      await store.appendLogs(other.id, [log("elsewhere")]);
      await store.appendLogs(r.id, [log("three")]);
      const all = await store.listLogs(r.id, 0, 100);
      expect(all.map((l) => l.message)).toEqual(["one", "two", "three"]);
      expect(all.map((l) => l.task)).toEqual([null, "task-a", null]);
      expect(all[0]).toMatchObject({ level: "info", at: expect.any(String) });
      const ids = all.map((l) => l.id);
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      expect((await store.listLogs(r.id, ids[0] ?? 0, 100)).map((l) => l.message)).toEqual(["two", "three"]);
      expect((await store.listLogs(r.id, 0, 2)).map((l) => l.message)).toEqual(["one", "two"]);
      expect(await store.listLogs(r.id, ids[2] ?? 0, 100)).toEqual([]);
      expect(isBerthError(await rejection(store.appendLogs("no-such-run", [log("x")])), "BERTH_E_FLOW_RUN_NOT_FOUND")).toBe(true);
    });

    it("stores a numbered log line once per attempt, however often it is sent", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      const [claimed] = await store.claimFlowRuns("agent-1", [], 1, LEASE_MS);
      const epoch = claimed!.epoch;
      const numbered = (message: string, seq: number): LogLine => ({ ...log(message), seq });
      await store.appendLogs(r.id, [numbered("one", 1), numbered("two", 2)], epoch);
      // The reply to that append was lost: the container sends both again, with the next line.
      await store.appendLogs(r.id, [numbered("one", 1), numbered("two", 2), numbered("three", 3)], epoch);
      // Lines without a number (sent by hand) are always stored.
      await store.appendLogs(r.id, [log("by hand"), log("by hand")]);
      expect((await store.listLogs(r.id, 0, 100)).map((l) => l.message)).toEqual(["one", "two", "three", "by hand", "by hand"]);
      // Another attempt numbers its lines from 1 again: they are its own.
      await store.setFlowRunState(r.id, { state: "Scheduled", expectedVersion: claimed!.version });
      const [again] = await store.claimFlowRuns("agent-1", [], 1, LEASE_MS);
      await store.appendLogs(r.id, [numbered("one, again", 1)], again!.epoch);
      expect((await store.listLogs(r.id, 0, 100)).map((l) => l.message)).toContain("one, again");
    });

    it("keeps build contexts by digest, and removes those no flow version names once they are old enough", async () => {
      let clock = Date.parse("2030-01-01T00:00:00.000Z");
      const store = await fresh(() => new Date(clock));
      const blob = (text: string) => Buffer.from(text.repeat(1000));
      const digest = (n: number) => n.toString(16).padStart(64, "0");
      expect(await store.putBuildContext(digest(1), blob("a"))).toEqual({ created: true });
      expect(await store.putBuildContext(digest(1), blob("a"))).toEqual({ created: false });
      expect(await store.buildContextSize(digest(1))).toBe(1000);
      expect((await store.getBuildContext(digest(1)))?.equals(blob("a"))).toBe(true);
      expect(await store.buildContextSize(digest(9))).toBeUndefined();
      expect(await store.getBuildContext(digest(9))).toBeUndefined();
      await store.putBuildContext(digest(2), blob("b"));
      const storage = (sha256: string) => ({ type: "docker" as const, image: "x:1", flows: {}, context: { sha256, size: 1000, berthBase: true } });
      await store.registerFlow(flowInput({ storage: storage(digest(2)) }));
      clock += 10_000;
      await store.putBuildContext(digest(3), blob("c"));
      // 1 is old and unused; 2 is old but a flow version needs it; 3 is unused but recent.
      expect(await store.deleteUnusedBuildContexts(new Date(clock - 5_000))).toEqual([digest(1)]);
      expect(await store.buildContextSize(digest(1))).toBeUndefined();
      expect(await store.buildContextSize(digest(2))).toBe(1000);
      expect(await store.buildContextSize(digest(3))).toBe(1000);
      expect(await store.deleteUnusedBuildContexts(new Date(clock + 1))).toEqual([digest(3)]);
    });

    it("upserts task runs by task slug", async () => {
      const { store, run } = await storeWithFlow();
      const r = await run();
      await store.upsertTaskRuns(r.id, [
        { taskSlug: "a", taskName: "A", state: "Running", attempt: 1 },
        { taskSlug: "b", taskName: "B", state: "Pending", attempt: 1 },
      ]);
      await store.upsertTaskRuns(r.id, [{ taskSlug: "a", taskName: "A", state: "Retrying", message: "boom", attempt: 2 }]);
      const runs = await store.listTaskRuns(r.id);
      expect(runs).toHaveLength(2);
      expect(runs.find((t) => t.taskSlug === "a")).toMatchObject({ state: "Retrying", message: "boom", attempt: 2 });
      expect(runs.find((t) => t.taskSlug === "b")).toMatchObject({ state: "Pending", message: null, updatedAt: expect.any(String) });
      expect(await store.listTaskRuns((await run()).id)).toEqual([]);
      const missing = await rejection(store.upsertTaskRuns("no-such-run", [{ taskSlug: "a", taskName: "A", state: "Running", attempt: 1 }]));
      expect(isBerthError(missing, "BERTH_E_FLOW_RUN_NOT_FOUND")).toBe(true);
    });

    it("keeps a flow version's placement constraints; a flow without them has none", async () => {
      const store = await fresh();
      const { flow } = await store.registerFlow(flowInput({ placement: ["node.labels.zone==a", "node.role!=manager"] }));
      expect((await store.getFlow(flow.id))?.placement).toEqual(["node.labels.zone==a", "node.role!=manager"]);
      const { flow: plain } = await store.registerFlow(flowInput());
      expect((await store.getFlow(plain.id))?.placement).toEqual([]);
    });

    it("registers agents and records their heartbeats", async () => {
      const store = await fresh();
      const { agent, created } = await store.registerAgent({ name: "a1", labels: ["gpu", "cpu"], concurrency: 2 });
      expect(created).toBe(true);
      expect(agent).toMatchObject({ name: "a1", labels: ["cpu", "gpu"], concurrency: 2, status: "online" });
      expect(await store.getAgent(agent.id)).toEqual(agent);
      const beat = await store.heartbeatAgent(agent.id, "unhealthy");
      expect(beat?.status).toBe("unhealthy");
      expect(Date.parse(beat?.lastHeartbeatAt ?? "")).toBeGreaterThanOrEqual(Date.parse(agent.lastHeartbeatAt));
      expect(await store.heartbeatAgent("no-such-agent", "online")).toBeUndefined();
      expect(await store.getAgent("no-such-agent")).toBeUndefined();
      const { agent: second } = await store.registerAgent({ name: "a2", labels: [], concurrency: 1 });
      expect((await store.listAgents()).map((a) => a.id)).toEqual([agent.id, second.id]);
    });

    it("keeps at most the limit of a run's log text: one truncation line, then nothing; duplicates cost nothing", async () => {
      const store = await fresh();
      const { flow } = await store.registerFlow(flowInput());
      const { flowRun } = await store.createFlowRun({ flow, parameters: {}, labels: [] });
      const line = (message: string, seq?: number) => ({ at: "2030-01-01T00:00:00.000Z", level: "info" as const, message, task: null, ...(seq ? { seq } : {}) });
      await store.appendLogs(flowRun.id, [line("a".repeat(40), 1), line("b".repeat(40), 2)], undefined, 100);
      // Sent again (a lost reply): stored once, counted once.
      await store.appendLogs(flowRun.id, [line("a".repeat(40), 1), line("b".repeat(40), 2), line("c".repeat(20), 3)], undefined, 100);
      await store.appendLogs(flowRun.id, [line("d".repeat(10), 4), line("e"), line("f")], undefined, 100);
      await store.appendLogs(flowRun.id, [line("g")], undefined, 100);
      const messages = (await store.listLogs(flowRun.id, 0, 100)).map((l) => l.message);
      expect(messages.slice(0, 3)).toEqual(["a".repeat(40), "b".repeat(40), "c".repeat(20)]);
      expect(messages.slice(3)).toEqual([expect.stringMatching(/^logs truncated: this run's logs reached the server's limit of 100 B \(server.runLogLimit\); later lines were dropped$/)]);
      // Without a limit (another server's setting), nothing is cut.
      const { flowRun: free } = await store.createFlowRun({ flow, parameters: {}, labels: [] });
      await store.appendLogs(free.id, [line("x".repeat(500))]);
      expect(await store.listLogs(free.id, 0, 10)).toHaveLength(1);
    });

    it("removes the logs of runs that ended before a time, each run once, oldest first", async () => {
      const clock = { ms: Date.parse("2030-01-01T00:00:00.000Z") };
      const store = await fresh(() => new Date(clock.ms));
      const { flow } = await store.registerFlow(flowInput());
      const ended: string[] = [];
      for (let i = 0; i < 3; i++) {
        const { flowRun } = await store.createFlowRun({ flow, parameters: {}, labels: [] });
        await store.appendLogs(flowRun.id, [{ at: new Date(clock.ms).toISOString(), level: "info", message: `line ${i}` }]);
        await store.setFlowRunState(flowRun.id, { state: "Cancelled", expectedVersion: flowRun.version });
        ended.push(flowRun.id);
        clock.ms += 60_000;
      }
      const { flowRun: live } = await store.createFlowRun({ flow, parameters: {}, labels: [] });
      await store.appendLogs(live.id, [{ at: new Date(clock.ms).toISOString(), level: "info", message: "still running" }]);
      // Ended before minute 2: the first two; one per call here.
      expect(await store.removeLogsOfRunsEndedBefore(new Date(Date.parse("2030-01-01T00:01:30.000Z")), 1)).toBe(1);
      expect(await store.listLogs(ended[0]!, 0, 10)).toEqual([]);
      expect(await store.listLogs(ended[1]!, 0, 10)).toHaveLength(1);
      expect(await store.removeLogsOfRunsEndedBefore(new Date(Date.parse("2030-01-01T00:01:30.000Z")), 10)).toBe(1);
      expect(await store.removeLogsOfRunsEndedBefore(new Date(Date.parse("2030-01-01T00:01:30.000Z")), 10)).toBe(0);
      expect(await store.listLogs(ended[2]!, 0, 10)).toHaveLength(1);
      expect(await store.listLogs(live.id, 0, 10)).toHaveLength(1);
    });

    it("keeps what an agent last said of its health, until it says something new", async () => {
      const store = await fresh();
      const { agent } = await store.registerAgent({ name: "healthy", labels: [], concurrency: 4 });
      expect(agent.health).toBeNull();
      const report = { slotsUsed: 3, diskFreeBytes: 12_345_678_901, reasons: ["free disk on /var/lib/docker is 1.2 GiB, under the low watermark of 2 GiB"] };
      const beat = await store.heartbeatAgent(agent.id, "online", report);
      expect(beat?.health).toEqual({ ...report, at: beat!.lastHeartbeatAt });
      // A heartbeat without a report (a claim's, an older agent's) leaves the last one as it was.
      await store.heartbeatAgent(agent.id, "online");
      expect((await store.getAgent(agent.id))?.health).toEqual({ ...report, at: beat!.lastHeartbeatAt });
      const healthy = await store.heartbeatAgent(agent.id, "online", { slotsUsed: 0, diskFreeBytes: null, reasons: [] });
      expect((await store.listAgents())[0]?.health).toEqual({ slotsUsed: 0, diskFreeBytes: null, reasons: [], at: healthy!.lastHeartbeatAt });
    });

    it("marks an agent waiting, and a claim's end clears only its own mark", async () => {
      const store = await fresh();
      const { agent } = await store.registerAgent({ name: "a1", labels: [], concurrency: 1 });
      expect(agent.waitingUntil).toBeNull();
      await store.markAgentWaiting(agent.id, "2030-01-01T00:00:20.000Z");
      expect((await store.getAgent(agent.id))?.waitingUntil).toBe("2030-01-01T00:00:20.000Z");
      // A second claim of the same agent parks meanwhile; the first one's end leaves its mark alone.
      await store.markAgentWaiting(agent.id, "2030-01-01T00:00:25.000Z");
      await store.clearAgentWaiting(agent.id, "2030-01-01T00:00:20.000Z");
      expect((await store.listAgents())[0]?.waitingUntil).toBe("2030-01-01T00:00:25.000Z");
      expect((await store.heartbeatAgent(agent.id, "online"))?.waitingUntil).toBe("2030-01-01T00:00:25.000Z");
      await store.clearAgentWaiting(agent.id, "2030-01-01T00:00:25.000Z");
      expect((await store.getAgent(agent.id))?.waitingUntil).toBeNull();
    });

    it("registers one flow from many writers at once: one version per content, numbered without gaps", async () => {
      const store = await fresh();
      const name = uniqueName();
      const same = await Promise.all(Array.from({ length: 5 }, () => store.registerFlow(flowInput({ name, contentHash: "same" }))));
      expect(same.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(same.map((r) => r.flow.id)).size).toBe(1);
      const different = await Promise.all(Array.from({ length: 5 }, (_, i) => store.registerFlow(flowInput({ name, contentHash: `h${i}` }))));
      expect(different.map((r) => r.flow.version).sort()).toEqual([2, 3, 4, 5, 6]);
    });

    it("keeps tokens by hash, with role, name and labels, and revokes them once", async () => {
      const store = await fresh();
      const agent = await store.createToken({ role: "agent", name: "gpu-1", labels: ["gpu", "a"], hash: "h-agent" });
      const admin = await store.createToken({ role: "admin", name: null, labels: null, hash: "h-admin" });
      expect(agent).toMatchObject({ role: "agent", name: "gpu-1", labels: ["a", "gpu"], hash: "h-agent", revokedAt: null });
      expect(await store.findToken("h-admin")).toEqual(admin);
      expect(await store.findToken("nope")).toBeUndefined();
      expect((await store.listTokens()).map((t) => t.id).sort()).toEqual([agent.id, admin.id].sort());
      expect(JSON.stringify(await store.listTokens())).not.toContain("h-agent");
      const revoked = await store.revokeToken(agent.id);
      expect(revoked?.revokedAt).toEqual(expect.any(String));
      expect((await store.revokeToken(agent.id))?.revokedAt).toBe(revoked?.revokedAt);
      expect((await store.findToken("h-agent"))?.revokedAt).toBe(revoked?.revokedAt);
      expect(await store.revokeToken("unknown")).toBeUndefined();
      await expect(store.createToken({ role: "admin", name: null, labels: null, hash: "h-admin" })).rejects.toThrow();
    });

    it("reads a token and an agent together, either of them missing", async () => {
      const store = await fresh();
      const token = await store.createToken({ role: "agent", name: "gpu-1", labels: ["gpu"], hash: "h-gpu" });
      const { agent } = await store.registerAgent({ name: "gpu-1", labels: ["gpu", "a100"], concurrency: 2 });
      expect(await store.findTokenAndAgent("h-gpu", agent.id)).toEqual({ token, agent });
      expect(await store.findTokenAndAgent("h-gpu", "no-such-agent")).toEqual({ token, agent: undefined });
      expect(await store.findTokenAndAgent("nope", agent.id)).toEqual({ token: undefined, agent });
      const revoked = await store.revokeToken(token.id);
      expect((await store.findTokenAndAgent("h-gpu", agent.id)).token?.revokedAt).toBe(revoked?.revokedAt);
    });

    it("keeps sealed secrets by name: set, replace, list, read some or all, delete", async () => {
      const store = await fresh();
      expect(await store.putSecret({ name: "B", sealed: "sealed-b" })).toEqual({ created: true });
      expect(await store.putSecret({ name: "A", sealed: "sealed-a1" })).toEqual({ created: true });
      expect(await store.putSecret({ name: "A", sealed: "sealed-a2" })).toEqual({ created: false });
      expect((await store.listSecrets()).map((s) => s.name)).toEqual(["A", "B"]);
      expect(JSON.stringify(await store.listSecrets())).not.toContain("sealed");
      expect(await store.getSecrets(["A", "missing"])).toEqual([{ name: "A", sealed: "sealed-a2" }]);
      expect(await store.getSecrets()).toEqual([
        { name: "A", sealed: "sealed-a2" },
        { name: "B", sealed: "sealed-b" },
      ]);
      expect(await store.deleteSecret("A")).toBe(true);
      expect(await store.deleteSecret("A")).toBe(false);
      expect((await store.listSecrets()).map((s) => s.name)).toEqual(["B"]);
    });

    leaseContract(fresh);
    orchestrationContract(fresh);

    it("closes idempotently", async () => {
      const store = await open();
      await store.close();
      await store.close();
    });

    // Only stores with a second handle on the same data (a file, a server) can show durability.
    if (options.openSibling) it("keeps an acknowledged write after the store is closed and reopened", async () => {
      const { store, flow, run } = await storeWithFlow();
      const r = await run();
      await store.setFlowRunState(r.id, { state: "Submitted", expectedVersion: 0, agentId: "agent-1" });
      await store.appendLogs(r.id, [log("kept")]);
      const reopened = await sibling(store);
      await store.close();
      expect(await reopened.getFlow(flow.id)).toEqual(flow);
      expect(await reopened.getFlowRun(r.id)).toMatchObject({ state: "Submitted", version: 1, agentId: "agent-1" });
      expect((await reopened.listLogs(r.id, 0, 10)).map((l) => l.message)).toEqual(["kept"]);
    });
  });
}

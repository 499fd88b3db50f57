import { afterEach, describe, expect, it, vi } from "vitest";
import { BerthError } from "../wire/errors.js";
import { Flow } from "../flows/flow.js";
import { ConcurrentExecutor } from "../flows/executors.js";
import { FlowRunner, type RunOptions } from "../flows/runner.js";
import type { TaskState } from "../flows/state.js";
import { task, type TaskContext } from "../flows/task.js";
import { TASK_TRIGGERS, triggerFailure, type TaskTrigger } from "../flows/triggers.js";

afterEach(() => {
  vi.useRealTimers();
});

/** Runs in-process with task logs kept off the console (failures are expected here). */
function run(flow: Flow, options: RunOptions = {}) {
  return new FlowRunner({ flow, hooks: { onLog: () => {} } }).run(options);
}

const ok = (name: string) => task(() => `${name} done`, { name });
const boom = (name: string) =>
  task(() => {
    throw new Error(`${name} broke`);
  }, { name });

/** A flow of `upstream` tasks, all upstream of one task named "t" with `trigger` that records whether it ran. */
function fanIn(upstream: ReturnType<typeof task>[], trigger: TaskTrigger | undefined) {
  const ran: string[] = [];
  const t = task(() => void ran.push("t"), trigger === undefined ? { name: "t" } : { name: "t", trigger });
  const flow = Flow.build(`fan-in-${trigger ?? "default"}`, (f) => {
    f.add(t, {}, { upstream: upstream.map((u) => f.add(u)) });
  });
  return { flow, ran };
}

describe("task triggers", () => {
  it("allSuccessful (the default) runs after successes and refuses after any failure, saying which", async () => {
    for (const trigger of [undefined, "allSuccessful"] as const) {
      const good = fanIn([ok("a"), ok("b")], trigger);
      expect((await run(good.flow)).taskStates.get("t")?.name).toBe("Success");
      expect(good.ran).toEqual(["t"]);
      const bad = fanIn([ok("a"), boom("b")], trigger);
      const state = await run(bad.flow);
      expect(bad.ran).toEqual([]);
      expect(state.taskStates.get("t")).toEqual({
        name: "TriggerFailed",
        message: 'trigger "allSuccessful": upstream tasks did not succeed: "b" (Failed)',
        attempt: 1,
      });
    }
  });

  it("allFinished runs whatever the upstream tasks ended in; a failed upstream's result is undefined", async () => {
    const seen: unknown[] = [];
    const cleanup = task(({ x }: { x?: unknown }) => void seen.push(x), { name: "cleanup", trigger: "allFinished", inputs: ["x?"] });
    for (const upstream of [ok("a"), boom("a")]) {
      const flow = Flow.build("finished", (f) => void f.add(cleanup, { x: f.add(upstream) }));
      expect((await run(flow)).taskStates.get("cleanup")?.name).toBe("Success");
    }
    expect(seen).toEqual(["a done", undefined]);
  });

  it("anyFailed runs when an upstream failed and refuses when none did, naming them", async () => {
    const failed = fanIn([ok("a"), boom("b")], "anyFailed");
    expect((await run(failed.flow)).taskStates.get("t")?.name).toBe("Success");
    expect(failed.ran).toEqual(["t"]);
    const fine = fanIn([ok("a"), ok("b")], "anyFailed");
    const state = await run(fine.flow);
    expect(fine.ran).toEqual([]);
    expect(state.taskStates.get("t")).toEqual({
      name: "TriggerFailed",
      message: 'trigger "anyFailed": no upstream task failed: "a" (Success), "b" (Success)',
      attempt: 1,
    });
  });

  it("counts a TriggerFailed upstream as failed", async () => {
    const ran: string[] = [];
    const notify = task(() => void ran.push("notify"), { name: "notify", trigger: "anyFailed" });
    const blocked = task(() => void ran.push("blocked"), { name: "blocked" });
    const flow = new Flow("trigger-failed-upstream");
    blocked.setUpstream(boom("root"), { flow });
    notify.setUpstream(blocked, { flow });
    const state = await run(flow);
    expect(state.taskStates.get("blocked")?.name).toBe("TriggerFailed");
    expect(state.taskStates.get("notify")?.name).toBe("Success");
    expect(ran).toEqual(["notify"]);
  });

  it("counts a TimedOut upstream as failed", async () => {
    vi.useFakeTimers();
    const hang = task((_: object, ctx: TaskContext) => new Promise((resolve) => ctx.signal.addEventListener("abort", resolve)), {
      name: "hang",
      timeout: 1000,
    });
    const { flow, ran } = fanIn([hang], "anyFailed");
    const done = run(flow);
    await vi.advanceTimersByTimeAsync(1000);
    const state = await done;
    expect(state.taskStates.get("hang")?.name).toBe("TimedOut");
    expect(state.taskStates.get("t")?.name).toBe("Success");
    expect(ran).toEqual(["t"]);
  });

  it("judges a retried upstream by its last attempt, not by a Retrying one", async () => {
    vi.useFakeTimers();
    const events: string[] = [];
    const flaky = task(
      (_: object, ctx: TaskContext) => {
        events.push(`flaky ${ctx.attempt}`);
        throw new Error(`attempt ${ctx.attempt}`);
      },
      { name: "flaky", maxRetries: 2, retryDelay: 1000 },
    );
    const recover = task(() => void events.push("recover"), { name: "recover", trigger: "anyFailed" });
    // Free slots while the retry waits: nothing but the trigger's rule holds "recover" back.
    const executor = new ConcurrentExecutor({ maxConcurrency: 4 });
    const failing = run(Flow.build("retried", (f) => void f.add(recover, {}, { upstream: [f.add(flaky)] })), { executor });
    await vi.advanceTimersByTimeAsync(2000);
    const state = await failing;
    expect(events).toEqual(["flaky 1", "flaky 2", "flaky 3", "recover"]);
    expect(state.taskStates.get("flaky")).toMatchObject({ name: "Failed", attempt: 3 });
    expect(state.taskStates.get("recover")?.name).toBe("Success");
    // A retry that ends in success is a success: anyFailed refuses.
    const flakyOk = task((_: object, ctx: TaskContext) => {
      if (ctx.attempt < 2) throw new Error("first attempt");
      return ctx.attempt;
    }, { name: "flaky", maxRetries: 1, retryDelay: 1000 });
    const recovering = run(Flow.build("retried-ok", (f) => void f.add(recover, {}, { upstream: [f.add(flakyOk)] })), { executor });
    await vi.advanceTimersByTimeAsync(1000);
    const recovered = await recovering;
    expect(recovered.taskStates.get("recover")?.message).toBe('trigger "anyFailed": no upstream task failed: "flaky" (Success)');
  });

  it("anySuccessful runs when one upstream succeeded and refuses when none did", async () => {
    const one = fanIn([boom("a"), ok("b")], "anySuccessful");
    expect((await run(one.flow)).taskStates.get("t")?.name).toBe("Success");
    const none = fanIn([boom("a"), boom("b")], "anySuccessful");
    const state = await run(none.flow);
    expect(none.ran).toEqual([]);
    expect(state.taskStates.get("t")?.message).toBe('trigger "anySuccessful": no upstream task succeeded: "a" (Failed), "b" (Failed)');
  });

  it("allFailed runs only when every upstream failed, naming those that did not", async () => {
    const all = fanIn([boom("a"), boom("b")], "allFailed");
    expect((await run(all.flow)).taskStates.get("t")?.name).toBe("Success");
    expect(all.ran).toEqual(["t"]);
    const some = fanIn([boom("a"), ok("b"), boom("c")], "allFailed");
    const state = await run(some.flow);
    expect(some.ran).toEqual([]);
    expect(state.taskStates.get("t")?.message).toBe('trigger "allFailed": upstream tasks did not fail: "b" (Success)');
  });

  it("runs a task with no upstream whatever its trigger", async () => {
    for (const trigger of TASK_TRIGGERS) {
      const { flow, ran } = fanIn([], trigger);
      expect((await run(flow)).name, trigger).toBe("Success");
      expect(ran, trigger).toEqual(["t"]);
    }
  });

  it("bounds the TriggerFailed message: five tasks named, then a count", async () => {
    const { flow } = fanIn(["a", "b", "c", "d", "e", "f", "g"].map(ok), "anyFailed");
    expect((await run(flow)).taskStates.get("t")?.message).toBe(
      'trigger "anyFailed": no upstream task failed: "a" (Success), "b" (Success), "c" (Success), "d" (Success), "e" (Success) and 2 more',
    );
  });

  it("counts a Cancelled upstream as finished, neither success nor failure (Prefect 1's Cancelled)", () => {
    const nodes = [{ slug: "ok" }, { slug: "bad" }, { slug: "gone" }];
    const states: TaskState[] = [
      { name: "Success", attempt: 1 },
      { name: "Failed", attempt: 1 },
      { name: "Cancelled", attempt: 1 },
    ];
    const verdict = (trigger: TaskTrigger, upstream: number[]) => triggerFailure(trigger, upstream, states, nodes);
    expect(verdict("allFinished", [2])).toBeUndefined();
    expect(verdict("allSuccessful", [0, 2])).toBe('trigger "allSuccessful": upstream tasks did not succeed: "gone" (Cancelled)');
    expect(verdict("anySuccessful", [2])).toBe('trigger "anySuccessful": no upstream task succeeded: "gone" (Cancelled)');
    expect(verdict("anySuccessful", [0, 2])).toBeUndefined();
    expect(verdict("anyFailed", [0, 2])).toBe('trigger "anyFailed": no upstream task failed: "ok" (Success), "gone" (Cancelled)');
    expect(verdict("anyFailed", [1, 2])).toBeUndefined();
    expect(verdict("allFailed", [1, 2])).toBe('trigger "allFailed": upstream tasks did not fail: "gone" (Cancelled)');
  });

  it("refuses an unknown trigger when the task is defined, naming the task and the allowed triggers", () => {
    for (const [given, shown] of [
      ["all_successful", '"all_successful"'],
      [() => true, "of type function"],
    ] as const) {
      let caught: unknown;
      try {
        task(() => 1, { name: "picky", trigger: given as unknown as TaskTrigger });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(BerthError);
      expect((caught as BerthError).code).toBe("BERTH_E_FLOW_DEFINITION");
      expect((caught as BerthError).message).toBe(
        `task "picky": unknown trigger ${shown} (allowed: "allSuccessful", "allFinished", "anyFailed", "anySuccessful", "allFailed")`,
      );
    }
  });

  it("keeps the trigger on a copy, as the builder makes when a task is added twice", async () => {
    const notify = task(() => "notified", { name: "notify", trigger: "anyFailed" });
    expect(notify.copy().trigger).toBe("anyFailed");
    const flow = Flow.build("copies", (f) => {
      f.add(notify, {}, { upstream: [f.add(ok("a"))] });
      f.add(notify, {}, { upstream: [f.add(boom("b"))] });
    });
    expect(flow.nodes.map((n) => n.slug)).toEqual(["a", "notify", "b", "notify-2"]);
    const state = await run(flow);
    expect(state.taskStates.get("notify")?.name).toBe("TriggerFailed");
    expect(state.taskStates.get("notify-2")).toMatchObject({ name: "Success", result: "notified" });
  });

  it("leaves the flow's state to its reference tasks: a terminal allFinished cleanup that succeeds makes it Success", async () => {
    const work = boom("work");
    const cleanup = task(() => "cleaned", { name: "cleanup", trigger: "allFinished" });
    const build = (options = {}) => {
      const flow = new Flow("cleanup", options);
      cleanup.setUpstream(work, { flow });
      return flow;
    };
    const state = await run(build());
    expect(state.taskStates.get("work")?.name).toBe("Failed");
    expect(state.taskStates.get("cleanup")).toMatchObject({ name: "Success", result: "cleaned" });
    expect(state).toMatchObject({ name: "Success", message: "All reference tasks succeeded." });
    // Prefect 1's remedy: make the work a reference task, and the flow fails with it.
    const referenced = await run(build({ referenceTasks: [work, cleanup] }));
    expect(referenced.name).toBe("Failed");
    expect(referenced.message).toBe('Task "work" failed: work broke');
  });
});

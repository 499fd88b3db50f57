import { afterEach, describe, expect, it, vi } from "vitest";
import { currentTask } from "../flows/context.js";
import { Flow } from "../flows/flow.js";
import { FlowRunner } from "../flows/runner.js";
import { isFailed, isFinal } from "../flows/state.js";
import { task, type TaskContext } from "../flows/task.js";
import type { LogRecord } from "../shared/logging.js";
import { seedFlow } from "./support/seed-flow.js";

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("FlowRunner", () => {
  it("runs the seed example and passes \"Example!\" downstream", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const state = await seedFlow().run();
    expect(state.name).toBe("Success");
    expect(log).toHaveBeenCalledWith("Example!");
    expect(state.taskStates.get("get_value")).toEqual({ name: "Success", result: "Example!", attempt: 1 });
    expect(state.taskStates.get("output_value")?.name).toBe("Success");
  });

  it("passes results and constants through a functional flow, sync and async", async () => {
    const one = task(() => 1, { name: "one" });
    const add = task(async ({ a, b }: { a: number; b: number }) => a + b, { name: "add" });
    const mul = task(({ a, b }: { a: number; b: number }) => a * b, { name: "mul" });
    const flow = Flow.build("math", (f) => {
      const x = f.add(one);
      const y = f.add(add, { a: x, b: 41 });
      f.add(mul, { a: y, b: y });
    });
    const state = await flow.run();
    expect(state.name).toBe("Success");
    expect(state.taskStates.get("add")?.result).toBe(42);
    expect(state.taskStates.get("mul")?.result).toBe(1764);
  });

  it("gives each attempt a context and runs it as the current task", async () => {
    const seen: unknown[] = [];
    const t = task(
      async (_: object, ctx: TaskContext) => {
        await Promise.resolve();
        seen.push({ ...currentTask()! }, ctx.taskName, ctx.taskSlug, ctx.attempt, ctx.signal.aborted);
      },
      { name: "ctx" },
    );
    const flow = Flow.build("ctx", (f) => void f.add(t));
    await flow.run();
    expect(seen).toEqual([expect.objectContaining({ slug: "ctx", name: "ctx", attempt: 1 }), "ctx", "ctx", 1, false]);
    expect(currentTask()).toBeUndefined();
  });

  it("retries after retryDelay with counted attempts, then succeeds", async () => {
    vi.useFakeTimers();
    const attempts: number[] = [];
    const flaky = task(
      (_: object, ctx: TaskContext) => {
        attempts.push(ctx.attempt);
        if (ctx.attempt < 3) throw new Error(`boom ${ctx.attempt}`);
        return "ok";
      },
      { name: "flaky", maxRetries: 2, retryDelay: 1000 },
    );
    const events: string[] = [];
    const flow = Flow.build("retries", (f) => void f.add(flaky));
    const done = new FlowRunner({
      flow,
      hooks: { onTaskState: (t, s) => events.push(`${t.slug}:${s.name}:${s.attempt}${s.message ? `:${s.message}` : ""}`) },
    }).run();
    await vi.advanceTimersByTimeAsync(999);
    expect(attempts).toEqual([1]);
    await vi.advanceTimersByTimeAsync(1);
    expect(attempts).toEqual([1, 2]);
    await vi.advanceTimersByTimeAsync(1000);
    const state = await done;
    expect(attempts).toEqual([1, 2, 3]);
    expect(state.name).toBe("Success");
    expect(state.taskStates.get("flaky")).toEqual({ name: "Success", result: "ok", attempt: 3 });
    expect(events).toEqual([
      "flaky:Running:1",
      "flaky:Retrying:1:boom 1",
      "flaky:Running:2",
      "flaky:Retrying:2:boom 2",
      "flaky:Running:3",
      "flaky:Success:3",
    ]);
  });

  it("ends Failed with the error's message once retries are used up (async rejection too)", async () => {
    let calls = 0;
    const bad = task(
      async () => {
        calls++;
        throw new Error("always");
      },
      { name: "bad", maxRetries: 1 },
    );
    const state = await Flow.build("fails", (f) => void f.add(bad)).run();
    expect(calls).toBe(2);
    expect(state.name).toBe("Failed");
    const s = state.taskStates.get("bad")!;
    expect(s).toMatchObject({ name: "Failed", message: "always", attempt: 2 });
    expect(s.error).toBeInstanceOf(Error);
    expect(state.message).toBe('Task "bad" failed: always');
  });

  it("ends a slow attempt TimedOut and aborts its signal", async () => {
    let aborted = false;
    const slow = task(
      (_: object, ctx: TaskContext) =>
        new Promise((resolve) => {
          ctx.signal.addEventListener("abort", () => (aborted = true));
          setTimeout(resolve, 5_000).unref();
        }),
      { name: "slow", timeout: 20 },
    );
    const state = await Flow.build("timeout", (f) => void f.add(slow)).run();
    expect(aborted).toBe(true);
    expect(state.name).toBe("Failed");
    expect(state.taskStates.get("slow")).toMatchObject({ name: "TimedOut", attempt: 1 });
    expect(state.taskStates.get("slow")?.message).toContain("timed out after 20 ms");
    expect(isFailed(state.taskStates.get("slow")!)).toBe(true);
  });

  it("names the first task that failed, with its error, not the downstream tasks it kept from running", async () => {
    const records: LogRecord[] = [];
    const boom = task(() => {
      throw new Error("boom-7");
    });
    const after = task(({ value }: { value: unknown }) => value);
    const flow = new Flow("Failing Flow");
    after.setUpstream(boom, { flow });
    after.bind({ value: boom }, { flow });
    const state = await new FlowRunner({ flow, hooks: { onLog: (r) => void records.push(r) } }).run();
    expect(state.name).toBe("Failed");
    // Anonymous tasks are known by their position in the flow.
    expect([...state.taskStates.keys()]).toEqual(["task-1", "task-2"]);
    expect(state.message).toBe('Task "task-1" failed: boom-7; reference tasks that did not succeed: "task-2" (TriggerFailed)');
    const errors = records.filter((r) => r.level === "error");
    expect(errors).toHaveLength(1);
    expect(errors[0]!.fields).toMatchObject({ task: "task-1" });
    expect(errors[0]!.message).toMatch(/^Task "task-1" failed: boom-7\n\s+at /);
  });

  it("logs every failed attempt: a warning while retries remain, an error at the end", async () => {
    const records: LogRecord[] = [];
    let n = 0;
    const flaky = task(
      () => {
        throw new Error(`attempt ${++n}`);
      },
      { name: "flaky", maxRetries: 1 },
    );
    const flow = Flow.build("retries", (f) => void f.add(flaky));
    await new FlowRunner({ flow, hooks: { onLog: (r) => void records.push(r) } }).run();
    expect(records.map((r) => [r.level, r.message.split("\n")[0], r.fields.task])).toEqual([
      ["warn", 'Task "flaky" failed (attempt 1 of 2); retrying: attempt 1', "flaky"],
      ["error", 'Task "flaky" failed (attempt 2 of 2): attempt 2', "flaky"],
    ]);
  });

  it("ends downstream tasks TriggerFailed without running them", async () => {
    const ran: string[] = [];
    const fail = task(() => {
      throw new Error("nope");
    }, { name: "fail" });
    const after = task(({ x }: { x: unknown }) => ran.push(`after ${String(x)}`), { name: "after" });
    const further = task(() => ran.push("further"), { name: "further" });
    const independent = task(() => ran.push("independent"), { name: "independent" });
    const flow = Flow.build("trigger", (f) => {
      const a = f.add(after, { x: f.add(fail) });
      f.add(further, {}, { upstream: [a] });
      f.add(independent);
    });
    const state = await flow.run();
    expect(ran).toEqual(["independent"]);
    expect(state.taskStates.get("after")).toMatchObject({ name: "TriggerFailed" });
    expect(state.taskStates.get("after")?.message).toContain('"fail" (Failed)');
    expect(state.taskStates.get("further")?.message).toContain('"after" (TriggerFailed)');
    expect(state.name).toBe("Failed");
    expect([...state.taskStates.values()].every(isFinal)).toBe(true);
  });

  it("decides the flow's state by its reference tasks", async () => {
    const fail = task(() => {
      throw new Error("side effect failed");
    }, { name: "fail" });
    const ok = task(() => 1, { name: "ok" });
    const build = (reference?: "ok" | "fail") => {
      const flow = new Flow("ref");
      flow.addTask(fail);
      flow.addTask(ok);
      if (reference) flow.setReferenceTasks([reference === "ok" ? ok : fail]);
      return flow;
    };
    expect((await build().run()).name).toBe("Failed");
    expect((await build("ok").run()).name).toBe("Success");
    expect((await build("fail").run()).name).toBe("Failed");
    const viaOption = new Flow("opt", { referenceTasks: [ok] });
    viaOption.addTask(fail);
    viaOption.addTask(ok);
    const state = await viaOption.run();
    expect(state.name).toBe("Success");
    expect(state.taskStates.get("fail")?.name).toBe("Failed");
  });
});

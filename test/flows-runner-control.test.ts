import { afterEach, describe, expect, it, vi } from "vitest";
import { Flow } from "../flows/flow.js";
import { setLogSink, type LogRecord } from "../shared/logging.js";
import { FlowRunner } from "../flows/runner.js";
import type { TaskState } from "../flows/state.js";
import { Parameter, task, type TaskContext } from "../flows/task.js";
import { seedFlow } from "./support/seed-flow.js";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("FlowRunner: parameters, cancellation, hooks", () => {
  it("takes parameters: defaults, given values, and refuses missing or unknown ones before running", async () => {
    const ran: unknown[] = [];
    const show = task(({ greeting, name }: { greeting: string; name: string }) => ran.push(`${greeting} ${name}`), { name: "show" });
    const flow = Flow.build("params", (f) => {
      f.add(show, { greeting: Parameter("greeting", { default: "hello" }), name: Parameter("name") });
    });
    const ok = await flow.run({ parameters: { name: "berth" } });
    expect(ok.name).toBe("Success");
    expect(ok.taskStates.get("greeting")).toMatchObject({ name: "Success", result: "hello" });
    expect(ran).toEqual(["hello berth"]);

    const missing = await flow.run();
    expect(missing.name).toBe("Failed");
    expect(missing.message).toContain('required parameter "name"');
    const unknown = await flow.run({ parameters: { name: "x", colour: "red" } });
    expect(unknown.name).toBe("Failed");
    expect(unknown.message).toContain('unknown parameter "colour"');
    expect(ran).toEqual(["hello berth"]);
  });

  it("ends Failed before running when the flow does not validate", async () => {
    const flow = new Flow("invalid");
    const ran = vi.fn();
    flow.addTask(task(({ a }: { a: number }) => ran(a), { name: "needs" }));
    const state = await flow.run();
    expect(state.name).toBe("Failed");
    expect(state.message).toContain('task "needs" needs input "a"');
    expect(ran).not.toHaveBeenCalled();
  });

  it("cancels on abort: unfinished tasks and the flow end Cancelled", async () => {
    const controller = new AbortController();
    let sawAbort = false;
    const first = task(() => "done", { name: "first" });
    const hang = task(
      (_: object, ctx: TaskContext) =>
        new Promise(() => {
          ctx.signal.addEventListener("abort", () => (sawAbort = true));
          queueMicrotask(() => controller.abort(new Error("user asked")));
        }),
      { name: "hang" },
    );
    const never = task(() => "never", { name: "never" });
    const flow = Flow.build("cancel", (f) => {
      const h = f.add(hang, {}, { upstream: [f.add(first)] });
      f.add(never, {}, { upstream: [h] });
    });
    const flowStates: string[] = [];
    const state = await new FlowRunner({ flow, hooks: { onFlowState: (s) => void flowStates.push(s) } }).run({
      signal: controller.signal,
    });
    expect(sawAbort).toBe(true);
    expect(state.name).toBe("Cancelled");
    expect(state.message).toContain("user asked");
    expect(state.taskStates.get("first")?.name).toBe("Success");
    expect(state.taskStates.get("hang")?.name).toBe("Cancelled");
    expect(state.taskStates.get("never")?.name).toBe("Cancelled");
    expect(flowStates).toEqual(["Running", "Cancelled"]);
  });

  it("is Cancelled at once for an already aborted signal", async () => {
    const ran = vi.fn();
    const flow = Flow.build("pre", (f) => void f.add(task(() => ran(), { name: "t" })));
    const state = await flow.run({ signal: AbortSignal.abort() });
    expect(state.name).toBe("Cancelled");
    expect(ran).not.toHaveBeenCalled();
    expect(state.taskStates.get("t")?.name).toBe("Cancelled");
  });

  it("reports flow states in order and task states through hooks", async () => {
    const calls: string[] = [];
    const flow = seedFlow();
    vi.spyOn(console, "log").mockImplementation(() => {});
    await new FlowRunner({
      flow,
      hooks: {
        onFlowState: async (s) => {
          await Promise.resolve();
          calls.push(`flow:${s}`);
        },
        onTaskState: (t: { slug: string }, s: TaskState) => calls.push(`${t.slug}:${s.name}`),
      },
    }).run();
    expect(calls).toEqual([
      "flow:Running",
      "get_value:Running",
      "get_value:Success",
      "output_value:Running",
      "output_value:Success",
      "flow:Success",
    ]);
  });

  it("rejects the run when a task-state hook throws, instead of pretending to report", async () => {
    const flow = Flow.build("hook", (f) => void f.add(task(() => 1, { name: "t" })));
    const failing = new FlowRunner({
      flow,
      hooks: {
        onTaskState: () => {
          throw new Error("server gone");
        },
      },
    });
    await expect(failing.run()).rejects.toThrow("server gone");
  });

  it("routes task logger records to onLog when given, else to the sink", async () => {
    const t = task((_: object, ctx: TaskContext) => ctx.logger.info({ n: 1 }, "hello"), { name: "logs" });
    const flow = Flow.build("logs", (f) => void f.add(t));
    const hooked: LogRecord[] = [];
    await new FlowRunner({ flow, hooks: { onLog: (r) => hooked.push(r) } }).run();
    expect(hooked).toEqual([expect.objectContaining({ level: "info", message: "hello", fields: { task: "logs", attempt: 1, n: 1 } })]);
    const sunk: LogRecord[] = [];
    const previous = setLogSink((r) => sunk.push(r));
    try {
      await flow.run();
    } finally {
      setLogSink(previous);
    }
    expect(sunk.map((r) => r.message)).toEqual(["hello"]);
  });

  it("never leaks a user's throw or rejection as unhandled", async () => {
    const unhandled = vi.fn();
    process.on("unhandledRejection", unhandled);
    try {
      const flow = Flow.build("leaks", (f) => {
        f.add(task(() => Promise.reject(new Error("a")), { name: "rejects" }));
        f.add(task(() => { throw "a string"; }, { name: "throws" }));
        f.add(task(() => new Promise((_, reject) => setTimeout(() => reject(new Error("late")), 30)), { name: "late", timeout: 5 }));
      });
      const state = await flow.run();
      expect(state.taskStates.get("throws")).toMatchObject({ name: "Failed", message: "a string" });
      await new Promise((r) => setTimeout(r, 60));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off("unhandledRejection", unhandled);
    }
  });

  it("runs a 5,000-long chain without growing the stack, sync and async", async () => {
    const steps: ((inputs: { x: number }) => number | Promise<number>)[] = [({ x }) => x + 1, async ({ x }) => x + 1];
    for (const fn of steps) {
      const step = task(fn, { name: "step" });
      let last = "";
      const flow = Flow.build("chain", (f) => {
        let prev = f.add(task(() => 0, { name: "zero" }));
        for (let i = 0; i < 5000; i++) prev = f.add(step, { x: prev });
        last = f.flow.slugOf(prev)!;
      });
      const state = await flow.run();
      expect(state.taskStates.get(last)?.result).toBe(5000);
    }
  });
});

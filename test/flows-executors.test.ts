import { afterEach, describe, expect, it } from "vitest";
import { BerthError } from "../wire/errors.js";
import { getDefaultExecutorClass, getDefaultFlowRunnerClass, setDefaultExecutorClass, setDefaultFlowRunnerClass } from "../flows/defaults.js";
import { ConcurrentExecutor, LocalExecutor } from "../flows/executors.js";
import { Flow } from "../flows/flow.js";
import { FlowRunner } from "../flows/runner.js";
import { task } from "../flows/task.js";

afterEach(() => {
  setDefaultExecutorClass(LocalExecutor);
  setDefaultFlowRunnerClass(FlowRunner);
});

/** A flow of `width` independent async tasks that record how many run at once. */
function wideFlow(width: number): { flow: Flow; maxInFlight: () => number; order: string[] } {
  let inFlight = 0;
  let max = 0;
  const order: string[] = [];
  const work = task(
    async ({ i }: { i: number }) => {
      inFlight++;
      max = Math.max(max, inFlight);
      order.push(`start ${i}`);
      // Each task waits for a later macrotask, so overlapping tasks really are in flight together.
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
      order.push(`end ${i}`);
      inFlight--;
      return i;
    },
    { name: "work" },
  );
  const flow = Flow.build("wide", (f) => {
    for (let i = 0; i < width; i++) f.add(work, { i });
  });
  return { flow, maxInFlight: () => max, order };
}

describe("executors", () => {
  it("LocalExecutor runs one task at a time", async () => {
    const { flow, maxInFlight, order } = wideFlow(4);
    const state = await flow.run({ executor: new LocalExecutor() });
    expect(state.name).toBe("Success");
    expect(maxInFlight()).toBe(1);
    expect(order.slice(0, 4)).toEqual(["start 0", "end 0", "start 1", "end 1"]);
  });

  it("ConcurrentExecutor overlaps tasks up to maxConcurrency and no further", async () => {
    const { flow, maxInFlight } = wideFlow(12);
    const state = await flow.run({ executor: new ConcurrentExecutor({ maxConcurrency: 3 }) });
    expect(state.name).toBe("Success");
    expect(maxInFlight()).toBe(3);
    expect([...state.taskStates.values()].map((s) => s.result)).toEqual([...Array(12).keys()]);
  });

  it("ConcurrentExecutor keeps dependencies in order", async () => {
    const seen: string[] = [];
    const step = task(async ({ label, after = undefined }: { label: string; after?: unknown }) => {
      await new Promise((r) => setTimeout(r, 2));
      seen.push(label);
      return after;
    }, { name: "step" });
    const flow = Flow.build("deps", (f) => {
      const a = f.add(step, { label: "a" });
      const b = f.add(step, { label: "b", after: a });
      const c = f.add(step, { label: "c" });
      f.add(step, { label: "d", after: b }, { upstream: [c] });
    });
    const state = await flow.run({ executor: new ConcurrentExecutor() });
    expect(state.name).toBe("Success");
    expect(seen.indexOf("a")).toBeLessThan(seen.indexOf("b"));
    expect(seen.indexOf("b")).toBeLessThan(seen.indexOf("d"));
    expect(seen.indexOf("c")).toBeLessThan(seen.indexOf("d"));
  });

  it("refuses a bad maxConcurrency", () => {
    expect(() => new ConcurrentExecutor({ maxConcurrency: 0 })).toThrow(BerthError);
    expect(() => new ConcurrentExecutor({ maxConcurrency: 1.5 })).toThrow(/whole number/);
    expect(new ConcurrentExecutor({ maxConcurrency: Infinity }).maxConcurrency).toBe(Infinity);
    expect(new ConcurrentExecutor().maxConcurrency).toBe(8);
  });

  it("flow.run uses the configured default runner and executor classes", async () => {
    expect(getDefaultFlowRunnerClass()).toBe(FlowRunner);
    expect(getDefaultExecutorClass()).toBe(LocalExecutor);
    const used: string[] = [];
    class TracingRunner extends FlowRunner {
      override run(options: Parameters<FlowRunner["run"]>[0] = {}) {
        used.push(`runner with ${options.executor?.constructor.name}`);
        return super.run(options);
      }
    }
    setDefaultFlowRunnerClass(TracingRunner);
    setDefaultExecutorClass(ConcurrentExecutor);
    const { flow, maxInFlight } = wideFlow(10);
    await flow.run();
    expect(used).toEqual(["runner with ConcurrentExecutor"]);
    expect(maxInFlight()).toBe(8);
  });
});

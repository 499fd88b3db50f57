import { describe, expect, it } from "vitest";
import { buildBenchDag, runEngineBench } from "../bench/engine.js";
import { ConcurrentExecutor } from "../flows/executors.js";

describe("the 10k-task engine DAG", () => {
  it("computes every task's value", async () => {
    const dag = buildBenchDag(10_000);
    expect(dag.flow.nodes).toHaveLength(10_001);
    expect(dag.fanOutSlugs).toHaveLength(5_000);
    const state = await dag.flow.run();
    expect(state.name).toBe("Success");
    expect(state.taskStates.size).toBe(10_001);
    expect(state.taskStates.get("root")?.result).toBe(1);
    expect(state.taskStates.get(dag.chainEndSlug)?.result).toBe(5001);
    expect(dag.fanOutSlugs.every((slug) => state.taskStates.get(slug)?.result === 2)).toBe(true);
    // Fan-out and chain tasks are terminal or not as built: only the chain end and the fan-out are references.
    expect(dag.flow.referenceIndices()).toHaveLength(5_001);
  });

  it("gives the same results with a ConcurrentExecutor", async () => {
    const dag = buildBenchDag(2_000);
    const state = await dag.flow.run({ executor: new ConcurrentExecutor({ maxConcurrency: 4 }) });
    expect(state.taskStates.get(dag.chainEndSlug)?.result).toBe(1001);
  });

  it("the bench measures each phase and reports what it measured", async () => {
    const result = await runEngineBench({ n: 1_000, repetitions: 3 });
    expect(result).toMatchObject({ tasks: 1_001, repetitions: 3 });
    // Building and running a thousand tasks takes measurable time; a bench that timed nothing reports zero.
    for (const phase of [result.buildMs, result.runMs, result.totalMs]) {
      expect(phase.min).toBeGreaterThan(0);
      expect(Number.isFinite(phase.median)).toBe(true);
    }
    expect(result.totalMs.min).toBeGreaterThanOrEqual(result.runMs.min);
    expect(result.report).toBe(
      `1001 tasks × 3: build min ${result.buildMs.min} ms, median ${result.buildMs.median} ms; ` +
        `run min ${result.runMs.min} ms, median ${result.runMs.median} ms; ` +
        `build + run min ${result.totalMs.min} ms, median ${result.totalMs.median} ms`,
    );
  });
});

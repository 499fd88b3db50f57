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

  it("the bench reports build and run timings", async () => {
    const result = await runEngineBench({ n: 1_000, repetitions: 3 });
    expect(result.tasks).toBe(1_001);
    expect(result.runMs.min).toBeLessThanOrEqual(result.runMs.median);
    expect(result.report).toContain("1001 tasks");
  });
});

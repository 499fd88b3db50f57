/**
 * The engine benchmark: building and running (in-process, LocalExecutor) a DAG of `n` tasks plus a root:
 * a chain of n/2 tasks hanging off the root and a fan-out of n/2 more from the same root, each `x + 1`.
 */
import { LocalExecutor } from "../flows/executors.js";
import { Flow } from "../flows/flow.js";
import { task } from "../flows/task.js";

export interface BenchDag {
  flow: Flow;
  /** Slug of the last chain task; its result is 1 + chain length (5001 for n = 10,000). */
  chainEndSlug: string;
  chainLength: number;
  fanOutSlugs: string[];
}

export function buildBenchDag(n = 10_000): BenchDag {
  const root = task(() => 1, { name: "root" });
  const chainStep = task(({ x }: { x: number }) => x + 1, { name: "chain" });
  const fanStep = task(({ x }: { x: number }) => x + 1, { name: "fan" });
  const chainLength = Math.floor(n / 2);
  const fanOut: string[] = [];
  let chainEndSlug = "";
  const flow = Flow.build("engine-bench", (f) => {
    const r = f.add(root);
    let previous = r;
    for (let i = 0; i < chainLength; i++) previous = f.add(chainStep, { x: previous });
    chainEndSlug = f.flow.slugOf(previous)!;
    for (let i = chainLength; i < n; i++) fanOut.push(f.flow.slugOf(f.add(fanStep, { x: r }))!);
  });
  return { flow, chainEndSlug, chainLength, fanOutSlugs: fanOut };
}

export interface Timing {
  min: number;
  median: number;
}

export interface EngineBenchResult {
  tasks: number;
  repetitions: number;
  buildMs: Timing;
  runMs: Timing;
  totalMs: Timing;
  /** One line for humans. */
  report: string;
}

export async function runEngineBench({ n = 10_000, repetitions = 5 } = {}): Promise<EngineBenchResult> {
  const build: number[] = [];
  const run: number[] = [];
  const total: number[] = [];
  for (let rep = 0; rep < repetitions; rep++) {
    const t0 = performance.now();
    const dag = buildBenchDag(n);
    const t1 = performance.now();
    const state = await dag.flow.run({ executor: new LocalExecutor() });
    const t2 = performance.now();
    const end = state.taskStates.get(dag.chainEndSlug)?.result;
    if (state.name !== "Success" || end !== dag.chainLength + 1) {
      throw new Error(`engine bench produced a wrong result: flow ${state.name}, chain end ${String(end)}`);
    }
    build.push(t1 - t0);
    run.push(t2 - t1);
    total.push(t2 - t0);
  }
  const result = { tasks: n + 1, repetitions, buildMs: timing(build), runMs: timing(run), totalMs: timing(total) };
  const line = (t: Timing): string => `min ${t.min} ms, median ${t.median} ms`;
  const report =
    `${result.tasks} tasks × ${repetitions}: build ${line(result.buildMs)}; run ${line(result.runMs)}; ` +
    `build + run ${line(result.totalMs)}`;
  return { ...result, report };
}

function timing(samples: number[]): Timing {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (ms: number): number => Math.round(ms * 100) / 100;
  return { min: round(sorted[0] ?? 0), median: round(sorted[Math.floor(sorted.length / 2)] ?? 0) };
}

import { describe, expect, it } from "vitest";
import { BerthError, isBerthError } from "../wire/errors.js";
import { LocalEnvironment } from "../environments/local.js";
import { Flow } from "../flows/flow.js";
import { Storage, type BuildOutcome } from "../storage/storage.js";
import type { StorageSpec } from "../wire/schema.js";
import { Parameter, task } from "../flows/task.js";

function definitionError(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe("BERTH_E_FLOW_DEFINITION");
    return err as BerthError;
  }
  throw new Error("expected a definition error");
}

describe("Flow definition", () => {
  it("builds the seed's graph with setUpstream and bind", () => {
    const getValue = task(() => "Example!", { name: "get_value" });
    const outputValue = task(({ value }: { value: string }) => value.length, { name: "output_value" });
    const flow = new Flow("Custom Environment Example");
    outputValue.setUpstream(getValue, { flow });
    outputValue.bind({ value: getValue }, { flow });
    expect(flow.slug).toBe("custom-environment-example");
    expect(flow.tasks).toEqual([getValue, outputValue]);
    expect(flow.edges).toEqual([
      { upstream: getValue, downstream: outputValue },
      { upstream: getValue, downstream: outputValue, key: "value" },
    ]);
    expect(flow.upstreamTasks(outputValue)).toEqual([getValue]);
    expect(flow.referenceTasks).toEqual([outputValue]);
    expect(flow.environment).toBeInstanceOf(LocalEnvironment);
    expect(() => flow.validate()).not.toThrow();
  });

  it("gives tasks unique slugs: the name, then name-2, name-3", () => {
    const t = task(() => 1, { name: "step" });
    const other = task(() => 1, { name: "step-2" });
    const flow = new Flow("slugs");
    flow.addTask(other);
    const f = Flow.build("b", (b) => {
      b.add(t);
      b.add(t);
      b.add(t);
    });
    expect(f.nodes.map((n) => n.slug)).toEqual(["step", "step-2", "step-3"]);
    flow.addTask(t);
    flow.addTask(t.copy());
    expect(flow.nodes.map((n) => n.slug)).toEqual(["step-2", "step", "step-3"]);
    expect(task(() => 1).name).toBe("task");
    expect(task(function named() { return 1; }).name).toBe("named");
    // An anonymous task is known by its position in the flow, and so is each copy of it.
    const anonymous = task(() => 1);
    const positions = Flow.build("anonymous", (b) => {
      b.add(t);
      b.add(anonymous);
      b.add(anonymous);
    });
    expect(positions.nodes.map((n) => [n.slug, n.name])).toEqual([["step", "step"], ["task-2", "task-2"], ["task-3", "task-3"]]);
    expect(anonymous.copy().anonymous).toBe(true);
    expect(t.copy().anonymous).toBe(false);
  });

  it("builds functionally, copying a task added twice and binding constants", () => {
    const getValue = task(() => 1, { name: "get" });
    const add = task(({ a, b }: { a: number; b: number }) => a + b, { name: "add" });
    const flow = Flow.build("functional", { labels: ["x"] }, (f) => {
      const v = f.add(getValue);
      const w = f.add(getValue);
      const s = f.add(add, { a: v, b: 42 });
      f.add(add, { a: s, b: w }, { upstream: [v] });
    });
    expect(flow.nodes.map((n) => n.slug)).toEqual(["get", "get-2", "add", "add-2"]);
    expect(flow.nodes[2]!.bindings).toEqual([
      { key: "a", source: 0, value: undefined },
      { key: "b", source: -1, value: 42 },
    ]);
    expect(flow.nodes[3]!.upstream.sort()).toEqual([0, 1, 2]);
    expect(flow.labels).toEqual(["x"]);
  });

  it("rejects a cycle at definition time, naming the tasks", () => {
    const flow = new Flow("cyclic");
    const a = task(() => 1, { name: "a" });
    const b = task(() => 1, { name: "b" });
    const c = task(() => 1, { name: "c" });
    b.setUpstream(a, { flow });
    c.setUpstream(b, { flow });
    const err = definitionError(() => a.setUpstream(c, { flow }));
    expect(err.message).toContain('"c" → "a"');
    expect(err.message).toContain('"a" → "b" → "c" → "a"');
    expect(flow.edges).toHaveLength(2);
    expect(definitionError(() => a.setUpstream(a, { flow })).message).toContain('"a"');
    const open = task((inputs: Record<string, unknown>) => inputs, { name: "open" });
    a.setUpstream(open, { flow });
    expect(definitionError(() => open.bind({ x: c }, { flow })).message).toContain('"open" → "a" → "b" → "c" → "open"');
  });

  it("rejects binding an input the task does not declare, naming task and input", () => {
    const flow = new Flow("inputs");
    const src = task(() => 1, { name: "src" });
    const sink = task(({ value }: { value: number }) => value, { name: "sink" });
    const err = definitionError(() => sink.bind({ valeu: src } as never, { flow }));
    expect(err.message).toContain('task "sink" has no input named "valeu"');
    expect(err.message).toContain("value");
    // Nothing was changed by the refused bind.
    expect(flow.edges).toHaveLength(0);
    expect(definitionError(() => task(() => 1, { name: "none" }).bind({ x: 1 } as never, { flow })).message).toContain("no inputs");
  });

  it("rejects binding the same input twice", () => {
    const flow = new Flow("twice");
    const src = task(() => 1, { name: "src" });
    const sink = task(({ value }: { value: number }) => value, { name: "sink" });
    sink.bind({ value: src }, { flow });
    expect(definitionError(() => sink.bind({ value: 2 }, { flow })).message).toContain('input "value" of task "sink" is bound twice');
  });

  it("accepts any input name when the inputs cannot be read", () => {
    const flow = new Flow("open");
    const any = task((inputs: Record<string, unknown>) => inputs, { name: "any" });
    any.bind({ whatever: 1, other: 2 }, { flow });
    expect(flow.nodes[0]!.bindings.map((b) => b.key)).toEqual(["whatever", "other"]);
  });

  it("validate() reports required inputs nothing is bound to", () => {
    const flow = new Flow("unbound");
    flow.addTask(task(({ a, b = 2 }: { a: number; b?: number }) => a + b, { name: "sum" }));
    const err = definitionError(() => flow.validate());
    expect(err.message).toContain('task "sum" needs input "a"');
    expect(err.message).not.toContain('"b"');
  });

  it("rejects two parameters with one name and lists parameters", () => {
    const flow = new Flow("params");
    flow.addTask(Parameter("x", { default: 1 }));
    flow.addTask(Parameter("y"));
    flow.addTask(Parameter("z", { default: 3, required: true }));
    expect(flow.parameters()).toEqual([
      { name: "x", required: false, default: 1 },
      { name: "y", required: true },
      { name: "z", required: true, default: 3 },
    ]);
    expect(definitionError(() => flow.addTask(Parameter("x"))).message).toContain('"x"');
  });

  it("unions explicit, environment and storage labels and serializes", () => {
    class LabelledStorage extends Storage {
      protected locationFor(slug: string): string {
        return `/nowhere/${slug}`;
      }
      build(): Promise<BuildOutcome> {
        return Promise.reject(new Error("unused"));
      }
      serialize(): StorageSpec {
        return { type: "local", directory: "/nowhere", flows: {} };
      }
    }
    const storage = new LabelledStorage(["gpu", "shared"]);
    const flow = new Flow("Labelled Flow!", {
      labels: ["a", "shared"],
      environment: new LocalEnvironment({ labels: ["env"], metadata: { k: [1, "two"] } }),
      storage,
    });
    flow.addTask(Parameter("p", { default: 5 }));
    expect(flow.labels).toEqual(["a", "shared", "env", "gpu"]);
    expect(flow.serialize()).toEqual({
      name: "Labelled Flow!",
      slug: "labelled-flow",
      labels: ["a", "shared", "env", "gpu"],
      environment: { type: "LocalEnvironment", className: "LocalEnvironment", labels: ["env"], metadata: { k: [1, "two"] } },
      parameters: [{ name: "p", required: false, default: 5 }],
      tasks: [{ slug: "p", name: "p" }],
      runTimeoutMs: null,
      recovery: { onLost: "fail", maxAttempts: 3 },
      schedule: [],
      catchUp: "latest",
      maxConcurrentRuns: null,
      resources: { memoryBytes: null, cpus: null, pids: null },
      runAs: "user",
      placement: [],
    });
  });

  it("refuses bad task options and non-tasks", () => {
    expect(definitionError(() => task(() => 1, { maxRetries: -1 })).message).toContain("maxRetries");
    expect(definitionError(() => task(() => 1, { timeout: 0 })).message).toContain("timeout");
    expect(definitionError(() => new Flow("x").addTask({} as never)).message).toContain("expected a Task");
    expect(definitionError(() => new Flow("")).message).toContain("name");
  });

  it("carries the run container's resources and user, and rejects bad ones at definition, naming the value", () => {
    const flow = new Flow("Sized", { resources: { memory: "512m", cpus: 1.5, pids: 256 }, runAs: "root" });
    expect(flow.serialize()).toMatchObject({ resources: { memoryBytes: 512 * 1024 ** 2, cpus: 1.5, pids: 256 }, runAs: "root" });
    expect(new Flow("Bytes", { resources: { memory: 64 * 1024 ** 2 } }).serialize().resources).toEqual({ memoryBytes: 64 * 1024 ** 2, cpus: null, pids: null });
    const refused = (options: ConstructorParameters<typeof Flow>[1]) => {
      try {
        new Flow("Bad", options);
      } catch (err) {
        expect(isBerthError(err, "BERTH_E_FLOW_DEFINITION")).toBe(true);
        return (err as Error).message;
      }
      throw new Error("not refused");
    };
    expect(refused({ resources: { memory: "lots" } })).toBe('flow "Bad": resources.memory "lots" is not a size: write it like 512m or 2g');
    expect(refused({ resources: { memory: "1m" } })).toBe(`flow "Bad": resources.memory "1m" must be at least 6m (Docker's smallest)`);
    expect(refused({ resources: { cpus: 0 } })).toBe('flow "Bad": resources.cpus 0 must be a number of CPUs from 0.01 to 1024');
    expect(refused({ resources: { pids: 5 } })).toBe('flow "Bad": resources.pids 5 must be a whole number of processes from 16 to 4194304');
    expect(refused({ resources: "big" as never })).toMatch(/resources must be an object/);
    expect(refused({ runAs: "admin" as never })).toBe('flow "Bad": runAs must be "user" or "root", not "admin"');
  });

  it("carries Swarm placement constraints, and rejects one that is not node.ATTRIBUTE==VALUE or !=, naming it", () => {
    expect(new Flow("Placed", { placement: [" node.labels.zone==a", "node.role != manager"] }).serialize().placement).toEqual(["node.labels.zone==a", "node.role != manager"]);
    const refused = (placement: unknown) => definitionError(() => new Flow("Bad", { placement: placement as string[] })).message;
    expect(refused(["zone=a"])).toBe('flow "Bad": placement constraint "zone=a" is not valid: a placement constraint reads "node.ATTRIBUTE==VALUE" or "node.ATTRIBUTE!=VALUE", for example "node.labels.zone==a"');
    expect(refused(["node.labels.zone=="])).toMatch(/placement constraint "node.labels.zone==" is not valid/);
    expect(refused([42])).toMatch(/placement constraint 42 is not valid/);
    expect(refused("node.role==manager")).toMatch(/placement must be an array/);
    expect(refused(Array.from({ length: 33 }, () => "node.role==manager"))).toMatch(/at most 32/);
  });

  it("carries a run timeout and a recovery policy, and rejects bad ones at definition", () => {
    const flow = new Flow("Recovering", { runTimeout: 90_000, recovery: { onLost: "reschedule" } });
    expect(flow.serialize()).toMatchObject({ runTimeoutMs: 90_000, recovery: { onLost: "reschedule", maxAttempts: 3 } });
    expect(() => new Flow("Bad timeout", { runTimeout: -5 })).toThrow(/runTimeout must be a positive whole number/);
    expect(() => new Flow("Bad policy", { recovery: { maxAttempts: 0 } })).toThrow(/recovery maxAttempts/);
  });
});

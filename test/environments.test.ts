import { afterEach, describe, expect, it } from "vitest";
import { BerthError } from "../wire/errors.js";
import { EnvironmentSpec } from "../wire/schema.js";
import { Environment } from "../environments/environment.js";
import { LocalEnvironment } from "../environments/local.js";
import { environmentWarnings, serializeEnvironment } from "../environments/serialize.js";
import { setDefaultFlowRunnerClass } from "../flows/defaults.js";
import { Flow } from "../flows/flow.js";
import { consoleSink, setLogSink, type LogRecord } from "../shared/logging.js";
import { FlowRunner } from "../flows/runner.js";
import { Storage, type BuildOutcome } from "../storage/storage.js";
import type { StorageSpec } from "../wire/schema.js";
import { seedFlow } from "./support/seed-flow.js";

afterEach(() => {
  setDefaultFlowRunnerClass(FlowRunner);
  setLogSink(consoleSink);
});

/** A storage that hands out one flow (or fails with one error) and records which locations were asked for. */
class FakeStorage extends Storage {
  readonly requested: string[] = [];

  constructor(private readonly flow: Flow | Error) {
    super();
    this.flows[flow instanceof Flow ? flow.name : "broken"] = "/opt/berth/flows/x.mjs";
  }

  protected locationFor(): string {
    return "/opt/berth/flows/x.mjs";
  }

  override async getFlow(location: string): Promise<Flow> {
    this.requested.push(location);
    if (this.flow instanceof Error) throw this.flow;
    return this.flow;
  }

  build(): Promise<BuildOutcome> {
    return Promise.reject(new Error("unused"));
  }

  serialize(): StorageSpec {
    return { type: "local", directory: "/opt/berth/flows", flows: { ...this.flows } };
  }
}

function storageWith(flow: Flow | Error): FakeStorage {
  return new FakeStorage(flow);
}

function exampleFlow(events: string[]): Flow {
  return seedFlow((value) => void events.push(`task:${value}`));
}

describe("LocalEnvironment", () => {
  it("calls onStart, loads the flow from storage, runs it with the default runner, then onExit", async () => {
    const events: string[] = [];
    const flow = exampleFlow(events);
    const storage = storageWith(flow);
    class RecordingRunner extends FlowRunner {
      override async run(options: Parameters<FlowRunner["run"]>[0] = {}) {
        events.push("runner");
        return super.run(options);
      }
    }
    setDefaultFlowRunnerClass(RecordingRunner);
    const env = new LocalEnvironment({ onStart: () => events.push("start"), onExit: () => events.push("exit") });
    const state = await env.execute(storage, "/opt/berth/flows/x.mjs");
    expect(state.name).toBe("Success");
    expect(storage.requested).toEqual(["/opt/berth/flows/x.mjs"]);
    expect(events).toEqual(["start", "runner", "task:Example!", "exit"]);
  });

  it("calls onExit and logs, then rethrows, when loading the flow throws", async () => {
    const events: string[] = [];
    const records: LogRecord[] = [];
    setLogSink((r) => records.push(r));
    const env = new LocalEnvironment({ onStart: () => events.push("start"), onExit: async () => void events.push("exit") });
    await expect(env.execute(storageWith(new Error("image is corrupt")), "/x")).rejects.toThrow("image is corrupt");
    expect(events).toEqual(["start", "exit"]);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: "error", fields: { environment: "LocalEnvironment" } });
    expect(records[0]!.message).toMatch(/^Unexpected error raised during flow run: image is corrupt/);
  });

  it("is the default environment and passes parameters and signal to the run", async () => {
    const flow = new Flow("f");
    expect(flow.environment).toBeInstanceOf(LocalEnvironment);
    const state = await flow.environment.execute(storageWith(flow), "/x", { signal: AbortSignal.abort() });
    expect((state as { name: string }).name).toBe("Cancelled");
  });
});

describe("custom environments", () => {
  class MyCustomEnvironment extends Environment {
    override get dependencies(): string[] {
      return ["left-pad"];
    }
    override async execute(storage: Storage, flowLocation: string): Promise<void> {
      await this.onStart?.();
      try {
        const flow = await storage.getFlow(flowLocation);
        await new FlowRunner({ flow }).run();
      } finally {
        await this.onExit?.();
      }
    }
  }

  it("runs the seed's custom environment", async () => {
    const events: string[] = [];
    const env = new MyCustomEnvironment({ labels: ["dev"], onStart: () => events.push("start"), onExit: () => events.push("exit") });
    await env.setup(storageWith(exampleFlow(events)));
    await env.execute(storageWith(exampleFlow(events)), "/x");
    expect(events).toEqual(["start", "task:Example!", "exit"]);
    expect(env.dependencies).toEqual(["left-pad"]);
    expect(new Environment().dependencies).toEqual([]);
  });

  it("the base class refuses to execute, clearly", async () => {
    await expect(new Environment().execute(storageWith(new Flow("f")), "/x")).rejects.toThrow(/subclass must implement execute/);
  });

  it("serializes by class identity: only the built-in class is LocalEnvironment", () => {
    const builtIn = new LocalEnvironment({ labels: ["a"], metadata: { team: "data" } });
    expect(serializeEnvironment(builtIn)).toEqual({ type: "LocalEnvironment", className: "LocalEnvironment", labels: ["a"], metadata: { team: "data" } });
    expect(builtIn.serialize()).toEqual(serializeEnvironment(builtIn));
    expect(environmentWarnings(builtIn)).toEqual([]);

    const custom = new MyCustomEnvironment({ labels: ["dev"] });
    expect(serializeEnvironment(custom)).toEqual({ type: "custom", className: "MyCustomEnvironment", labels: ["dev"], metadata: {} });
    expect(environmentWarnings(custom)).toEqual([]);

    class SubOfLocal extends LocalEnvironment {}
    expect(serializeEnvironment(new SubOfLocal())).toMatchObject({ type: "custom", className: "SubOfLocal" });
    expect(new SubOfLocal().serialize()).toMatchObject({ type: "custom", className: "SubOfLocal" });

    const anonymous = new (class extends Environment {})();
    expect(serializeEnvironment(anonymous).className).toBe("AnonymousEnvironment");
    for (const env of [builtIn, custom, anonymous]) expect(() => EnvironmentSpec.parse(serializeEnvironment(env))).not.toThrow();
  });

  it("treats a custom class named LocalEnvironment as custom, with a warning", () => {
    const Shadow = (() => {
      class LocalEnvironment extends Environment {}
      return LocalEnvironment;
    })();
    const env = new Shadow({ labels: ["x"] });
    expect(Shadow.name).toBe("LocalEnvironment");
    expect(serializeEnvironment(env)).toEqual({ type: "custom", className: "LocalEnvironment", labels: ["x"], metadata: {} });
    expect(env.serialize().type).toBe("custom");
    const warnings = environmentWarnings(env);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/shadows berth's built-in LocalEnvironment.*treated as a custom environment/);
    const flow = new Flow("shadowed", { environment: env });
    expect(flow.serialize().environment.type).toBe("custom");
    expect(environmentWarnings(new Environment())[0]).toMatch(/cannot execute/);
  });

  it("only data reaches the server, and metadata must be JSON", () => {
    const env = new MyCustomEnvironment({ metadata: { nested: { list: [1, "a", null, true] } } });
    const spec = serializeEnvironment(env);
    expect(Object.keys(spec).sort()).toEqual(["className", "labels", "metadata", "type"]);
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
    expect(() => new LocalEnvironment({ metadata: { fn: () => 1 } })).toThrow(/metadata.fn is a function/);
    expect(() => new LocalEnvironment({ metadata: { when: new Date() } })).toThrow(BerthError);
    expect(() => new LocalEnvironment({ metadata: { n: NaN } })).toThrow(/metadata.n is NaN/);
    const later = new LocalEnvironment();
    later.metadata = { big: 1n };
    expect(() => serializeEnvironment(later)).toThrow(/metadata.big is a bigint/);
  });

  it("has a logger bound to its class name", () => {
    const records: LogRecord[] = [];
    setLogSink((r) => records.push(r));
    new MyCustomEnvironment().logger.info("hi");
    expect(records[0]?.fields).toEqual({ environment: "MyCustomEnvironment" });
  });
});

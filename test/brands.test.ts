/**
 * berth's classes are recognised across two copies of the package by their Symbol.for brands. A second
 * copy is made here the way it happens in the field: the same modules loaded again as distinct instances.
 */
import { describe, expect, it } from "vitest";
import { Environment, isEnvironment } from "../environments/environment.js";
import { Flow, isFlow } from "../flows/flow.js";
import { isTask } from "../flows/task.js";
import { pickFlow } from "../storage/storage.js";
import { BerthError, isBerthError } from "../wire/errors.js";

/** A query string makes Vite load a fresh instance of the module: another copy of berth's classes. */
function secondCopy<T>(module: string): Promise<T> {
  return import(/* @vite-ignore */ new URL(`${module}?copy=2`, import.meta.url).href) as Promise<T>;
}

const other = {
  flow: await secondCopy<typeof import("../flows/flow.js")>("../flows/flow.ts"),
  task: await secondCopy<typeof import("../flows/task.js")>("../flows/task.ts"),
  environment: await secondCopy<typeof import("../environments/environment.js")>("../environments/environment.ts"),
  errors: await secondCopy<typeof import("../wire/errors.js")>("../wire/errors.ts"),
};

describe("brands", () => {
  it("are a second copy of berth for real: instanceof does not hold across it", () => {
    expect(other.flow.Flow).not.toBe(Flow);
    expect(new other.flow.Flow("x")).not.toBeInstanceOf(Flow);
    expect(new other.errors.BerthError("BERTH_E_CONFIG", "x")).not.toBeInstanceOf(BerthError);
  });

  it("recognise flows, tasks, environments and errors from either copy", () => {
    expect(isFlow(new other.flow.Flow("x"))).toBe(true);
    expect(isTask(other.task.task(() => 1))).toBe(true);
    expect(isEnvironment(new other.environment.Environment())).toBe(true);
    const foreign = new other.errors.BerthError("BERTH_E_STALE_LEASE", "another attempt owns this run");
    expect(isBerthError(foreign)).toBe(true);
    expect(isBerthError(foreign, "BERTH_E_STALE_LEASE")).toBe(true);
    expect(isBerthError(foreign, "BERTH_E_CONFIG")).toBe(false);
  });

  it("are not fooled by look-alikes: a class merely named like berth's is not one", () => {
    class Flow2 {}
    Object.defineProperty(Flow2, "name", { value: "Flow" });
    class BerthErrorLike extends Error {
      code = "BERTH_E_CONFIG";
    }
    expect(isFlow(new Flow2())).toBe(false);
    expect(isBerthError(new BerthErrorLike("x"))).toBe(false);
    expect(isTask({ name: "t", fn: () => 1 })).toBe(false);
    expect(isEnvironment(Object.create(Environment))).toBe(false);
  });

  it("let a flow accept tasks made by another copy, and name a flow from another copy as such when loading", () => {
    const flow = new Flow("mixed");
    flow.addTask(other.task.task(() => 1, { name: "foreign" }));
    expect(flow.nodes.map((n) => n.slug)).toEqual(["foreign"]);
    expect(() => pickFlow({ default: new other.flow.Flow("elsewhere") }, "flow.mjs")).toThrow(/another copy of berth \("default"\)/);
    expect(() => pickFlow({ notAFlow: new (class Flow {})() }, "flow.mjs")).toThrow(/exports no Flow/);
  });
});

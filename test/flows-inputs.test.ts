import { describe, expect, it } from "vitest";
import { declareInputs, inferInputs } from "../flows/inputs.js";
import { task } from "../flows/task.js";

function read(fn: Function): { names: string[]; required: string[] } | undefined {
  const d = inferInputs(fn);
  return d && { names: [...d.names], required: [...d.required] };
}

describe("declared inputs", () => {
  it("reads an arrow function's destructured first parameter, with defaults", () => {
    expect(read(({ a, b = 1 }: { a: number; b?: number }) => a + b)).toEqual({ names: ["a", "b"], required: ["a"] });
  });

  it("reads async arrows, function declarations and method shorthand", () => {
    expect(read(async ({ value }: { value: string }) => value)).toEqual({ names: ["value"], required: ["value"] });
    expect(read(function f({ a }: { a: number }) { return a; })).toEqual({ names: ["a"], required: ["a"] });
    expect(read(async function g({ a, b }: { a: number; b: number }) { return a + b; })).toEqual({ names: ["a", "b"], required: ["a", "b"] });
    const holder = { m({ q }: { q: number }) { return q; } };
    expect(read(holder.m)).toEqual({ names: ["q"], required: ["q"] });
  });

  it("handles aliases, nested patterns and tricky defaults", () => {
    const fn = new Function("return ({ a: alias, b: { c } = {}, 'd-e': de = `x${'}'}y`, f = [1, { g: 2 }], h = (1, 2) }) => alias")();
    expect(read(fn)).toEqual({ names: ["a", "b", "d-e", "f", "h"], required: ["a"] });
  });

  it("parses defaults that a tokenizer would trip on: regex literals, comments, nested templates", () => {
    const fn = new Function("return ({ a = /[}]/.source, /* } */ b = `${`}`}`, c }) => a")();
    expect(read(fn)).toEqual({ names: ["a", "b", "c"], required: ["c"] });
    const holder = { async m({ x, y = 2 }: { x: number; y?: number }) { return x + y; } };
    expect(read(holder.m)).toEqual({ names: ["x", "y"], required: ["x"] });
  });

  it("reads no inputs for a function without parameters", () => {
    expect(read(() => 1)).toEqual({ names: [], required: [] });
  });

  it("gives up (any inputs) on rest elements, computed keys and non-pattern parameters", () => {
    expect(read(({ a, ...rest }: Record<string, number>) => a! + Object.keys(rest).length)).toBeUndefined();
    expect(read(new Function("return ({ ['k']: v }) => v")())).toBeUndefined();
    expect(read((inputs: Record<string, unknown>) => inputs)).toBeUndefined();
    expect(read(new Function("return x => x")())).toBeUndefined();
    expect(read(Math.max)).toBeUndefined();
  });

  it("accepts explicit inputs, with ? for optional ones", () => {
    const d = declareInputs(["a", "b?"]);
    expect([...d.names]).toEqual(["a", "b"]);
    expect(d.required).toEqual(["a"]);
    const t = task((i: Record<string, unknown>) => i, { inputs: ["x"] });
    expect([...t.inputs!.names]).toEqual(["x"]);
  });
});

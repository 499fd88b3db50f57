import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, cutDeep, tooDeep } from "../shared/json-limits.js";

const nested = (depth: number, key = "a"): string => {
  let json = "1";
  for (let i = 0; i < depth; i++) json = `{"${key}":${json}}`;
  return json;
};

describe("JSON depth bound", () => {
  it("passes values up to the limit and names the path of the first level past it", () => {
    expect(tooDeep(nested(MAX_JSON_DEPTH))).toBeUndefined();
    expect(tooDeep(nested(MAX_JSON_DEPTH + 1))).toBe(Array(MAX_JSON_DEPTH).fill("a").join("."));
    expect(tooDeep(`{"x":[1,2,[${nested(3)}]],"y":{"z":${nested(3)}}}`, 4)).toBe("x[2][0].a");
    expect(tooDeep(`{"x":[1,2,[${nested(1)}]],"y":{"z":${nested(3)}}}`, 4)).toBe("y.z.a.a");
    expect(tooDeep(`[[1],[2,[3,[4]]]]`, 3)).toBe("[1][1][1]");
  });

  it("is not fooled by brackets, quotes and escapes inside strings", () => {
    expect(tooDeep(`{"k":"{{{{[[[[\\\\\\"{{{{"}`, 2)).toBeUndefined();
    expect(tooDeep(`{"we\\"ird key":{"b":{}}}`, 2)).toBe(`"we\\\\\\"ird key".b`);
  });

  it("reads a value far too deep for the stack without recursing", () => {
    const depth = 200_000;
    expect(tooDeep("[".repeat(depth) + "]".repeat(depth))).toBe(Array(MAX_JSON_DEPTH).fill("[0]").join(""));
  });

  it("cuts stored values to the limit, keeping everything shallower", () => {
    let deep: unknown = "leaf";
    for (let i = 0; i < 5_000; i++) deep = { a: deep };
    const cut = cutDeep({ keep: [1, { two: 2 }], deep }, 4) as Record<string, unknown>;
    expect(cut.keep).toEqual([1, { two: 2 }]);
    // Four levels of objects survive, counting the outer one: what tooDeep accepts at the same limit.
    expect(JSON.stringify(cut.deep)).toBe('{"a":{"a":{"a":"[removed: nested deeper than 4 levels]"}}}');
    expect(tooDeep(JSON.stringify(cut), 4)).toBeUndefined();
    expect(cutDeep("plain")).toBe("plain");
  });
});

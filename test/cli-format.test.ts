import { describe, expect, it } from "vitest";
import { parseEnvPairs, parseParams, table } from "../cli/format.js";

describe("CLI argument parsing", () => {
  it("takes --param values as JSON when they are JSON, else as text", () => {
    expect(parseParams(["n=3", "flag=true", 'obj={"a":1}', "name=Ada", "eq=a=b", "empty="])).toEqual({
      n: 3,
      flag: true,
      obj: { a: 1 },
      name: "Ada",
      eq: "a=b",
      empty: "",
    });
    expect(() => parseParams(["novalue"])).toThrow(/--param "novalue" is not of the form name=value/);
  });

  it("takes --env pairs as text", () => {
    expect(parseEnvPairs(["A=1", "B=x=y"])).toEqual({ A: "1", B: "x=y" });
    expect(() => parseEnvPairs(["=1"])).toThrow(/--env "=1"/);
  });

  it("aligns tables", () => {
    expect(table(["A", "LONGER"], [["xx", "1"], ["y", "22"]])).toBe("A   LONGER\nxx  1\ny   22");
  });
});

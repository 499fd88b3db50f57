import { describe, expect, it } from "vitest";
import { OUTPUT_SETTLE_MS, formatPhases, outputSettled, parseEnvPairs, parseParams, table } from "../cli/format.js";

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

describe("formatPhases", () => {
  const at = (ms: number) => new Date(Date.UTC(2030, 0, 1) + ms).toISOString();
  const none = { claimed: null, imageReady: null, imageSource: null, containerCreated: null, containerStarted: null, runtimeUp: null, flowFinished: null, cleanedUp: null };

  it("names each step between two known phases, with the image's source", () => {
    const phases = { queued: at(0), claimed: at(4), imageReady: at(6), imageSource: "pulled" as const, containerCreated: at(41), containerStarted: at(191), runtimeUp: at(1_591), flowFinished: at(13_591), cleanedUp: at(13_621) };
    expect(formatPhases(phases)).toBe("queued 4 ms · image 2 ms (pulled) · create 35 ms · start 150 ms · runtime 1.40 s · flow 12.0 s · cleanup 30 ms");
  });

  it("leaves out steps not reached, and says nothing for a run never claimed", () => {
    expect(formatPhases({ ...none, queued: at(0), claimed: at(10), runtimeUp: at(500) })).toBe("queued 10 ms");
    expect(formatPhases({ ...none, queued: at(0) })).toBeUndefined();
  });
});

describe("outputSettled", () => {
  const phases = (containerStarted: string | null, cleanedUp: string | null) => ({
    queued: "2030-01-01T00:00:00.000Z", claimed: null, imageReady: null, imageSource: null, containerCreated: null,
    containerStarted, runtimeUp: null, flowFinished: null, cleanedUp,
  });
  it("waits for the agent's cleanup of a run that had a container, at most OUTPUT_SETTLE_MS", () => {
    const started = "2030-01-01T00:00:01.000Z";
    expect(outputSettled({ phases: phases(started, null) }, 1_000, 1_000 + OUTPUT_SETTLE_MS - 1)).toBe(false);
    expect(outputSettled({ phases: phases(started, null) }, 1_000, 1_000 + OUTPUT_SETTLE_MS)).toBe(true);
    expect(outputSettled({ phases: phases(started, "2030-01-01T00:00:09.000Z") }, 1_000, 1_000)).toBe(true);
  });
  it("does not wait for a run that never had a container, or a server that says nothing of phases", () => {
    expect(outputSettled({ phases: phases(null, null) }, 0, 0)).toBe(true);
    expect(outputSettled({}, 0, 0)).toBe(true);
  });
});

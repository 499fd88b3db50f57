import { describe, expect, it } from "vitest";
import { backoffMs, sleep } from "../shared/backoff.js";
import { defaultNetwork } from "../config/compile.js";

describe("backoff", () => {
  it("doubles its ceiling per attempt up to the maximum, with jitter in the upper half", () => {
    const low = (attempt: number) => backoffMs(attempt, { baseMs: 100, maxMs: 1_000, random: () => 0 });
    const high = (attempt: number) => backoffMs(attempt, { baseMs: 100, maxMs: 1_000, random: () => 1 });
    expect([0, 1, 2, 3, 4, 10].map(high)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect([0, 1, 2, 3, 4, 10].map(low)).toEqual([50, 100, 200, 400, 500, 500]);
  });

  it("sleep ends at once when aborted", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const slept = sleep(60_000, controller.signal);
    controller.abort();
    await slept;
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe("container network default", () => {
  it("uses the host network only when the API is on loopback", () => {
    expect(defaultNetwork("http://127.0.0.1:4200")).toBe("host");
    expect(defaultNetwork("http://localhost:4200")).toBe("host");
    expect(defaultNetwork("http://[::1]:4200")).toBe("host");
    expect(defaultNetwork("http://server:4200")).toBeUndefined();
  });
});

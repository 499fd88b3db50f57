/** Which images an agent runs (agent/allowed-images.ts): GitLab-style glob patterns over image references. */
import { describe, expect, it } from "vitest";
import { imageAllowList } from "../agent/allowed-images.js";
import { compileAgentOptions } from "../config/compile.js";
import { loadConfig } from "../config/load.js";
import { isBerthError } from "../wire/errors.js";

function allowed(patterns: string[], image: string): boolean {
  try {
    imageAllowList(patterns)(image);
    return true;
  } catch (err) {
    expect(isBerthError(err, "BERTH_E_NOT_ALLOWED"), String(err)).toBe(true);
    return false;
  }
}

describe("imageAllowList", () => {
  it("allows every image when no pattern is given", () => {
    expect(allowed([], "anything/at:all")).toBe(true);
  });

  it("matches `*` within a path segment and `**` across them", () => {
    const team = ["registry.example:5000/team/*:*"];
    expect(allowed(team, "registry.example:5000/team/etl:1.2")).toBe(true);
    expect(allowed(team, "registry.example:5000/team/sub/etl:1.2")).toBe(false);
    expect(allowed(team, "registry.example:5000/other/etl:1.2")).toBe(false);
    expect(allowed(["registry.example:5000/team/**"], "registry.example:5000/team/sub/etl:1.2")).toBe(true);
    expect(allowed(["node:*"], "node:20")).toBe(true);
    expect(allowed(["node:*"], "evil/node:20")).toBe(false);
    // A prefix is not a match: patterns cover the whole reference.
    expect(allowed(["registry.example/team"], "registry.example/team-evil/x:1")).toBe(false);
    expect(allowed(["a/*:*", "b/**"], "b/c/d:e")).toBe(true);
  });

  it("names the image and every pattern when it refuses", () => {
    expect(() => imageAllowList(["a/*", "b/**"])("c/d:1")).toThrow(
      "image c/d:1 is not allowed on this agent: it matches none of its --allow-image patterns (a/*, b/**)",
    );
  });

  it("makes the agent build no image: a build would run the flow author's Dockerfile steps", () => {
    expect(compileAgentOptions(loadConfig({ env: {}, cwd: "/" })).buildOnPullFailure).toBe(true);
    expect(compileAgentOptions(loadConfig({ env: { BERTH_AGENT_ALLOW_IMAGES: "a/**" }, cwd: "/" })).buildOnPullFailure).toBe(false);
    expect(() => loadConfig({ env: { BERTH_AGENT_ALLOW_IMAGES: "a/**", BERTH_AGENT_PULL_POLICY: "never" }, cwd: "/" })).toThrow(
      'agent.pullPolicy: pull policy "never" builds every image here, which --allow-image rules out',
    );
  });

  it("is configured by --allow-image, BERTH_AGENT_ALLOW_IMAGES or agent.allowImages", () => {
    expect(compileAgentOptions(loadConfig({ env: {}, cwd: "/" })).allowImages).toEqual([]);
    expect(compileAgentOptions(loadConfig({ env: { BERTH_AGENT_ALLOW_IMAGES: "a/**, b/*:*" }, cwd: "/" })).allowImages).toEqual(["a/**", "b/*:*"]);
    expect(compileAgentOptions(loadConfig({ env: {}, cwd: "/", flags: { agent: { allowImages: ["c/**"] } } })).allowImages).toEqual(["c/**"]);
  });
});

import { describe, expect, it } from "vitest";
import { explainPickup, labelsMatch, normalizeLabels } from "../store/labels.js";

describe("labelsMatch", () => {
  it("needs every run label among the agent's labels", () => {
    expect(labelsMatch(["gpu"], ["gpu", "linux"])).toBe(true);
    expect(labelsMatch(["gpu", "linux"], ["gpu", "linux"])).toBe(true);
    expect(labelsMatch(["gpu", "arm"], ["gpu", "linux"])).toBe(false);
    expect(labelsMatch(["gpu"], [])).toBe(false);
  });

  it("sends a run without labels only to an agent without labels", () => {
    expect(labelsMatch([], [])).toBe(true);
    expect(labelsMatch([], ["gpu"])).toBe(false);
  });
});

describe("normalizeLabels", () => {
  it("sorts and de-duplicates", () => {
    expect(normalizeLabels(["b", "a", "b"])).toEqual(["a", "b"]);
  });
});

describe("explainPickup", () => {
  it("is undefined when some online agent matches", () => {
    expect(explainPickup(["gpu"], [{ name: "a1", labels: ["cpu"] }, { name: "a2", labels: ["gpu"] }])).toBeUndefined();
    expect(explainPickup([], [{ name: "a1", labels: [] }])).toBeUndefined();
  });

  it("says when no agent is online", () => {
    expect(explainPickup(["gpu"], [])).toBe("no agent is online");
    expect(explainPickup([], [])).toBe("no agent is online");
  });

  it("names the wanted labels and the online agents", () => {
    expect(explainPickup(["gpu"], [{ name: "a1", labels: ["cpu"] }, { name: "a2", labels: [] }])).toBe(
      "no online agent has labels ⊇ [gpu]; online agents: a1 [cpu], a2 (no labels)",
    );
  });

  it("explains the rule for a run without labels", () => {
    const text = explainPickup([], [{ name: "a1", labels: ["cpu"] }]);
    expect(text).toContain("a run without labels only goes to an agent without labels");
    expect(text).toContain("a1 [cpu]");
  });

  it("keeps the sentence short with many agents", () => {
    const agents = Array.from({ length: 25 }, (_, i) => ({ name: `a${i}`, labels: ["cpu"] }));
    const text = explainPickup(["gpu"], agents) ?? "";
    expect(text).toContain("and 15 more");
    expect(text).not.toContain("a24");
  });
});

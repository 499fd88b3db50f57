/**
 * Anonymous tasks are named after the variables they are assigned to when a flow is bundled, and by their
 * position otherwise; both bundles (host and image) name them alike.
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { nameTasks } from "../storage/task-names.js";
import { REPO } from "./support/processes.js";

const fixture = path.join(REPO, "test", "fixtures", "anonymous-tasks-flow.ts");

/** The compiled berth (dist/): a bundled flow imports it, so the test must load flows through it too. */
async function dist<T>(module: string): Promise<T> {
  return (await import(pathToFileURL(path.join(REPO, "dist", module)).href)) as T;
}

describe("task names from the bundle", () => {
  it("names anonymous tasks after their variables, keeps given names, and falls back to the position", async () => {
    const { loadFlowFile } = await dist<typeof import("../storage/register.js")>("storage/register.js");
    const flow = await loadFlowFile(fixture);
    // Names only: the edges (upstream) are test/server-flow-graph.test.ts's.
    expect(flow.serialize().tasks.map(({ slug, name }) => ({ slug, name }))).toEqual([
      { slug: "getValue", name: "getValue" },
      { slug: "double", name: "double" },
      { slug: "fromNamespace", name: "fromNamespace" },
      { slug: "explicitlyNamed", name: "explicitlyNamed" },
      { slug: "given-name", name: "given-name" },
      { slug: "task-6", name: "task-6" },
    ]);
    const state = await flow.run();
    expect(state.name).toBe("Success");
    expect(state.taskStates.get("double")?.result).toBe(14);
  });

  it("gives the image bundle the same names as the host bundle", async () => {
    const { bundleFlowFile } = await dist<typeof import("../storage/bundle.js")>("storage/bundle.js");
    const image = await bundleFlowFile(fixture, { target: "image" });
    const host = await bundleFlowFile(fixture, { target: "host" });
    for (const code of [image, host]) {
      for (const name of ["getValue", "double", "fromNamespace", "named", "optioned"]) expect(code).toContain(`, "${name}")`);
    }
  });

  it("leaves code alone that does not import berth's task, or does not parse", () => {
    const foreign = 'import { task } from "other-lib";\nconst x = task(() => 1);\n';
    expect(nameTasks(foreign, (s) => s === "berth")).toBe(foreign);
    expect(nameTasks("const = nonsense (", () => true)).toBe("const = nonsense (");
    const ours = 'import { task as t } from "berth";\nexport const x = t(() => 1), y = 2;\n';
    expect(nameTasks(ours, (s) => s === "berth")).toContain('export const x = __berthNamed(t(() => 1), "x"), y = 2;');
    const hashbang = `#!/usr/bin/env node\n${ours}`;
    expect(nameTasks(hashbang, (s) => s === "berth")).toMatch(/^#!\/usr\/bin\/env node\nconst __berthNamed = /);
  });
});

/**
 * berth's production dependencies wherever npm put them, and where the runtime image puts each: on synthetic
 * installs (hoisted into a project, nested, a global prefix, a workspace), without npm.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { productionClosure } from "../images/production-deps.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Writes a package.json at each path (relative to a fresh directory) and answers with that directory. */
async function install(packages: Record<string, { version?: string; dependencies?: string[] }>): Promise<string> {
  const base = await mkdtemp(path.join(os.tmpdir(), "berth-deps-"));
  dirs.push(base);
  for (const [at, { version = "1.0.0", dependencies = [] }] of Object.entries(packages)) {
    await mkdir(path.join(base, at), { recursive: true });
    const name = at.split("node_modules/").at(-1);
    await writeFile(path.join(base, at, "package.json"), JSON.stringify({ name, version, dependencies: Object.fromEntries(dependencies.map((d) => [d, "*"])) }));
  }
  return base;
}

const layout = async (root: string) => (await productionClosure(root)).map((p) => `${p.imageDir} ${p.name}@${p.version}`);

describe("berth's dependencies, wherever npm put them", () => {
  it("hoisted into the project: the image mirrors the project's node_modules around berth", async () => {
    const base = await install({
      "project/node_modules/berth": { dependencies: ["a", "b"] },
      "project/node_modules/a": { dependencies: ["c"] },
      // berth needs b@2, which npm nested under it, as the project has b@1.
      "project/node_modules/berth/node_modules/b": { version: "2.0.0" },
      "project/node_modules/b": { version: "1.0.0" },
      "project/node_modules/c": {},
      "project/node_modules/typescript": {},
    });
    expect(await layout(path.join(base, "project/node_modules/berth"))).toEqual([
      "/opt/berth/node_modules/a a@1.0.0",
      "/opt/berth/node_modules/berth/node_modules/b b@2.0.0",
      "/opt/berth/node_modules/c c@1.0.0",
    ]);
  });

  it("nested in berth (a global prefix, or a clone): all under berth's own node_modules", async () => {
    const base = await install({
      "prefix/lib/node_modules/berth": { dependencies: ["a"] },
      "prefix/lib/node_modules/berth/node_modules/a": { dependencies: ["c"] },
      "prefix/lib/node_modules/berth/node_modules/a/node_modules/c": { version: "3.0.0" },
    });
    expect(await layout(path.join(base, "prefix/lib/node_modules/berth"))).toEqual([
      "/opt/berth/node_modules/berth/node_modules/a a@1.0.0",
      "/opt/berth/node_modules/berth/node_modules/a/node_modules/c c@3.0.0",
    ]);
  });

  it("in a workspace's root node_modules: as far up in the image as on the host", async () => {
    const base = await install({
      "repo/packages/app/node_modules/berth": { dependencies: ["a"] },
      "repo/node_modules/a": {},
    });
    expect(await layout(path.join(base, "repo/packages/app/node_modules/berth"))).toEqual(["/node_modules/a a@1.0.0"]);
  });

  it("says what is wrong when the image cannot mirror the install, or a dependency is missing", async () => {
    const clone = await install({ "work/berth": { dependencies: ["a"] }, "work/node_modules/a": {} });
    await expect(productionClosure(path.join(clone, "work/berth"))).rejects.toThrow(/installed above berth's own directory .*npm ci there/);
    const deep = await install({ "a/b/c/d/node_modules/berth": { dependencies: ["x"] }, "a/node_modules/x": {} });
    await expect(productionClosure(path.join(deep, "a/b/c/d/node_modules/berth"))).rejects.toThrow(/too far above berth/);
    const missing = await install({ "p/node_modules/berth": { dependencies: ["gone"] } });
    await expect(productionClosure(path.join(missing, "p/node_modules/berth"))).rejects.toThrow(/depends on gone, which is not installed where Node would find it/);
  });
});

/**
 * Which LocalStorage directories an agent mounts (agent/local-dirs.ts): only under the roots its operator
 * allowed, judged on the real path after symlinks; and how an agent's roots are configured.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowedLocalDir } from "../agent/local-dirs.js";
import { compileAgentOptions } from "../config/compile.js";
import { loadConfig } from "../config/load.js";
import { isBerthError } from "../wire/errors.js";

let base: string;
let root: string;

beforeAll(async () => {
  base = await mkdtemp(path.join(os.tmpdir(), "berth-local-dirs-"));
  root = path.join(base, "flows");
  await mkdir(path.join(root, "team-a"), { recursive: true });
  await mkdir(path.join(base, "flows-other"), { recursive: true });
  await mkdir(path.join(base, "secret"), { recursive: true });
  await symlink(path.join(base, "secret"), path.join(root, "link-out"));
  await symlink(path.join(root, "team-a"), path.join(base, "link-in"));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function refusal(directory: string, roots: string[]): Promise<string> {
  try {
    await allowedLocalDir(directory, roots);
  } catch (err) {
    expect(isBerthError(err, "BERTH_E_NOT_ALLOWED"), String(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`${directory} was allowed under ${roots.join(", ")}`);
}

describe("allowedLocalDir", () => {
  it("allows a root and what lies under it, and gives the real path to mount", async () => {
    expect(await allowedLocalDir(root, [root])).toBe(root);
    expect(await allowedLocalDir(path.join(root, "team-a"), [root])).toBe(path.join(root, "team-a"));
    expect(await allowedLocalDir(path.join(root, "team-a", "..", "team-a"), [root])).toBe(path.join(root, "team-a"));
    // A link from outside into an allowed directory is that directory.
    expect(await allowedLocalDir(path.join(base, "link-in"), [root])).toBe(path.join(root, "team-a"));
    expect(await allowedLocalDir(path.join(root, "team-a"), [path.join(base, "gone"), root])).toBe(path.join(root, "team-a"));
  });

  it("refuses what is outside every root, by real path, and says which roots are allowed", async () => {
    expect(await refusal(path.join(base, "secret"), [root])).toBe(
      `the flow's LocalStorage directory ${path.join(base, "secret")} is not allowed: the agent mounts only directories under ${root} (<home>/flows and --allow-local-dir)`,
    );
    // A sibling that only shares the root's name as a prefix.
    expect(await refusal(path.join(base, "flows-other"), [root])).toContain("is not allowed");
    expect(await refusal(path.join(root, ".."), [root])).toContain("is not allowed");
    // A directory whose name only starts with two dots is inside.
    await mkdir(path.join(root, "..flows"), { recursive: true });
    expect(await allowedLocalDir(path.join(root, "..flows"), [root])).toBe(path.join(root, "..flows"));
    expect(await refusal(path.join(root, "link-out"), [root])).toBe(
      `the flow's LocalStorage directory ${path.join(root, "link-out")} (${path.join(base, "secret")}, after symlinks) is not allowed: ` +
        `the agent mounts only directories under ${root} (<home>/flows and --allow-local-dir)`,
    );
    expect(await refusal("/var/run", [root])).toContain("is not allowed");
    expect(await refusal(root, [])).toContain("the agent mounts only directories under none");
  });

  it("refuses a relative or missing directory rather than let Docker create it", async () => {
    expect(await refusal("flows", [root])).toContain(`directory "flows" is not an absolute path`);
    expect(await refusal(path.join(root, "nope"), [root])).toBe(
      `the flow's LocalStorage directory ${path.join(root, "nope")} does not exist on this agent's host: register the flow where this agent runs, or give it DockerStorage`,
    );
  });
});

describe("the agent's allowed directories", () => {
  it("are <home>/flows and every --allow-local-dir, from flags, environment or file, as absolute paths", () => {
    const home = path.join(base, "home");
    const flows = path.join(home, "flows");
    const fromEnv = loadConfig({ env: { BERTH_HOME: home, BERTH_AGENT_ALLOW_LOCAL_DIRS: `${root},relative/dir` }, cwd: base });
    expect(compileAgentOptions(fromEnv).allowLocalDirs).toEqual([flows, root, path.resolve("relative/dir")]);
    const byDefault = loadConfig({ env: { BERTH_HOME: home }, cwd: base });
    expect(compileAgentOptions(byDefault).allowLocalDirs).toEqual([flows]);
    const fromFlags = loadConfig({ env: { BERTH_HOME: home }, cwd: base, flags: { agent: { allowLocalDirs: [flows, root] } } });
    expect(compileAgentOptions(fromFlags).allowLocalDirs).toEqual([flows, root]);
  });

  it("never include the home itself, where the server's database may be, nor a file", async () => {
    const home = path.join(base, "home");
    await mkdir(path.join(home, "flows"), { recursive: true });
    await writeFile(path.join(home, "berth.db"), "");
    const roots = compileAgentOptions(loadConfig({ env: { BERTH_HOME: home }, cwd: base })).allowLocalDirs;
    expect(await refusal(home, roots)).toContain("is not allowed");
    expect(await refusal(path.join(home, "berth.db"), [home])).toBe(`the flow's LocalStorage directory ${path.join(home, "berth.db")} is not a directory`);
    expect(await allowedLocalDir(path.join(home, "flows"), roots)).toBe(path.join(home, "flows"));
  });
});

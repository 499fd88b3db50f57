/**
 * The shape of the house, checked: no import cycles between modules, and folders that depend on each other
 * in one direction only. Type-only imports are left out (they vanish at run time, and a flow's environment
 * and its storage legitimately name each other's types).
 */
import path from "node:path";
import { parseCircular, parseDependencyTree } from "dpdm";
import { describe, expect, it } from "vitest";
import { REPO } from "./support/processes.js";

/**
 * Every folder of product code, lowest first: a module may import from its own folder and from folders
 * listed before its own, never after. The root index.ts (the SDK's public surface) comes last.
 */
const LAYERS = [
  "wire",
  "shared",
  "config",
  "engine",
  "client",
  "environments",
  "flows",
  "storage",
  "store",
  "images",
  "server",
  "flow-run",
  "agent",
  "cli",
  "bench",
  "(root)",
] as const;

const SOURCES = `{${LAYERS.filter((l) => l !== "(root)").join(",")}}/**/*.ts`;

async function dependencyTree() {
  return parseDependencyTree([SOURCES, "index.ts"], {
    context: REPO,
    transform: true,
    skipDynamicImports: false,
    include: /\.ts$/,
    exclude: /node_modules|\/dist\/|\/test\//,
    tsconfig: path.join(REPO, "tsconfig.json"),
  });
}

/** Node built-ins and installed packages: not berth's folders. */
function isExternal(id: string): boolean {
  return !id.endsWith(".ts") || id.includes("node_modules");
}

function folderOf(file: string): string {
  const rel = path.relative(REPO, path.resolve(REPO, file)).split(path.sep);
  return rel.length === 1 ? "(root)" : (rel[0] ?? "(root)");
}

describe("architecture", () => {
  it("has no import cycles (type-only imports aside)", async () => {
    const tree = await dependencyTree();
    expect(Object.keys(tree).length).toBeGreaterThan(100);
    expect(parseCircular(tree).map((cycle) => cycle.join(" → "))).toEqual([]);
  });

  it("has folders that depend on each other in one direction only", async () => {
    const tree = await dependencyTree();
    const rank = new Map<string, number>(LAYERS.map((layer, i) => [layer, i]));
    const unknown = new Set<string>();
    const backward = new Set<string>();
    for (const [file, deps] of Object.entries(tree)) {
      if (isExternal(file)) continue;
      const from = folderOf(file);
      if (!rank.has(from)) unknown.add(from);
      for (const dep of deps ?? []) {
        if (dep.id === null || isExternal(dep.id)) continue;
        const to = folderOf(dep.id);
        if (!rank.has(to)) unknown.add(to);
        if (from !== to && (rank.get(to) ?? -1) > (rank.get(from) ?? -1)) backward.add(`${from} → ${to} (${file} imports ${dep.request})`);
      }
    }
    expect([...unknown], "folders missing from LAYERS").toEqual([]);
    expect([...backward].sort()).toEqual([]);
  });
});

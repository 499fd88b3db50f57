/**
 * Where this berth is installed: the directory holding berth's package.json, found by walking up from this
 * module, so that it is the same answer from the compiled `dist/` and from the TypeScript sources, and for a
 * clone, a local `npm i berth` or a global install alike.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BerthError } from "../wire/errors.js";

interface Manifest {
  name?: string;
  version?: string;
}

let found: { root: string; manifest: Manifest } | undefined;

function locate(): { root: string; manifest: Manifest } {
  if (found) return found;
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, "utf8")) as Manifest;
      if (manifest.name === "berth") return (found = { root: dir, manifest });
    }
    if (path.dirname(dir) === dir) {
      throw new BerthError("BERTH_E_CONFIG", `cannot find berth's package.json above ${start}: is berth installed completely?`);
    }
  }
}

/** The berth package's root directory (with package.json, Dockerfile and dist/). */
export function packageRoot(): string {
  return locate().root;
}

/** berth's version, from its package.json. */
export function packageVersion(): string {
  return locate().manifest.version ?? "0.0.0";
}

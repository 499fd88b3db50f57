/**
 * Where this berth is installed: the directory holding berth's package.json, found by walking up from this
 * module, so that it is the same answer from the compiled `dist/` and from the TypeScript sources, and for a
 * clone, a local `npm i berth` or a global install alike.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BerthError, describeError } from "../wire/errors.js";

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

const HASHED_FILES = ["package.json", "package-lock.json"];

/**
 * sha256 (hex) of what makes this berth what it is: package.json, package-lock.json and every file under
 * dist/. Two installs with the same identity run flows the same way; the berth image's tag and the tags of
 * storage images built on it derive from it.
 */
export async function packageIdentity(root: string = packageRoot()): Promise<string> {
  const hash = createHash("sha256");
  for (const name of HASHED_FILES) {
    const content = await readFile(path.join(root, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" && name === "package-lock.json") return undefined;
      throw new BerthError("BERTH_E_CONFIG", `cannot read ${path.join(root, name)}: ${describeError(err)}`, { cause: err });
    });
    if (content !== undefined) hash.update(`file\0${name}\0${content.length}\0`).update(content);
  }
  const dist = path.join(root, "dist");
  const files = await listFiles(dist);
  // Read in parallel, hash in a fixed order: the hash must not depend on which read finishes first.
  const contents = await Promise.all(files.map((file) => readFile(path.join(dist, file))));
  files.forEach((file, i) => {
    const content = contents[i] ?? Buffer.alloc(0);
    hash.update(`file\0dist/${file}\0${content.length}\0`).update(content);
  });
  return hash.digest("hex");
}

async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch (err) {
    throw new BerthError("BERTH_E_CONFIG", `cannot read ${dir}: ${describeError(err)}: run \`npm run build\` first`, { cause: err });
  }
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath ?? e.path, e.name)).split(path.sep).join("/"))
    .sort();
}

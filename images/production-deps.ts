/**
 * The production dependency closure of a package: the installed packages that `dependencies`,
 * `optionalDependencies` and required `peerDependencies` reach, found the way Node resolves them (the
 * nearest `node_modules/<name>` walking up, never above the package root). Dev-only packages such as
 * typescript and vitest stay out of images.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { BerthError, describeError } from "../wire/errors.js";

interface Manifest {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

export async function readManifest(dir: string): Promise<Manifest> {
  const file = path.join(dir, "package.json");
  try {
    return JSON.parse(await readFile(file, "utf8")) as Manifest;
  } catch (err) {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `cannot read ${file}: ${describeError(err)}`, { cause: err });
  }
}

/**
 * Installed package directories, relative to `packageRoot` with "/" separators and sorted
 * ("node_modules/zod", "node_modules/pino/node_modules/x").
 */
export async function productionDependencies(packageRoot: string): Promise<string[]> {
  const root = path.resolve(packageRoot);
  const found = new Set<string>();
  const queue: Array<{ dir: string; manifest: Manifest }> = [{ dir: root, manifest: await readManifest(root) }];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const { dir, manifest } = item;
    for (const [name, required] of wanted(manifest)) {
      const location = await resolvePackage(root, dir, name);
      if (location === undefined) {
        if (!required) continue;
        throw new BerthError(
          "BERTH_E_IMAGE_BUILD",
          `${manifest.name ?? dir} depends on ${name}, which is not installed under ${root}: run \`npm install\` (or \`npm ci\`) first`,
        );
      }
      const relative = path.relative(root, location).split(path.sep).join("/");
      if (found.has(relative)) continue;
      found.add(relative);
      queue.push({ dir: location, manifest: await readManifest(location) });
    }
  }
  return [...found].sort();
}

/** Names this package needs at run time, each with whether its absence is an error. */
function wanted(manifest: Manifest): Array<[string, boolean]> {
  const out = new Map<string, boolean>();
  for (const name of Object.keys(manifest.dependencies ?? {})) out.set(name, true);
  for (const name of Object.keys(manifest.optionalDependencies ?? {})) out.set(name, false);
  for (const name of Object.keys(manifest.peerDependencies ?? {})) {
    // An optional peer is the host application's choice; taking it would drag dev tools (typescript) along.
    if (manifest.peerDependenciesMeta?.[name]?.optional) continue;
    if (!out.has(name)) out.set(name, false);
  }
  return [...out];
}

/** Node's lookup: `<dir>/node_modules/<name>` for `from` and each ancestor up to `root`, skipping node_modules dirs. */
async function resolvePackage(root: string, from: string, name: string): Promise<string | undefined> {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (path.basename(dir) !== "node_modules") {
      const candidate = path.join(dir, "node_modules", name);
      if (await isPackage(candidate)) return candidate;
    }
    if (dir === root || path.dirname(dir) === dir || !dir.startsWith(root)) return undefined;
  }
}

async function isPackage(dir: string): Promise<boolean> {
  try {
    return (await stat(path.join(dir, "package.json"))).isFile();
  } catch {
    // Not installed here; the caller keeps walking up.
    return false;
  }
}

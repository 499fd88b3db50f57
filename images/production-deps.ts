/**
 * The production dependency closure of a package: the installed packages that `dependencies`,
 * `optionalDependencies` and required `peerDependencies` reach, found the way Node resolves them (the
 * nearest `node_modules/<name>` walking up). Dev-only packages such as typescript and vitest stay out of
 * images.
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
 * Where the image puts berth: Node resolves berth's dependencies from here up, as it does on the host from
 * the package root up. The host's ancestors of the package root map to these, level by level.
 */
export const IMAGE_PACKAGE_DIR = "/opt/berth/node_modules/berth";

/** One installed package of the closure: where it is on the host, and where the image puts it. */
export interface InstalledPackage {
  name: string;
  version: string;
  /** Absolute, on the host. */
  hostDir: string;
  /** Absolute, in the image ("/opt/berth/node_modules/berth/node_modules/zod", "/opt/berth/node_modules/pino"). */
  imageDir: string;
}

/**
 * The installed packages berth needs at run time, wherever npm put them: in its own node_modules (a clone, or a
 * nested install), next to it (hoisted into the project's node_modules), or further up (workspaces). The
 * image mirrors the host's layout around the package, so Node finds each one there as it does here.
 * Sorted by imageDir.
 */
export async function productionClosure(packageRoot: string): Promise<InstalledPackage[]> {
  const root = path.resolve(packageRoot);
  const found = new Map<string, InstalledPackage>();
  const queue: Array<{ dir: string; manifest: Manifest }> = [{ dir: root, manifest: await readManifest(root) }];
  for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
    const { dir, manifest } = item;
    for (const [name, required] of wanted(manifest)) {
      const location = await resolvePackage(dir, name);
      if (location === undefined) {
        if (!required) continue;
        throw new BerthError(
          "BERTH_E_IMAGE_BUILD",
          `${manifest.name ?? dir} depends on ${name}, which is not installed where Node would find it from ${dir}: run \`npm install\` (or \`npm ci\`) first`,
        );
      }
      if (found.has(location) || location === root) continue;
      const dependency = await readManifest(location);
      found.set(location, { name, version: dependency.version ?? "", hostDir: location, imageDir: imageDirOf(root, location) });
      queue.push({ dir: location, manifest: dependency });
    }
  }
  return [...found.values()].sort((a, b) => (a.imageDir < b.imageDir ? -1 : a.imageDir > b.imageDir ? 1 : 0));
}

/**
 * Installed package directories under the package root, relative to it with "/" separators and sorted
 * ("node_modules/zod", "node_modules/pino/node_modules/x"): the closure of a clone or of a nested install.
 */
export async function productionDependencies(packageRoot: string): Promise<string[]> {
  const root = path.resolve(packageRoot);
  return (await productionClosure(root))
    .filter((p) => isUnder(root, p.hostDir))
    .map((p) => path.relative(root, p.hostDir).split(path.sep).join("/"))
    .sort();
}

/** The image's directory for a host directory: aligned on the nearest ancestor the package root shares with it. */
function imageDirOf(root: string, hostDir: string): string {
  let hostAncestor = root;
  let imageAncestor = IMAGE_PACKAGE_DIR;
  while (!isUnder(hostAncestor, hostDir)) {
    if (imageAncestor === "/" || path.dirname(hostAncestor) === hostAncestor) {
      throw new BerthError(
        "BERTH_E_IMAGE_BUILD",
        `berth's dependency ${hostDir} is installed too far above berth (${root}) for the image to keep the same layout: install berth in a project whose node_modules holds its dependencies`,
      );
    }
    hostAncestor = path.dirname(hostAncestor);
    imageAncestor = path.posix.dirname(imageAncestor);
    // Node looks in <dir>/node_modules for each ancestor that is not itself a node_modules: the same lookups
    // happen in the image only if the levels match (a clone's parent is not a node_modules, the image's is).
    if ((path.basename(hostAncestor) === "node_modules") !== (path.posix.basename(imageAncestor) === "node_modules")) {
      throw new BerthError(
        "BERTH_E_IMAGE_BUILD",
        `berth's dependency ${hostDir} is installed above berth's own directory ${root}, where the image cannot mirror it: install berth's dependencies in ${path.join(root, "node_modules")} (npm ci there)`,
      );
    }
  }
  return path.posix.join(imageAncestor, ...path.relative(hostAncestor, hostDir).split(path.sep));
}

function isUnder(dir: string, candidate: string): boolean {
  const relative = path.relative(dir, candidate);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
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

/** Node's lookup: `<dir>/node_modules/<name>` for `from` and each ancestor, skipping node_modules dirs themselves. */
async function resolvePackage(from: string, name: string): Promise<string | undefined> {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (path.basename(dir) !== "node_modules") {
      const candidate = path.join(dir, "node_modules", name);
      if (await isPackage(candidate)) return candidate;
    }
    if (path.dirname(dir) === dir) return undefined;
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

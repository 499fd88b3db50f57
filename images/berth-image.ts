/**
 * The berth image (server, agent and flow-run process in one), built from this berth's prebuilt dist/ and
 * production node_modules, with the single-stage Dockerfile derived from the final stage of the package's
 * Dockerfile (prebuilt-dockerfile.ts): an installed berth has no sources to compile, and needs no compiler.
 *
 * Its tag carries a content hash of everything that shapes it (the base image reference, package.json,
 * package-lock.json, the derived Dockerfile, every file under dist/), so an unchanged berth is found already
 * built and the check costs a hash and one engine call.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { BerthError, describeError } from "../wire/errors.js";
import type { ImageLogOptions } from "./options.js";
import { ensureNodeBaseImage } from "./node-base.js";
import type { ContainerEngine } from "../engine/port.js";
import { IMAGE_PACKAGE_DIR, productionClosure, readManifest, type InstalledPackage } from "./production-deps.js";
import { toTag } from "../engine/refs.js";
import { packageIdentity, packageRoot } from "../shared/package.js";
import { prebuiltDockerfile } from "./prebuilt-dockerfile.js";
import { TarTree } from "../shared/tar-tree.js";

export interface BerthImageOptions extends ImageLogOptions {
  /** The berth package: the directory with package.json, the Dockerfile, dist/ and node_modules/; default: this berth's. */
  packageRoot?: string;
  /** Image to build `FROM`; default: `ensureNodeBaseImage`'s choice (official node image, else offline). */
  baseImage?: string;
  /** Repository to tag; default "berth" (tags `berth:<version>-<hash>` and `berth:latest`). */
  imageName?: string;
  /** Every line of build output; default: only the build's steps go to `log`. */
  onOutput?: (line: string) => void;
}

export async function ensureBerthImage(engine: ContainerEngine, options: BerthImageOptions = {}): Promise<string> {
  const root = path.resolve(options.packageRoot ?? packageRoot());
  const { log, signal } = options;
  const base = await ensureNodeBaseImage(engine, {
    ...(options.baseImage !== undefined ? { baseImage: options.baseImage } : {}),
    ...(log ? { log } : {}),
    ...(signal ? { signal } : {}),
  });
  const manifest = await readManifest(root);
  const inputs = await berthImageInputs(root);
  const hash = await berthImageHash(inputs, base);
  const name = options.imageName ?? "berth";
  const ref = `${name}:${toTag(manifest.version ?? "0.0.0")}-${hash}`;
  if (await engine.imageExists(ref)) return ref;

  log?.(`building the berth image ${ref} from ${base}`);
  const context = await berthImageContext(inputs);
  await engine.buildImage({
    context: context.pack(signal),
    tag: ref,
    buildArgs: { BASE_IMAGE: base },
    labels: { "io.berth.image": "berth", "io.berth.version": manifest.version ?? "", "io.berth.content-hash": hash },
    onOutput: (line) => {
      options.onOutput?.(line);
      if (/^Step \d+\/\d+ : /.test(line)) log?.(line);
    },
    ...(signal ? { signal } : {}),
  });
  await engine.tagImage(ref, `${name}:latest`);
  return ref;
}

/** The Dockerfile that builds the image from `packageRoot`'s prebuilt files. */
export async function readDockerfile(packageRoot: string): Promise<string> {
  const file = path.join(packageRoot, "Dockerfile");
  const text = await readFile(file, "utf8").catch((err: unknown) => {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `cannot read ${file}: ${describeError(err)}`, { cause: err });
  });
  return prebuiltDockerfile(text, file);
}

/**
 * The berth image for a long-running process (an agent): made or found once, then checked to be still there
 * at each use (image garbage collection by another agent on the engine may remove it), and made again if
 * not. A failure is not remembered: the next use tries again.
 */
export function berthImageKeeper(engine: ContainerEngine, options: BerthImageOptions = {}): () => Promise<string> {
  let made: string | undefined;
  let making: Promise<string> | undefined;
  return async () => {
    if (made !== undefined && (await engine.imageExists(made))) return made;
    making ??= ensureBerthImage(engine, options).finally(() => (making = undefined));
    made = await making;
    return made;
  };
}

/** What the berth image is made of: the package, its derived Dockerfile and its production dependencies. */
export interface BerthImageInputs {
  root: string;
  dockerfile: string;
  closure: InstalledPackage[];
}

/** The image's build context keeps dependencies installed outside berth's own directory under this, as from /. */
const OUTSIDE = "outside";

export async function berthImageInputs(packageRoot: string): Promise<BerthImageInputs> {
  const root = path.resolve(packageRoot);
  const closure = await productionClosure(root);
  let dockerfile = await readDockerfile(root);
  // Installed from npm, berth's dependencies are usually next to it (hoisted): the image puts them where Node
  // finds them from berth, as on the host.
  if (closure.some((p) => !p.imageDir.startsWith(`${IMAGE_PACKAGE_DIR}/`))) {
    dockerfile += `\n# berth's dependencies that npm installed next to it, where Node finds them from berth\nCOPY ${OUTSIDE}/ /\n`;
  }
  return { root, dockerfile, closure };
}

/**
 * sha256 (12 hex digits) of the base image reference, the Dockerfile, the berth package's identity and where
 * each of its dependencies goes at which version: the same inputs give the same tag, other installs another.
 */
export async function berthImageHash(inputs: BerthImageInputs, baseImage: string): Promise<string> {
  const { root, dockerfile, closure } = inputs;
  const hash = createHash("sha256").update(`base\0${baseImage}\0`);
  hash.update(`file\0Dockerfile\0${Buffer.byteLength(dockerfile)}\0`).update(dockerfile);
  hash.update(`package\0${await packageIdentity(root)}\0`);
  for (const p of closure) hash.update(`dependency\0${p.imageDir}\0${p.name}@${p.version}\0`);
  return hash.digest("hex").slice(0, 12);
}

/**
 * The build context: the derived Dockerfile, package.json, dist/ and the production dependencies, nothing
 * else; those in berth's own node_modules under node_modules/, the others under outside/ as from /.
 */
export async function berthImageContext(inputs: BerthImageInputs): Promise<TarTree> {
  const { root, dockerfile, closure } = inputs;
  const tree = new TarTree();
  tree.data("Dockerfile", dockerfile);
  await tree.hostFile("package.json", path.join(root, "package.json"));
  await tree.hostTree("dist", path.join(root, "dist"));
  tree.dir("node_modules");
  for (const p of closure) {
    const inside = p.imageDir.startsWith(`${IMAGE_PACKAGE_DIR}/`);
    const at = inside ? p.imageDir.slice(IMAGE_PACKAGE_DIR.length + 1) : `${OUTSIDE}${p.imageDir}`;
    // A package's own node_modules holds nested dependencies, which the closure lists (and adds) separately.
    await tree.hostTree(at, p.hostDir, { skip: (rel) => rel === "node_modules" });
  }
  return tree;
}

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
import { productionDependencies, readManifest } from "./production-deps.js";
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
  const dockerfile = await readDockerfile(root);
  const hash = await berthImageHash(root, base, dockerfile);
  const name = options.imageName ?? "berth";
  const ref = `${name}:${toTag(manifest.version ?? "0.0.0")}-${hash}`;
  if (await engine.imageExists(ref)) return ref;

  log?.(`building the berth image ${ref} from ${base}`);
  const context = await berthImageContext(root, dockerfile);
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

/** sha256 (12 hex digits) of the base image reference, the Dockerfile and the berth package's identity. */
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

export async function berthImageHash(packageRoot: string, baseImage: string, dockerfile: string): Promise<string> {
  const hash = createHash("sha256").update(`base\0${baseImage}\0`);
  hash.update(`file\0Dockerfile\0${Buffer.byteLength(dockerfile)}\0`).update(dockerfile);
  hash.update(`package\0${await packageIdentity(packageRoot)}`);
  return hash.digest("hex").slice(0, 12);
}

/** The build context: the derived Dockerfile, package.json, dist/ and the production node_modules, nothing else. */
export async function berthImageContext(packageRoot: string, dockerfile: string): Promise<TarTree> {
  const tree = new TarTree();
  tree.data("Dockerfile", dockerfile);
  await tree.hostFile("package.json", path.join(packageRoot, "package.json"));
  await tree.hostTree("dist", path.join(packageRoot, "dist"));
  tree.dir("node_modules");
  for (const dependency of await productionDependencies(packageRoot)) {
    // A package's own node_modules holds nested dependencies, which the closure lists (and adds) separately.
    await tree.hostTree(dependency, path.join(packageRoot, dependency), { skip: (rel) => rel === "node_modules" });
  }
  return tree;
}

/**
 * A Node.js build image without a registry, for the Dockerfile's build stage (BUILD_IMAGE): it compiles
 * berth and its native addon better-sqlite3, so it needs python3, make, g++ and Node's headers besides node
 * and npm. The official `node:20-bookworm` is used when it is on the host; otherwise
 * `berth-node-build:<node version>` is made: a Debian bookworm root filesystem from debootstrap (minbase plus
 * python3, make and g++, without apt's caches) with this host's node, npm and headers where the official
 * images keep them (/usr/local/bin/node, /usr/local/lib/node_modules/npm, /usr/local/include/node), imported
 * with `docker import`.
 */
import { readFile, realpath } from "node:fs/promises";
import path from "node:path";
import type { ContainerEngine } from "../engine/port.js";
import { toTag } from "../engine/refs.js";
import { TarTree } from "../shared/tar-tree.js";
import { BerthError } from "../wire/errors.js";
import { checkDebootstrap, withDebianRootfs } from "./debootstrap.js";
import { findHostFile } from "./host-files.js";
import { addHostNode } from "./node-base.js";
import type { ImageLogOptions } from "./options.js";
import { CA_BUNDLE, IMAGE_PATH, addCaCertificates } from "./rootfs.js";

/** The build stage's base in the Dockerfile, for hosts that can pull (or already have) it. */
export const DEFAULT_NODE_BUILD_IMAGE = "node:20-bookworm";
/** The Debian release the official node:20 images are made from. */
export const DEBIAN_SUITE = "bookworm";
/** What node-gyp needs to compile an addon, on top of debootstrap's minbase. */
export const BUILD_PACKAGES = ["python3", "make", "g++"];

const HEADERS_HINT = "install Node.js's headers: the nodejs.org and NodeSource builds ship them in <prefix>/include/node (Debian: apt-get install libnode-dev)";

export interface NodeBuildOptions extends ImageLogOptions {
  /** A build image the user chose; used as given. Default: the official image if present, else the offline one. */
  buildImage?: string;
  /** Debian mirror for debootstrap; default http://deb.debian.org/debian. */
  mirror?: string;
  /** Where the root filesystem is made, then removed; default: the OS temp dir. */
  workDir?: string;
}

/** The offline build image's reference: one per host Node.js version. */
export function offlineNodeBuildImageRef(): string {
  return `berth-node-build:${toTag(process.versions.node)}`;
}

/** Returns an image reference to run the build stage `FROM`, making one on this host when none is present. */
export async function ensureNodeBuildImage(engine: ContainerEngine, options: NodeBuildOptions = {}): Promise<string> {
  if (options.buildImage !== undefined && options.buildImage !== "") return options.buildImage;
  if (await engine.imageExists(DEFAULT_NODE_BUILD_IMAGE)) return DEFAULT_NODE_BUILD_IMAGE;
  const ref = offlineNodeBuildImageRef();
  if (await engine.imageExists(ref)) return ref;
  options.log?.(`${DEFAULT_NODE_BUILD_IMAGE} is not on this host: making ${ref} with debootstrap and this host's Node.js ${process.version}`);
  await importNodeBuildImage(engine, ref, options);
  return ref;
}

/** Always makes the image (replacing the tag if it exists). */
export async function importNodeBuildImage(engine: ContainerEngine, ref: string, options: Omit<NodeBuildOptions, "buildImage"> = {}): Promise<void> {
  const { log, signal } = options;
  // Everything this host must provide is checked before the download, which takes minutes.
  await checkDebootstrap();
  const headers = await findNodeHeaders();
  const started = Date.now();
  log?.(`debootstrap: Debian ${DEBIAN_SUITE} minbase with ${BUILD_PACKAGES.join(", ")} (a minute or two)`);
  await withDebianRootfs({ suite: DEBIAN_SUITE, include: BUILD_PACKAGES, ...options }, async (rootfs) => {
    log?.(`debootstrap done in ${Math.round((Date.now() - started) / 1000)} s; importing ${ref}`);
    const tree = await nodeBuildRootfs(rootfs, headers, signal);
    // As in the offline base image: node trusts only its bundled roots unless told about the host's.
    const trust = tree.has(CA_BUNDLE) ? [`ENV NODE_EXTRA_CA_CERTS=${CA_BUNDLE}`] : [];
    await engine.importImage(tree.pack(signal), ref, {
      changes: [`ENV PATH=${IMAGE_PATH}`, `ENV NODE_VERSION=${process.versions.node}`, ...trust, "LABEL io.berth.image=node-build", 'CMD ["node"]'],
      ...(signal ? { signal } : {}),
    });
  });
}

/** The build image's root filesystem: Debian's tree from `rootfs`, with this host's Node.js added. */
export async function nodeBuildRootfs(rootfs: string, headers: string, signal?: AbortSignal): Promise<TarTree> {
  const tree = await new TarTree().hostTree("/", rootfs, { keepOwners: true, skip: isAptCache });
  await addHostNode(tree, signal);
  await tree.hostTree("/usr/local/include/node", headers);
  await addCaCertificates(tree);
  return tree;
}

/** Downloaded packages and package lists: `apt-get update` fetches fresh lists when they are wanted. */
export function isAptCache(relative: string): boolean {
  if (relative.startsWith("var/cache/apt/")) return /\.(deb|bin)$/.test(relative);
  if (relative.startsWith("var/lib/apt/lists/")) return !/^var\/lib\/apt\/lists\/(partial|lock)$/.test(relative);
  return false;
}

/** The directory with node_version.h for the running node (node-gyp builds against it), checked to be its version. */
async function findNodeHeaders(): Promise<string> {
  const prefix = path.dirname(path.dirname(await realpath(process.execPath)));
  const candidates = [...new Set([path.join(prefix, "include/node"), "/usr/local/include/node", "/usr/include/node"])];
  const header = await findHostFile(
    candidates.map((dir) => path.join(dir, "node_version.h")),
    HEADERS_HINT,
  );
  const text = await readFile(header, "utf8");
  const part = (name: string): string | undefined => new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(text)?.[1];
  const version = `${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`;
  if (version !== process.versions.node) {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `${header} is for Node.js ${version}, not this ${process.versions.node}: ${HEADERS_HINT}`);
  }
  return realpath(path.dirname(header));
}

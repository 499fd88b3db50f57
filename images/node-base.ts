/**
 * A Node.js base image without a registry. The official `node:20-bookworm-slim` is used when it is already
 * on the host; otherwise `berth-node:<node version>` is made by `docker import` of a root filesystem taken
 * from this host: its `node`, the libraries node loads, its npm, and busybox for `/bin/sh` and the utilities
 * Dockerfile RUN lines use.
 */
import { realpath } from "node:fs/promises";
import path from "node:path";
import type { ImageLogOptions } from "./options.js";
import { addExecutable, findHostFile } from "./host-files.js";
import type { ContainerEngine } from "../engine/port.js";
import { toTag } from "../engine/refs.js";
import { CA_BUNDLE, IMAGE_PATH, addBusybox, addCaCertificates, baseRootfs } from "./rootfs.js";
import type { TarTree } from "../shared/tar-tree.js";

/** The base the Dockerfile names, for hosts that can pull (or already have) it. */
export const DEFAULT_NODE_IMAGE = "node:20-bookworm-slim";

const NPM_HINT = "install npm next to this Node.js (it ships with the nodejs.org and NodeSource builds; Debian: apt-get install npm)";

export interface NodeBaseOptions extends ImageLogOptions {
  /** A base image the user chose; used as given. Default: the official image if present, else the offline one. */
  baseImage?: string;
}

/** The offline image's reference: one per host Node.js version. */
export function offlineNodeImageRef(): string {
  return `berth-node:${toTag(process.versions.node)}`;
}

/** Returns an image reference to build Node.js images `FROM`, importing one from this host when none is present. */
export async function ensureNodeBaseImage(engine: ContainerEngine, options: NodeBaseOptions = {}): Promise<string> {
  if (options.baseImage !== undefined && options.baseImage !== "") return options.baseImage;
  if (await engine.imageExists(DEFAULT_NODE_IMAGE)) return DEFAULT_NODE_IMAGE;
  const ref = offlineNodeImageRef();
  if (await engine.imageExists(ref)) return ref;
  options.log?.(`${DEFAULT_NODE_IMAGE} is not on this host: importing ${ref} from this host's Node.js ${process.version}`);
  await importNodeBaseImage(engine, ref, options);
  return ref;
}

/** Always imports (replacing the tag if it exists). */
export async function importNodeBaseImage(engine: ContainerEngine, ref: string, options: ImageLogOptions = {}): Promise<void> {
  const tree = await nodeBaseRootfs(options.signal);
  // Node trusts only its bundled roots; pointing it at the host's bundle makes npm and flows work behind
  // the same TLS-inspecting proxies the host is configured for.
  const trust = tree.has(CA_BUNDLE) ? [`ENV NODE_EXTRA_CA_CERTS=${CA_BUNDLE}`] : [];
  await engine.importImage(tree.pack(options.signal), ref, {
    changes: [
      `ENV PATH=${IMAGE_PATH}`,
      `ENV NODE_VERSION=${process.versions.node}`,
      ...trust,
      `LABEL io.berth.image=node-base`,
      `CMD ["node"]`,
    ],
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/** The root filesystem of the offline Node.js image, described but not yet read. */
export async function nodeBaseRootfs(signal?: AbortSignal): Promise<TarTree> {
  const tree = baseRootfs();
  await addHostNode(tree, signal);
  await addBusybox(tree, signal);
  await addCaCertificates(tree);
  return tree;
}

/**
 * This host's node and npm where the official images have them (/usr/local/bin/node,
 * /usr/local/lib/node_modules/npm, npm and npx in /usr/local/bin), with the libraries node loads that the
 * tree does not have yet.
 */
export async function addHostNode(tree: TarTree, signal?: AbortSignal): Promise<void> {
  const node = await realpath(process.execPath);
  await addExecutable(tree, node, "/usr/local/bin/node", signal);
  const npm = await findNpm(node);
  await tree.hostTree("/usr/local/lib/node_modules/npm", npm);
  tree.symlink("/usr/local/bin/npm", "../lib/node_modules/npm/bin/npm-cli.js");
  tree.symlink("/usr/local/bin/npx", "../lib/node_modules/npm/bin/npx-cli.js");
}

/** npm as installed with this node: `<prefix>/lib/node_modules/npm`, or Debian's `/usr/share/nodejs/npm`. */
async function findNpm(node: string): Promise<string> {
  const prefix = path.dirname(path.dirname(node));
  const candidates = [
    path.join(prefix, "lib/node_modules/npm"),
    path.join(prefix, "share/nodejs/npm"),
    "/usr/local/lib/node_modules/npm",
    "/usr/lib/node_modules/npm",
  ];
  const found = await findHostFile([...new Set(candidates)].map((c) => path.join(c, "package.json")), NPM_HINT);
  return realpath(path.dirname(found));
}

/**
 * A DockerStorage's build context: a tar of the generated Dockerfile, the bundled flows and the `files` it
 * copies. It is made without a Docker engine, byte-identical for identical input (TarTree), and identified by
 * its sha256, so `berth register` can upload it once and any agent can build the same image from it.
 *
 * The Dockerfile builds FROM the image the storage names (`baseImage`), or, by default, FROM the berth image
 * of whoever builds it (`ARG BASE_IMAGE`): registering needs no engine to know which that is. The image's
 * tag (unless the storage sets one) is a hash of the context and, for the default base, of the berth package
 * that made it, so an unchanged flow on an unchanged berth is never rebuilt.
 */
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { TarTree } from "../shared/tar-tree.js";
import { BerthError, describeError } from "../wire/errors.js";
import { IMAGE_FLOWS_DIR } from "../wire/constants.js";
import type { BuildContextRef } from "../wire/schema.js";
import type { DockerStorage } from "./docker-storage.js";

export interface PreparedContext {
  /** The tar archive. */
  archive: Buffer;
  /** How the server knows it, and whether the builder must supply BASE_IMAGE. */
  ref: BuildContextRef;
  /** The image reference to tag. */
  image: string;
  /** The Dockerfile in the archive, for messages. */
  dockerfile: string;
}

interface ContextFile {
  source: string;
  /** Name inside the build context. */
  contextName: string;
  target: string;
}

/**
 * Makes the storage's build context and fixes its image tag. `berthIdentity` is this berth's package identity
 * (shared/package.ts): what the default base image will be built from.
 */
export async function prepareDockerContext(storage: DockerStorage, options: { berthIdentity: string; signal?: AbortSignal }): Promise<PreparedContext> {
  const sources = storage.flowSources();
  const missing = Object.keys(storage.flows).filter((name) => !sources.has(name));
  if (missing.length > 0) {
    throw new BerthError(
      "BERTH_E_FLOW_DEFINITION",
      `no bundled source for flow(s) ${missing.map((m) => `"${m}"`).join(", ")}: register flows with \`berth register FILE\``,
    );
  }
  if (Object.keys(storage.flows).length === 0) {
    throw new BerthError("BERTH_E_FLOW_DEFINITION", "this DockerStorage holds no flows: call storage.addFlow(flow) first");
  }
  const files = Object.entries(storage.options.files ?? {}).map(
    ([source, target], i): ContextFile => ({ source: path.resolve(source), contextName: `files/${i}`, target }),
  );
  const berthBase = storage.options.baseImage === undefined;
  const dockerfile = renderDockerfile(storage, files);
  const tree = new TarTree().data("/Dockerfile", dockerfile).dir("/flows");
  for (const [name, location] of Object.entries(storage.flows)) {
    tree.data(`/flows/${path.basename(location)}`, sources.get(name) ?? "");
  }
  for (const file of files) {
    let info;
    try {
      info = await stat(file.source);
    } catch (err) {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `DockerStorage files: cannot read ${file.source}: ${describeError(err)}`, { cause: err });
    }
    if (info.isDirectory()) await tree.hostTree(`/${file.contextName}`, file.source);
    else await tree.hostFile(`/${file.contextName}`, file.source);
  }
  const archive = await collect(tree.pack(options.signal));
  const sha256 = createHash("sha256").update(archive).digest("hex");
  const tag = createHash("sha256")
    .update(`context\0${sha256}\0`)
    .update(berthBase ? `berth\0${options.berthIdentity}` : `base\0${storage.options.baseImage ?? ""}`)
    .digest("hex")
    .slice(0, 12);
  storage.setContentHash(tag);
  const ref: BuildContextRef = { sha256, size: archive.length, berthBase };
  storage.setBuildContext(ref);
  return { archive, ref, image: storage.name, dockerfile };
}

export function renderDockerfile(storage: DockerStorage, files: readonly ContextFile[]): string {
  const base = storage.options.baseImage;
  // The berth image differs from host to host (its tag carries the Node.js base it was built on): the
  // builder, a user's machine or an agent, names its own.
  const lines = base === undefined ? ["ARG BASE_IMAGE", "FROM ${BASE_IMAGE}"] : [`FROM ${base}`];
  const env = Object.entries(storage.options.env ?? {});
  if (env.length > 0) lines.push(`ENV ${env.map(([k, v]) => `${k}=${envValue(v)}`).join(" \\\n    ")}`);
  for (const file of files) lines.push(`COPY ${file.contextName} ${JSON.stringify(file.target)}`);
  lines.push(`WORKDIR ${IMAGE_FLOWS_DIR}`);
  const deps = storage.options.dependencies ?? [];
  if (deps.length > 0) {
    // Installed beside the flows, so `import "dep"` from /opt/berth/flows resolves them first.
    lines.push(`RUN npm install --no-save --no-audit --no-fund --omit=dev ${deps.map(shellQuote).join(" ")}`);
  }
  lines.push(`COPY flows/ ${IMAGE_FLOWS_DIR}/`);
  lines.push(...(storage.options.extraDockerfileCommands ?? []));
  if (!storage.options.ignoreHealthchecks) {
    lines.push(`RUN ${JSON.stringify(["berth", "healthcheck", ...Object.values(storage.flows)])}`);
  }
  lines.push(`LABEL io.berth.storage="docker"`);
  return `${lines.join("\n")}\n`;
}

/** A double-quoted ENV value the builder takes verbatim: it would otherwise substitute `$NAME` and `${NAME}`. */
function envValue(value: string): string {
  return JSON.stringify(value).replace(/\$/g, "\\$");
}

function shellQuote(s: string): string {
  return /^[\w@./:^~=<>-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

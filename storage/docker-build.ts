/**
 * Builds a DockerStorage into an image: a generated Dockerfile, the bundled flows, the user's files, npm
 * dependencies, extra commands, and a build-time healthcheck that loads every flow inside the image.
 *
 * The default tag is a content hash of everything that goes into the image (the base image reference
 * included), so an unchanged flow is found already built and nothing is rebuilt.
 */
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import type { ContainerEngine } from "../engine/port.js";
import { TarTree } from "../shared/tar-tree.js";
import type { DockerStorage } from "./docker-storage.js";
import { IMAGE_FLOWS_DIR } from "../wire/schema.js";
import type { BuildContext, BuildOutcome } from "./storage.js";
import { HEALTHCHECK_FAILED_MARKER } from "./healthcheck-marker.js";

export interface DockerBuildContext extends BuildContext {
  /** The engine to build with; default: the local Docker engine. */
  engine?: ContainerEngine;
  /**
   * The image to build FROM when the storage names no `baseImage`: the berth image matching this berth,
   * which only the caller can produce (see images/); `berth register` passes it.
   */
  berthImage?: (signal?: AbortSignal) => Promise<string>;
}

interface ContextFile {
  source: string;
  /** Name inside the build context. */
  contextName: string;
  target: string;
}

export async function buildDockerStorage(storage: DockerStorage, context: DockerBuildContext): Promise<BuildOutcome> {
  const log = context.log ?? (() => {});
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

  const engine = context.engine ?? (await import("../engine/docker-engine.js")).createDockerEngine();
  await engine.ping(context.signal);
  const baseImage = storage.options.baseImage ?? (await defaultBaseImage(context));

  const files = Object.entries(storage.options.files ?? {}).map(
    ([source, target], i): ContextFile => ({ source: path.resolve(source), contextName: `files/${i}`, target }),
  );
  const dockerfile = renderDockerfile(storage, baseImage, files);
  const hash = await contentHash(dockerfile, sources, files);
  storage.setContentHash(hash);
  const image = storage.name;

  let built = false;
  if (storage.options.imageTag === undefined && (await engine.imageExists(image))) {
    log(`image ${image} is up to date (content unchanged); not rebuilding`);
  } else {
    log(`building image ${image} from ${baseImage}`);
    await buildImage(engine, storage, image, dockerfile, files, log, context.signal);
    built = true;
  }

  let pushed = false;
  if (storage.registryUrl !== "" && context.push !== false) {
    log(`pushing ${image} to ${storage.registryUrl}`);
    await engine.pushImage(image, context.signal);
    pushed = true;
  }
  return { location: image, built, pushed };
}

async function defaultBaseImage(context: DockerBuildContext): Promise<string> {
  if (!context.berthImage) {
    throw new BerthError(
      "BERTH_E_CONFIG",
      "DockerStorage has no baseImage and no berth image was provided to build FROM: set DockerStorage({ baseImage }) or build with `berth register`",
    );
  }
  return context.berthImage(context.signal);
}

export function renderDockerfile(storage: DockerStorage, baseImage: string, files: ContextFile[]): string {
  const lines = [`FROM ${baseImage}`];
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

async function contentHash(dockerfile: string, sources: ReadonlyMap<string, string>, files: ContextFile[]): Promise<string> {
  const hash = createHash("sha256").update(dockerfile);
  for (const [name, code] of [...sources].sort(([a], [b]) => a.localeCompare(b))) {
    hash.update(`\0flow:${name}\0`).update(code);
  }
  for (const file of files) await hashPath(hash, file.source, file.contextName);
  return hash.digest("hex").slice(0, 12);
}

async function hashPath(hash: ReturnType<typeof createHash>, source: string, name: string): Promise<void> {
  let info;
  try {
    info = await stat(source);
  } catch (err) {
    throw new BerthError("BERTH_E_FLOW_DEFINITION", `DockerStorage files: cannot read ${source}: ${describeError(err)}`, { cause: err });
  }
  if (info.isDirectory()) {
    for (const entry of (await readdir(source)).sort()) await hashPath(hash, path.join(source, entry), `${name}/${entry}`);
  } else {
    hash.update(`\0file:${name}\0`).update(await readFile(source));
  }
}

async function buildImage(
  engine: ContainerEngine,
  storage: DockerStorage,
  image: string,
  dockerfile: string,
  files: ContextFile[],
  log: (line: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const context = new TarTree().data("/Dockerfile", dockerfile).dir("/flows");
  for (const [name, location] of Object.entries(storage.flows)) {
    context.data(`/flows/${path.basename(location)}`, storage.flowSources().get(name) ?? "");
  }
  for (const file of files) {
    if ((await stat(file.source)).isDirectory()) await context.hostTree(`/${file.contextName}`, file.source);
    else await context.hostFile(`/${file.contextName}`, file.source);
  }
  const output: string[] = [];
  try {
    await engine.buildImage({
      context: context.pack(signal),
      tag: image,
      labels: { "io.berth.storage": "docker" },
      onOutput: (line) => {
        output.push(line);
        if (line.includes(HEALTHCHECK_FAILED_MARKER) || line.includes("berth healthcheck:")) log(line.trim());
      },
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    throw healthcheckError(image, output, err) ?? err;
  }
}

/** Turns a failed build whose healthcheck reported failures into one error naming each failed check. */
function healthcheckError(image: string, output: string[], err: unknown): BerthError | undefined {
  if (!isBerthError(err)) return undefined;
  const detailOutput = (err.details as { output?: unknown } | undefined)?.output;
  const lines = [...output, ...(Array.isArray(detailOutput) ? detailOutput.map(String) : [])];
  const failures = [
    ...new Set(
      lines.flatMap((l) => l.split("\n")).filter((l) => l.includes(HEALTHCHECK_FAILED_MARKER)).map((l) => l.slice(l.indexOf(HEALTHCHECK_FAILED_MARKER) + HEALTHCHECK_FAILED_MARKER.length).trim()),
    ),
  ];
  if (failures.length === 0) return undefined;
  return new BerthError(
    "BERTH_E_HEALTHCHECK",
    `the healthcheck of ${image} failed:\n${failures.map((f) => `  - ${f}`).join("\n")}`,
    { cause: err, details: { failures } },
  );
}

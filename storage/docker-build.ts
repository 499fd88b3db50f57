/**
 * Builds a storage image from its build context (build-context.ts): on the machine that registers the flow
 * (`berth register`, through DockerStorage.build), or on an agent that has neither the image nor a registry
 * to pull it from. Either way the in-image healthcheck runs as the last step of the build, and a failure
 * names each failed check; a failed build tags nothing.
 */
import { Readable } from "node:stream";
import type { ContainerEngine } from "../engine/port.js";
import { packageIdentity } from "../shared/package.js";
import { BerthError, isBerthError } from "../wire/errors.js";
import { prepareDockerContext, type PreparedContext } from "./build-context.js";
import type { DockerStorage } from "./docker-storage.js";
import { HEALTHCHECK_FAILED_MARKER } from "./healthcheck-marker.js";
import type { BuildContext, BuildOutcome } from "./storage.js";

export interface DockerBuildContext extends BuildContext {
  /** The engine to build with; default: the local Docker engine. */
  engine?: ContainerEngine;
  /**
   * The image to build FROM when the storage names no `baseImage`: the berth image matching this berth,
   * which only the caller can produce (see images/); `berth register` passes it.
   */
  berthImage?: (signal?: AbortSignal) => Promise<string>;
  /** The storage's build context, when the caller made it already (`berth register` uploads the same one). */
  prepared?: PreparedContext;
}

export async function buildDockerStorage(storage: DockerStorage, context: DockerBuildContext): Promise<BuildOutcome> {
  const log = context.log ?? (() => {});
  const prepared =
    context.prepared ?? (await prepareDockerContext(storage, { berthIdentity: await packageIdentity(), ...(context.signal ? { signal: context.signal } : {}) }));
  const { image } = prepared;
  const engine = context.engine ?? (await import("../engine/docker-engine.js")).createDockerEngine();
  await engine.ping(context.signal);

  let built = false;
  if (storage.options.imageTag === undefined && (await engine.imageExists(image))) {
    log(`image ${image} is up to date (content unchanged); not rebuilding`);
  } else {
    const baseImage = prepared.ref.berthBase ? await berthBaseImage(context) : storage.options.baseImage;
    log(`building image ${image} from ${baseImage ?? "its base"}`);
    await buildFromContext(engine, {
      archive: prepared.archive,
      image,
      ...(prepared.ref.berthBase && baseImage ? { berthImage: baseImage } : {}),
      onOutput: (line) => {
        if (line.includes(HEALTHCHECK_FAILED_MARKER) || line.includes("berth healthcheck:")) log(line.trim());
      },
      ...(context.signal ? { signal: context.signal } : {}),
    });
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

async function berthBaseImage(context: DockerBuildContext): Promise<string> {
  if (!context.berthImage) {
    throw new BerthError(
      "BERTH_E_CONFIG",
      "DockerStorage has no baseImage and no berth image was provided to build FROM: set DockerStorage({ baseImage }) or build with `berth register`",
    );
  }
  return context.berthImage(context.signal);
}

export interface ContextBuild {
  /** The build context's tar archive. */
  archive: Buffer;
  /** The reference to tag the image with. */
  image: string;
  /** The berth image, for a context that builds FROM it (ARG BASE_IMAGE). */
  berthImage?: string;
  /** Labels for the image, besides io.berth.storage. */
  labels?: Record<string, string>;
  /** Every line of the build's output. */
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
}

/** Builds and tags the image; a healthcheck failure becomes BERTH_E_HEALTHCHECK naming each failed check. */
export async function buildFromContext(engine: ContainerEngine, build: ContextBuild): Promise<void> {
  const output: string[] = [];
  try {
    await engine.buildImage({
      context: Readable.from([build.archive]),
      tag: build.image,
      ...(build.berthImage ? { buildArgs: { BASE_IMAGE: build.berthImage } } : {}),
      labels: { ...build.labels, "io.berth.storage": "docker" },
      onOutput: (line) => {
        output.push(line);
        build.onOutput?.(line);
      },
      ...(build.signal ? { signal: build.signal } : {}),
    });
  } catch (err) {
    throw healthcheckError(build.image, output, err) ?? err;
  }
}

/** Turns a failed build whose healthcheck reported failures into one error naming each failed check. */
function healthcheckError(image: string, output: string[], err: unknown): BerthError | undefined {
  if (!isBerthError(err)) return undefined;
  const detailOutput = (err.details as { output?: unknown } | undefined)?.output;
  const lines = [...output, ...(Array.isArray(detailOutput) ? detailOutput.map(String) : [])];
  const failures = [
    ...new Set(
      lines
        .flatMap((l) => l.split("\n"))
        .filter((l) => l.includes(HEALTHCHECK_FAILED_MARKER))
        .map((l) => l.slice(l.indexOf(HEALTHCHECK_FAILED_MARKER) + HEALTHCHECK_FAILED_MARKER.length).trim()),
    ),
  ];
  if (failures.length === 0) return undefined;
  return new BerthError("BERTH_E_HEALTHCHECK", `the healthcheck of ${image} failed:\n${failures.map((f) => `  - ${f}`).join("\n")}`, {
    cause: err,
    details: { failures },
  });
}

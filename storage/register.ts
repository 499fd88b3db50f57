/**
 * `berth register FILE`: load the flow on this host and check its graph, bundle it for its storage, upload
 * the storage's build context (a DockerStorage's: content-addressed, so an unchanged context is uploaded
 * once), build and push the image here when there is an engine to build with, then register the flow's
 * serialized form. With no engine (or `build: false`), the first agent that needs the image builds it from
 * the uploaded context.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { ApiClient } from "../client/api-client.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import type { BuildContextRef, FlowRegistered } from "../wire/schema.js";
import { packageIdentity } from "../shared/package.js";
import { prepareDockerContext, type PreparedContext } from "./build-context.js";
import type { ContainerEngine } from "../engine/port.js";
import { environmentWarnings } from "../environments/serialize.js";
import type { Flow } from "../flows/flow.js";
import { bundleFlowFile } from "./bundle.js";
import { DockerStorage, isDockerStorage } from "./docker-storage.js";
import { isStorage, pickFlow, type BuildOutcome, type Storage } from "./storage.js";

export interface RegisterOptions {
  client: ApiClient;
  /** Extra labels for the flow (`--label`). */
  labels?: string[];
  /** Push to the storage's registry, when it has one (default true). */
  push?: boolean;
  /** The engine to build with; without one (or with `build: false`) the image is left for agents to build. */
  engine?: ContainerEngine;
  /** Build (and push) the storage image here (default true, when there is an engine). */
  build?: boolean;
  /** The image to build FROM when the storage names none (the berth image; see images/). */
  berthImage?: (signal?: AbortSignal) => Promise<string>;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

export interface RegisterResult extends FlowRegistered {
  location: string;
  built: boolean;
  pushed: boolean;
  warnings: string[];
  /** The build context uploaded for agents, with whether this registration had to upload it. */
  context?: BuildContextRef & { uploaded: boolean };
}

/** Loads the flow a file exports, with berth resolved to this very package. */
export async function loadFlowFile(file: string, signal?: AbortSignal): Promise<Flow> {
  const code = await bundleFlowFile(file, { target: "host", ...(signal ? { signal } : {}) });
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-load-"));
  const bundled = path.join(dir, `flow-${randomUUID()}.mjs`);
  try {
    await writeFile(bundled, code);
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(bundled).href)) as Record<string, unknown>;
    } catch (err) {
      if (isBerthError(err)) throw new BerthError(err.code, `${file}: ${err.message}`, { cause: err });
      throw new BerthError("BERTH_E_FLOW_FILE", `loading ${file} failed: ${describeError(err)}`, { cause: err });
    }
    return pickFlow(module, file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function registerFlowFile(file: string, options: RegisterOptions): Promise<RegisterResult> {
  const log = options.log ?? (() => {});
  const signal = options.signal;
  const flow = await loadFlowFile(file, signal);
  flow.validate();
  const warnings = environmentWarnings(flow.environment);
  for (const w of warnings) log(`warning: ${w}`);

  const storage: Storage = isStorage(flow.storage) ? flow.storage : new DockerStorage();
  const external = isDockerStorage(storage) ? storage.dependencyNames : [];
  const source = await bundleFlowFile(file, { target: "image", external, ...(signal ? { signal } : {}) });
  storage.addFlow(flow, source);

  const buildHere = options.build !== false && options.engine !== undefined;
  let prepared: PreparedContext | undefined;
  let uploaded = false;
  let outcome: BuildOutcome;
  const upload = async (context: PreparedContext) => {
    const sent = await uploadContext(options.client, flow.name, context.ref, context.archive, signal);
    log(`build context ${context.ref.sha256.slice(0, 12)} (${context.ref.size} bytes): ${sent ? "uploaded" : "already on the server"}`);
    uploaded ||= sent;
  };
  if (isDockerStorage(storage)) {
    prepared = await prepareDockerContext(storage, { berthIdentity: await packageIdentity(), ...(signal ? { signal } : {}) });
    // First, before a build that may take minutes: a context too large, or a server too old, says so at once.
    await upload(prepared);
    outcome = buildHere ? await buildStorage(storage, options, prepared) : { location: prepared.image, built: false, pushed: false };
  } else {
    outcome = await buildStorage(storage, options);
  }

  const serialized = flow.serialize();
  const labels = [...new Set([...serialized.labels, ...storage.labels, ...(options.labels ?? [])])].sort();
  const storageSpec = storage.serialize();
  const contentHash = createHash("sha256")
    .update(JSON.stringify({ storage: storageSpec, source, flow: serialized, labels }))
    .digest("hex");
  const body = {
    name: flow.name,
    labels,
    storage: storageSpec,
    environment: serialized.environment,
    contentHash,
    parameters: serialized.parameters,
    tasks: serialized.tasks,
    runTimeoutMs: serialized.runTimeoutMs,
    recovery: serialized.recovery,
    schedule: serialized.schedule,
    catchUp: serialized.catchUp,
    maxConcurrentRuns: serialized.maxConcurrentRuns,
    resources: serialized.resources,
    runAs: serialized.runAs,
    placement: serialized.placement,
  };
  if (!prepared) {
    const registered = await options.client.registerFlow(body, signal);
    return { ...registered, location: outcome.location, built: outcome.built, pushed: outcome.pushed, warnings };
  }
  let registered: FlowRegistered;
  try {
    registered = await options.client.registerFlow(body, signal);
  } catch (err) {
    // Removed since the upload (a build of over an hour, after which the server drops contexts no flow
    // version names; a server restarted on an empty database): once more.
    if (!isBerthError(err, "BERTH_E_BUILD_CONTEXT_NOT_FOUND")) throw err;
    log(`the server no longer keeps build context ${prepared.ref.sha256.slice(0, 12)}; uploading it again`);
    await upload(prepared);
    registered = await options.client.registerFlow(body, signal);
  }
  return {
    ...registered,
    location: outcome.location,
    built: outcome.built,
    pushed: outcome.pushed,
    warnings,
    context: { ...prepared.ref, uploaded },
  };
}

function buildStorage(storage: Storage, options: RegisterOptions, prepared?: PreparedContext): Promise<BuildOutcome> {
  return storage.build({
    ...(prepared ? { prepared } : {}),
    ...(options.log ? { log: options.log } : {}),
    ...(options.push === undefined ? {} : { push: options.push }),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.berthImage ? { berthImage: options.berthImage } : {}),
  } as Parameters<Storage["build"]>[0]);
}

/** Uploads the context unless the server keeps it already; returns whether it had to. */
async function uploadContext(client: ApiClient, flowName: string, ref: BuildContextRef, archive: Buffer, signal?: AbortSignal): Promise<boolean> {
  if (await client.hasBuildContext(ref.sha256, signal)) return false;
  try {
    await client.uploadBuildContext(ref.sha256, archive, signal);
  } catch (err) {
    if (isBerthError(err, "BERTH_E_NOT_FOUND")) {
      throw new BerthError(
        "BERTH_E_NOT_FOUND",
        `the server at ${client.baseUrl} keeps no build contexts (${err.message}): it is older than this berth; upgrade it to register flows with DockerStorage`,
        { cause: err },
      );
    }
    if (isBerthError(err, "BERTH_E_PAYLOAD_TOO_LARGE")) {
      throw new BerthError(
        "BERTH_E_PAYLOAD_TOO_LARGE",
        `the build context of flow "${flowName}" is ${ref.size} bytes, more than the server takes: ${err.message}. Make DockerStorage({ files }) smaller, or raise the server's limit`,
        { cause: err },
      );
    }
    throw err;
  }
  return true;
}

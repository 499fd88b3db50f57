/**
 * `berth register FILE`: load the flow on this host, bundle it for its storage, build (and push) the
 * storage, then register the flow's serialized form with the server. Only metadata reaches the server.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { ApiClient } from "../client/api-client.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import type { FlowRegistered } from "../wire/schema.js";
import type { ContainerEngine } from "../engine/port.js";
import { environmentWarnings } from "../environments/serialize.js";
import type { Flow } from "../flows/flow.js";
import { bundleFlowFile } from "./bundle.js";
import { DockerStorage, isDockerStorage } from "./docker-storage.js";
import { isStorage, pickFlow, type Storage } from "./storage.js";

export interface RegisterOptions {
  client: ApiClient;
  /** Extra labels for the flow (`--label`). */
  labels?: string[];
  /** Push to the storage's registry, when it has one (default true). */
  push?: boolean;
  engine?: ContainerEngine;
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

  const outcome = await storage.build({
    log,
    ...(options.push === undefined ? {} : { push: options.push }),
    ...(signal ? { signal } : {}),
    ...(options.engine ? { engine: options.engine } : {}),
    ...(options.berthImage ? { berthImage: options.berthImage } : {}),
  } as Parameters<Storage["build"]>[0]);

  const serialized = flow.serialize();
  const labels = [...new Set([...serialized.labels, ...storage.labels, ...(options.labels ?? [])])].sort();
  const storageSpec = storage.serialize();
  const contentHash = createHash("sha256")
    .update(JSON.stringify({ storage: storageSpec, source, flow: serialized, labels }))
    .digest("hex");
  const registered = await options.client.registerFlow(
    {
      name: flow.name,
      labels,
      storage: storageSpec,
      environment: serialized.environment,
      contentHash,
      parameters: serialized.parameters,
      tasks: serialized.tasks,
      runTimeoutMs: serialized.runTimeoutMs,
      recovery: serialized.recovery,
    },
    signal,
  );
  return { ...registered, location: outcome.location, built: outcome.built, pushed: outcome.pushed, warnings };
}

/**
 * How an agent gets a run's storage image: the image is on this host → use it; the pull policy allows a
 * pull and it succeeds → use it; otherwise build it here from the build context the server keeps for the
 * flow version, FROM this agent's berth image, with the same in-image healthcheck, tagged as registered.
 *
 * - `never` builds and never pulls; `if-not-present` pulls what is missing; `always` pulls every time, and
 *   runs the image on this host when the pull fails. A failed pull falls back to a build only when
 *   `buildOnPullFailure` (default on), and says so in the run's logs.
 * - Runs of one image and context on this agent build it once (single flight); the others wait for that
 *   build. A run that is cancelled stops waiting; the build goes on for the others, bounded by
 *   `agent.buildTimeout` and stopped when the agent stops.
 * - A failed build is remembered, so later runs fail at once with the same message instead of building
 *   again: a failed healthcheck until the flow is registered anew (which gives a new context), any other
 *   build failure (a bad Dockerfile line, an npm outage) for FAILED_BUILD_MEMORY_MS. The engine's own
 *   trouble (unreachable, aborted) is not remembered.
 * - A context whose content does not match its digest is refused; a failed build tags nothing.
 */
import { createHash } from "node:crypto";
import type { ApiClient } from "../client/api-client.js";
import { whileServerDown } from "../client/retry.js";
import type { AgentOptions } from "../config/compile.js";
import type { ContainerEngine } from "../engine/port.js";
import { formatMs } from "../shared/text.js";
import { buildFromContext } from "../storage/docker-build.js";
import { ImageIds } from "./image-ids.js";
import type { ImageSource } from "./metrics.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import type { LogLevel, StorageSpec } from "../wire/schema.js";

type DockerSpec = Extract<StorageSpec, { type: "docker" }>;

/** Where an image line of a run's log goes: the run's own logs, so `berth logs` shows the build. */
export type RunLog = (level: LogLevel, message: string) => void;

/** How long a build failure other than a failed healthcheck keeps later runs from building again. */
export const FAILED_BUILD_MEMORY_MS = 5 * 60_000;

/** Labels of an image built by an agent: which context it came from, FROM which base. */
export const CONTEXT_LABEL = "io.berth.context";
export const BASE_LABEL = "io.berth.base";

export interface ImageProviderDeps {
  client: ApiClient;
  engine: ContainerEngine;
  /** Image ids, remembered while nothing changes on the engine (image-ids.ts); default: asked of the engine each time. */
  imageIds?: ImageIds;
  options: Pick<AgentOptions, "pullPolicy" | "buildOnPullFailure" | "buildTimeoutMs" | "serverDownForMs">;
  /** The berth image of this agent, to build FROM. */
  berthImage: () => Promise<string>;
  /** Aborted when the agent stops: builds in flight stop with it. */
  stopping?: AbortSignal;
  /** Milliseconds since the epoch; a test's clock. */
  now?: () => number;
}

interface Remembered {
  error: BerthError;
  /** When the memory fades (ms since the epoch); Infinity for a failed healthcheck. */
  until: number;
}

export class ImageProvider {
  private readonly builds = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, Remembered>();

  private readonly imageIds: ImageIds;

  constructor(private readonly deps: ImageProviderDeps) {
    // Never following the engine's events, this one remembers nothing.
    this.imageIds = deps.imageIds ?? new ImageIds(deps.engine);
  }

  /** The id of the image `ref` names on this host, or undefined when none (or the engine does not tell ids). */
  imageId(ref: string): Promise<string | undefined> {
    return this.imageIds.lookup(ref);
  }

  /**
   * Makes sure the storage's image is on this host; resolves with its reference and how it got there.
   * `signal` is the run's: it stops this run's pull or its wait for a build, never a build other runs wait for.
   */
  async ensure(storage: DockerSpec, log: RunLog, signal?: AbortSignal): Promise<{ image: string; source: ImageSource; imageId?: string }> {
    const { engine, options } = this.deps;
    const image = storage.image;
    if (options.pullPolicy !== "always") {
      // The image's id, where the engine gives it, serves a warm pool (one lookup, not two).
      const imageId = await this.imageIds.lookup(image);
      if (imageId !== undefined) return { image, source: "present", imageId };
      if (!engine.imageId && (await engine.imageExists(image))) return { image, source: "present" };
    }
    if (options.pullPolicy !== "never") {
      try {
        await engine.pullImage(image, signal);
        this.imageIds.changed();
        return { image, source: "pulled" };
      } catch (err) {
        if (!isBerthError(err, "BERTH_E_IMAGE_NOT_FOUND")) throw err;
        if (options.pullPolicy === "always" && (await engine.imageExists(image))) {
          log("warn", `could not pull ${image} (${describeError(err)}); running the image this host has`);
          return { image, source: "present" };
        }
        if (!options.buildOnPullFailure) throw err;
        if (!storage.context) throw this.noContext(image, err);
        log("warn", `could not pull ${image} (${describeError(err)}); building it here from the registered build context`);
      }
    } else if (!storage.context) {
      throw this.noContext(image);
    }
    await waitFor(this.build(storage, log), signal);
    this.imageIds.changed();
    return { image, source: "built" };
  }

  private noContext(image: string, pullError?: unknown): BerthError {
    const why = pullError === undefined ? `is not on this host and the pull policy is "never"` : `could not be pulled (${describeError(pullError)})`;
    return new BerthError(
      "BERTH_E_IMAGE_NOT_FOUND",
      `image ${image} ${why}, and its flow was registered without a build context to build it from: register the flow again with this berth, or push the image`,
      { ...(pullError === undefined ? {} : { cause: pullError }) },
    );
  }

  /** One build per image and context at a time on this agent; a failed one is remembered. */
  private build(storage: DockerSpec, log: RunLog): Promise<void> {
    const key = `${storage.image}@${storage.context!.sha256}`;
    const now = (this.deps.now ?? Date.now)();
    const remembered = this.failures.get(key);
    if (remembered && remembered.until > now) {
      const { error } = remembered;
      const again = remembered.until === Infinity ? "fix the flow and register it again" : `this agent tries again after ${new Date(remembered.until).toISOString()}`;
      return Promise.reject(
        new BerthError(error.code, `an earlier build of ${storage.image} on this agent failed; ${again}:\n${error.message}`, {
          cause: error,
          ...(error.details === undefined ? {} : { details: error.details }),
        }),
      );
    }
    this.failures.delete(key);
    const running = this.builds.get(key);
    if (running) {
      log("info", `waiting for the build of ${storage.image} that another run on this agent started`);
      return running;
    }
    const build = this.buildOnce(storage, log)
      .catch((err: unknown) => {
        // Only a build that ran and failed is remembered, not the engine's or the server's trouble.
        if (isBerthError(err, "BERTH_E_HEALTHCHECK")) this.failures.set(key, { error: err, until: Infinity });
        else if (isBerthError(err, "BERTH_E_IMAGE_BUILD")) this.failures.set(key, { error: err, until: (this.deps.now ?? Date.now)() + FAILED_BUILD_MEMORY_MS });
        throw err;
      })
      .finally(() => this.builds.delete(key));
    this.builds.set(key, build);
    return build;
  }

  private async buildOnce(storage: DockerSpec, log: RunLog): Promise<void> {
    const { engine, options, client } = this.deps;
    const image = storage.image;
    const context = storage.context!;
    // Another agent on this host, or a pull by another run, may have made it meanwhile.
    if (await engine.imageExists(image)) return;
    // Stopped by the agent's stop or by agent.buildTimeout; the timer and the listener go with the build.
    const abort = new AbortController();
    const signal = abort.signal;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, options.buildTimeoutMs);
    const stop = () => abort.abort();
    this.deps.stopping?.addEventListener("abort", stop, { once: true });
    if (this.deps.stopping?.aborted) abort.abort();
    const started = performance.now();
    log("info", `building image ${image} from the registered build context ${context.sha256.slice(0, 12)} (${context.size} bytes)`);
    try {
      const archive = await whileServerDown(() => client.downloadBuildContext(context.sha256, context.size, signal), {
        forMs: options.serverDownForMs,
        signal,
      });
      const actual = createHash("sha256").update(archive).digest("hex");
      if (actual !== context.sha256) {
        throw new BerthError("BERTH_E_BAD_RESPONSE", `the build context downloaded for ${image} has sha256 ${actual}, not ${context.sha256}: not building from it`);
      }
      const berthImage = context.berthBase ? await this.deps.berthImage() : undefined;
      await buildFromContext(engine, {
        archive,
        image,
        labels: { [CONTEXT_LABEL]: context.sha256, ...(berthImage ? { [BASE_LABEL]: berthImage } : {}) },
        ...(berthImage ? { berthImage } : {}),
        onOutput: (line) => {
          if (/^Step \d+\/\d+ : /.test(line) || line.includes("berth healthcheck")) log("debug", line.trim());
        },
        signal,
      });
      log("info", `built image ${image} in ${((performance.now() - started) / 1000).toFixed(1)} s${berthImage ? ` FROM ${berthImage}` : ""}`);
    } catch (err) {
      if (timedOut) {
        throw new BerthError("BERTH_E_IMAGE_BUILD", `building ${image} took longer than agent.buildTimeout (${formatMs(options.buildTimeoutMs)}); stopped it`, {
          cause: err,
        });
      }
      throw err;
    } finally {
      clearTimeout(timer);
      this.deps.stopping?.removeEventListener("abort", stop);
    }
  }
}

/** Waits for `promise`, unless `signal` aborts first: then rejects with BERTH_E_ABORTED, and `promise` goes on. */
function waitFor<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(aborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted());
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function aborted(): BerthError {
  return new BerthError("BERTH_E_ABORTED", "stopped waiting for the image: the run no longer needs it");
}

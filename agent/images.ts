/**
 * How an agent gets a run's storage image: the image is on this host → use it; the pull policy allows a
 * pull and it succeeds → use it; otherwise build it here from the build context the server keeps for the
 * flow version, FROM this agent's berth image, with the same in-image healthcheck, tagged as registered.
 *
 * - `never` builds and never pulls; `if-not-present` pulls what is missing; `always` pulls every time. A
 *   failed pull falls back to a build only when `buildOnPullFailure` (default on), and says so in the run's
 *   logs.
 * - Runs of one image on this agent build it once (single flight); the others wait for that build.
 * - A build that fails (a healthcheck, a bad Dockerfile line, a missing npm package) is remembered: later
 *   runs of the same image fail at once with the same message instead of building again, until the flow is
 *   registered anew (which gives a new image).
 * - A context whose content does not match its digest is refused; a failed build tags nothing.
 */
import { createHash } from "node:crypto";
import type { ApiClient } from "../client/api-client.js";
import { whileServerDown } from "../client/retry.js";
import type { AgentOptions } from "../config/compile.js";
import type { ContainerEngine } from "../engine/port.js";
import { buildFromContext } from "../storage/docker-build.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import type { LogLevel, StorageSpec } from "../wire/schema.js";

type DockerSpec = Extract<StorageSpec, { type: "docker" }>;

/** Where an image line of a run's log goes: the run's own logs, so `berth logs` shows the build. */
export type RunLog = (level: LogLevel, message: string) => void;

export interface ImageProviderDeps {
  client: ApiClient;
  engine: ContainerEngine;
  options: Pick<AgentOptions, "pullPolicy" | "buildOnPullFailure" | "serverDownForMs">;
  /** The berth image of this agent, to build FROM. */
  berthImage: () => Promise<string>;
}

export class ImageProvider {
  private readonly builds = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, BerthError>();

  constructor(private readonly deps: ImageProviderDeps) {}

  /** Makes sure the storage's image is on this host; resolves with its reference. */
  async ensure(storage: DockerSpec, log: RunLog, signal?: AbortSignal): Promise<string> {
    const { engine, options } = this.deps;
    const image = storage.image;
    if (options.pullPolicy !== "always" && (await engine.imageExists(image))) return image;
    if (options.pullPolicy !== "never") {
      try {
        await engine.pullImage(image, signal);
        return image;
      } catch (err) {
        if (!isBerthError(err, "BERTH_E_IMAGE_NOT_FOUND")) throw err;
        if (!options.buildOnPullFailure) throw err;
        if (!storage.context) throw this.noContext(image, err);
        log("warn", `could not pull ${image} (${describeError(err)}); building it here from the registered build context`);
      }
    } else if (!storage.context) {
      throw this.noContext(image);
    }
    await this.build(storage, log, signal);
    return image;
  }

  private noContext(image: string, pullError?: unknown): BerthError {
    const why = pullError === undefined ? `is not on this host and the pull policy is "never"` : `could not be pulled (${describeError(pullError)})`;
    return new BerthError(
      "BERTH_E_IMAGE_NOT_FOUND",
      `image ${image} ${why}, and its flow was registered without a build context to build it from: register the flow again with this berth, or push the image`,
      { ...(pullError === undefined ? {} : { cause: pullError }) },
    );
  }

  /** One build per image at a time on this agent; a failed one is remembered. */
  private async build(storage: DockerSpec, log: RunLog, signal?: AbortSignal): Promise<void> {
    const image = storage.image;
    const failed = this.failures.get(image);
    if (failed) {
      throw new BerthError(failed.code, `an earlier build of ${image} on this agent failed; register the flow again once it is fixed:\n${failed.message}`, { cause: failed });
    }
    const running = this.builds.get(image);
    if (running) {
      log("info", `waiting for the build of ${image} that another run on this agent started`);
      return running;
    }
    const build = this.buildOnce(storage, log, signal).finally(() => this.builds.delete(image));
    this.builds.set(image, build);
    return build;
  }

  private async buildOnce(storage: DockerSpec, log: RunLog, signal?: AbortSignal): Promise<void> {
    const image = storage.image;
    const context = storage.context!;
    const started = performance.now();
    log("info", `building image ${image} from the registered build context ${context.sha256.slice(0, 12)} (${context.size} bytes)`);
    const archive = await whileServerDown(() => this.deps.client.downloadBuildContext(context.sha256, context.size, signal), {
      forMs: this.deps.options.serverDownForMs,
      signal,
    });
    const actual = createHash("sha256").update(archive).digest("hex");
    if (actual !== context.sha256) {
      throw new BerthError("BERTH_E_IMAGE_BUILD", `the build context downloaded for ${image} has sha256 ${actual}, not ${context.sha256}: not building from it`);
    }
    const berthImage = context.berthBase ? await this.deps.berthImage() : undefined;
    try {
      await buildFromContext(this.deps.engine, {
        archive,
        image,
        ...(berthImage ? { berthImage } : {}),
        onOutput: (line) => {
          if (/^Step \d+\/\d+ : /.test(line) || line.includes("berth healthcheck")) log("debug", line.trim());
        },
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      // The engine's trouble is not the flow's: only a build that ran and failed is remembered.
      if (isBerthError(err, "BERTH_E_IMAGE_BUILD") || isBerthError(err, "BERTH_E_HEALTHCHECK")) this.failures.set(image, err);
      throw err;
    }
    log("info", `built image ${image} in ${((performance.now() - started) / 1000).toFixed(1)} s${berthImage ? ` FROM ${berthImage}` : ""}`);
  }
}

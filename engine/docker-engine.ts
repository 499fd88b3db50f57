/**
 * The ContainerEngine over dockerode: the only module in berth that imports it. Every engine failure leaves
 * here as a BerthError (see errors.ts); every long call takes an AbortSignal.
 */
import type { Duplex, Readable } from "node:stream";
import Docker from "dockerode";
import { BerthError, describeError, isBerthError, type ErrorCode } from "../wire/errors.js";
import { BuildOutput } from "./build-output.js";
import { demultiplex, outputLines } from "./demux.js";
import type { OutputLine } from "../shared/output-frames.js";
import { abortedError, engineMessage, isAbort, isUnreachable, statusOf, toBerthError, unreachableError } from "./errors.js";
import type {
  BuildOptions,
  BuildResult,
  ContainerEvent,
  ContainerEventsOptions,
  ContainerInfo,
  ContainerEngine,
  ContainerInput,
  ContainerSpec,
  ImageEvent,
  ImageEventsOptions,
  ImageInfo,
} from "./port.js";
import { followProgress } from "./progress.js";
import { parseImageRef, registryHost } from "./refs.js";
import { createBody, short, toState } from "./container-body.js";
import { engineTarget, type EngineAddress } from "./address.js";
import { CONTAINER_ACTIONS, parseContainerEvent, parseImageEvent, sinceParameter } from "./events.js";

/** How far before the call image events are asked for (followImageEvents). */
const IMAGE_EVENTS_SLACK_MS = 5_000;

export interface DockerEngineOptions extends EngineAddress {
  /** How long `ping` waits for an answer; default 3000 ms. */
  pingTimeoutMs?: number;
}

export function createDockerEngine(options: DockerEngineOptions = {}): DockerEngine {
  return new DockerEngine(options);
}

export class DockerEngine implements ContainerEngine {
  private readonly docker: Docker;
  /** Where the engine is, as users would write it, for error messages. */
  readonly where: string;
  private readonly pingTimeoutMs: number;

  constructor(options: DockerEngineOptions = {}) {
    const target = engineTarget(options);
    this.where = target.where;
    this.docker = new Docker(target.options);
    this.pingTimeoutMs = options.pingTimeoutMs ?? 3000;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    // Our own timer and controller rather than AbortSignal.timeout/any: a ping issued while dockerd restarts
    // must end within pingTimeoutMs, whatever the socket does, or recovery would wait forever.
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(unreachableError(this.where, undefined, `no answer within ${this.pingTimeoutMs} ms`));
      }, this.pingTimeoutMs);
    });
    try {
      // dockerode accepts options on ping (abortSignal included); its typings only declare the callback form.
      const ping = this.docker.ping.bind(this.docker) as unknown as (opts: { abortSignal: AbortSignal }) => Promise<unknown>;
      await Promise.race([ping({ abortSignal: controller.signal }), timedOut]);
    } catch (err) {
      if (isBerthError(err)) throw err;
      if (signal?.aborted) throw abortedError("docker ping", err);
      if (isUnreachable(err) || statusOf(err) === undefined) throw unreachableError(this.where, err);
      throw this.fail(err, "docker ping", "BERTH_E_DOCKER_UNAVAILABLE");
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw this.fail(err, `inspecting image ${ref}`, "BERTH_E_INTERNAL");
    }
  }

  async imageId(ref: string): Promise<string | undefined> {
    try {
      return ((await this.docker.getImage(ref).inspect()) as { Id: string }).Id;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.fail(err, `inspecting image ${ref}`, "BERTH_E_INTERNAL");
    }
  }

  async pullImage(ref: string, signal?: AbortSignal): Promise<void> {
    const notFound = (error: string, cause?: unknown): BerthError =>
      new BerthError("BERTH_E_IMAGE_NOT_FOUND", `cannot pull image ${ref} from ${registryHost(ref)}: ${error}`, {
        ...(cause === undefined ? {} : { cause }),
        details: { image: ref, registry: registryHost(ref) },
      });
    try {
      const stream = (await this.docker.pull(ref, { abortSignal: signal })) as Readable;
      const { error } = await followProgress(stream, () => {}, signal);
      if (error !== undefined) throw notFound(error);
    } catch (err) {
      if (isBerthError(err) || isAbort(err, signal) || isUnreachable(err)) throw this.fail(err, `pulling ${ref}`, "BERTH_E_IMAGE_NOT_FOUND", { signal });
      throw notFound(engineMessage(err), err);
    }
  }

  async buildImage(options: BuildOptions): Promise<BuildResult> {
    const { tag, signal } = options;
    const output = new BuildOutput(options.onOutput);
    const contextFailure = watchForError(options.context);
    try {
      const stream = (await this.docker.buildImage(options.context, {
        t: tag,
        buildargs: options.buildArgs ?? {},
        labels: options.labels ?? {},
        // Intermediate containers of a failed step would otherwise pile up on the agent's host.
        rm: true,
        forcerm: true,
        // No registry is reachable from many berth hosts: the base image must already be local.
        pull: false,
        abortSignal: signal,
      } as Docker.ImageBuildOptions)) as Readable;
      const { error } = await followProgress(stream, (m) => output.take(m), signal);
      if (contextFailure.error !== undefined) throw contextFailure.error;
      if (error !== undefined) throw output.failure(tag, error);
      const imageId = output.finish();
      if (imageId === undefined) throw output.failure(tag, "the engine reported no image id (did the build context stream fail?)");
      return { imageId, output: output.lines };
    } catch (err) {
      if (contextFailure.error !== undefined) throw contextFailure.error;
      if (isBerthError(err) || isAbort(err, signal) || isUnreachable(err)) throw this.fail(err, `docker build of ${tag}`, "BERTH_E_IMAGE_BUILD", { signal });
      throw output.failure(tag, engineMessage(err), err);
    }
  }

  async pushImage(ref: string, signal?: AbortSignal): Promise<void> {
    const host = registryHost(ref);
    const { repository, tag } = parseImageRef(ref);
    const failed = (error: string, cause?: unknown): BerthError =>
      new BerthError("BERTH_E_PUSH", `cannot push ${ref} to registry ${host}: ${error}`, {
        ...(cause === undefined ? {} : { cause }),
        details: { image: ref, registry: host },
      });
    try {
      // An empty auth config is what the CLI sends for registries without login; some engines insist on the header.
      const stream = (await this.docker.getImage(repository).push({ tag, authconfig: {}, abortSignal: signal })) as Readable;
      const { error } = await followProgress(stream, () => {}, signal);
      if (error !== undefined) throw failed(error);
    } catch (err) {
      if (isBerthError(err) || isAbort(err, signal) || isUnreachable(err)) throw this.fail(err, `pushing ${ref}`, "BERTH_E_PUSH", { signal });
      throw failed(engineMessage(err), err);
    }
  }

  async importImage(rootfs: Readable, ref: string, options: { changes?: string[]; signal?: AbortSignal } = {}): Promise<void> {
    const { repository, tag } = parseImageRef(ref);
    const { signal } = options;
    const rootfsFailure = watchForError(rootfs);
    try {
      const stream = (await this.docker.importImage(rootfs, {
        repo: repository,
        tag,
        changes: options.changes ?? [],
        abortSignal: signal,
      })) as Readable;
      const { error } = await followProgress(stream, () => {}, signal);
      if (rootfsFailure.error !== undefined) throw rootfsFailure.error;
      if (error !== undefined) throw new BerthError("BERTH_E_IMAGE_BUILD", `docker import of ${ref} failed: ${error}`);
    } catch (err) {
      throw rootfsFailure.error ?? this.fail(err, `docker import of ${ref}`, "BERTH_E_IMAGE_BUILD", { signal });
    }
  }

  async ensureNetwork(name: string, labels: Record<string, string>): Promise<{ gateway: string }> {
    const what = `creating the Docker network ${name}`;
    try {
      let info = await this.docker.getNetwork(name).inspect().catch((err: unknown) => {
        if (statusOf(err) === 404) return undefined;
        throw err;
      });
      if (!info) {
        try {
          await this.docker.createNetwork({ Name: name, Driver: "bridge", Labels: labels, CheckDuplicate: true });
        } catch (err) {
          // Another process made it first: use theirs.
          if (statusOf(err) !== 409) throw err;
        }
        info = await this.docker.getNetwork(name).inspect();
      }
      const gateway = (info as { IPAM?: { Config?: { Gateway?: string }[] } }).IPAM?.Config?.find((c) => c.Gateway)?.Gateway;
      if (!gateway) throw new BerthError("BERTH_E_INTERNAL", `the Docker network ${name} has no gateway address: remove it (docker network rm ${name}) to have it made again`);
      return { gateway };
    } catch (err) {
      if (isBerthError(err)) throw err;
      throw this.fail(err, what, "BERTH_E_INTERNAL");
    }
  }

  async removeImage(ref: string): Promise<void> {
    try {
      await this.docker.getImage(ref).remove();
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.fail(err, `removing image ${ref}`, "BERTH_E_INTERNAL");
    }
  }

  async tagImage(source: string, target: string): Promise<void> {
    const { repository, tag } = parseImageRef(target);
    try {
      await this.docker.getImage(source).tag({ repo: repository, tag });
    } catch (err) {
      throw this.fail(err, `tagging ${source} as ${target}`, "BERTH_E_INTERNAL", { notFound: "BERTH_E_IMAGE_NOT_FOUND" });
    }
  }

  async runContainer(spec: ContainerSpec): Promise<string> {
    const { signal } = spec;
    let container: Docker.Container;
    try {
      // `_query`/`_body` keep the environment (which may hold the API token) out of the request URL.
      container = await this.docker.createContainer({
        _query: { name: spec.name },
        _body: createBody(spec),
        abortSignal: signal,
      } as unknown as Docker.ContainerCreateOptions);
    } catch (err) {
      throw this.fail(err, `creating container ${spec.name} from ${spec.image}`, "BERTH_E_INTERNAL", { signal, notFound: "BERTH_E_IMAGE_NOT_FOUND" });
    }
    spec.onCreated?.();
    try {
      await container.start({ abortSignal: signal });
      return container.id;
    } catch (err) {
      // A container that never started is nobody's: remove it so the deterministic name is free for a retry.
      const leftover = await this.removeContainer(container.id).then(
        () => "",
        (removeErr: unknown) => ` (and container ${short(container.id)} could not be removed: ${engineMessage(removeErr)})`,
      );
      throw this.fail(err, `starting container ${spec.name}${leftover}`, "BERTH_E_INTERNAL", { signal });
    }
  }

  async waitContainer(id: string, signal?: AbortSignal): Promise<number> {
    try {
      const result = (await this.docker.getContainer(id).wait({ abortSignal: signal })) as { StatusCode?: number };
      return result.StatusCode ?? -1;
    } catch (err) {
      throw this.fail(err, `waiting for container ${short(id)}`, "BERTH_E_INTERNAL", { signal });
    }
  }

  async inspectContainer(id: string): Promise<ContainerInfo | undefined> {
    try {
      const info = await this.docker.getContainer(id).inspect();
      const state = toState(info.State.Status);
      return {
        id: info.Id,
        name: info.Name.replace(/^\//, ""),
        image: info.Config.Image,
        imageId: info.Image,
        labels: info.Config.Labels ?? {},
        state,
        exitCode: state === "exited" || state === "dead" ? info.State.ExitCode : null,
        startedAt: info.State.StartedAt && !info.State.StartedAt.startsWith("0001-") ? info.State.StartedAt : undefined,
      };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.fail(err, `inspecting container ${short(id)}`, "BERTH_E_INTERNAL");
    }
  }

  /** Empty when the container is already gone: its output went with it. */
  async containerOutput(id: string, tail: number): Promise<string> {
    try {
      const logs: unknown = await this.docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false, tail });
      if (Buffer.isBuffer(logs)) return demultiplex(logs);
      // docker-modem parses a body that happens to be JSON (a TTY container printing JSON); give it back as text.
      return typeof logs === "string" ? logs : JSON.stringify(logs);
    } catch (err) {
      if (statusOf(err) === 404) return "";
      throw this.fail(err, `reading the output of container ${short(id)}`, "BERTH_E_INTERNAL");
    }
  }

  async *followOutput(id: string, signal?: AbortSignal): AsyncGenerator<OutputLine> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await this.docker.getContainer(id).logs({ stdout: true, stderr: true, follow: true, timestamps: true, abortSignal: signal })) as NodeJS.ReadableStream;
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.fail(err, `following the output of container ${short(id)}`, "BERTH_E_INTERNAL", { signal });
    }
    yield* outputLines(stream as AsyncIterable<Buffer>);
  }

  async stopContainer(id: string, graceMs: number): Promise<void> {
    try {
      // The engine counts the grace period in whole seconds; round up so a grace is never cut short.
      await this.docker.getContainer(id).stop({ t: Math.max(0, Math.ceil(graceMs / 1000)) });
    } catch (err) {
      const status = statusOf(err);
      if (status === 304 || status === 404) return;
      throw this.fail(err, `stopping container ${short(id)}`, "BERTH_E_INTERNAL");
    }
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const status = statusOf(err);
      // 409 here means another caller's removal is already in progress: the outcome is the same.
      if (status === 404 || (status === 409 && /already in progress/i.test(engineMessage(err)))) return;
      throw this.fail(err, `removing container ${short(id)}`, "BERTH_E_INTERNAL");
    }
  }

  async listImages(labels: Record<string, string>): Promise<ImageInfo[]> {
    try {
      const list = await this.docker.listImages({ filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) } });
      return list.map((i) => ({
        id: i.Id,
        tags: (i.RepoTags ?? []).filter((t) => t !== "<none>:<none>"),
        digests: (i.RepoDigests ?? []).filter((d) => !d.startsWith("<none>@")),
        labels: i.Labels ?? {},
        createdAt: i.Created * 1000,
        sizeBytes: i.Size,
      }));
    } catch (err) {
      throw this.fail(err, "listing images", "BERTH_E_INTERNAL");
    }
  }

  async openInput(id: string): Promise<ContainerInput> {
    let stream: Duplex;
    try {
      stream = (await this.docker.getContainer(id).attach({ stream: true, stdin: true, stdout: false, stderr: false, hijack: true })) as Duplex;
    } catch (err) {
      throw this.fail(err, `attaching to the input of container ${short(id)}`, "BERTH_E_INTERNAL");
    }
    // Lost when the container exits (its time to live) or the engine goes: then nothing can be sent.
    let lost: Error | undefined;
    const onLost = (err?: Error) => {
      lost ??= err ?? new Error("the attachment ended");
    };
    stream.on("error", onLost);
    stream.once("close", () => onLost());
    stream.once("end", () => onLost());
    return {
      send: (data) =>
        new Promise<void>((resolve, reject) => {
          const failed = (err: unknown) => reject(new BerthError("BERTH_E_INTERNAL", `writing to container ${short(id)}: ${describeError(err)}`, { cause: err }));
          if (lost) return failed(lost);
          stream.once("error", failed);
          // Ending our side detaches; the engine then closes the container's standard input (StdinOnce).
          stream.end(data, (err?: Error | null) => {
            stream.off("error", failed);
            stream.destroy();
            if (err) failed(err);
            else resolve();
          });
        }),
      close: () => stream.destroy(),
      get lost() {
        return lost !== undefined;
      },
    };
  }

  async renameContainer(id: string, name: string): Promise<void> {
    try {
      await this.docker.getContainer(id).rename({ name });
    } catch (err) {
      if (statusOf(err) === 409) throw new BerthError("BERTH_E_CONFLICT", `cannot rename container ${short(id)} to ${name}: another container has that name`, { cause: err });
      throw this.fail(err, `renaming container ${short(id)} to ${name}`, "BERTH_E_INTERNAL");
    }
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    try {
      const list = await this.docker.listContainers({
        all: true,
        filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
      });
      return list.map((c) => {
        const state = toState(c.State);
        const exited = /^Exited \((-?\d+)\)/.exec(c.Status)?.[1];
        return {
          id: c.Id,
          name: (c.Names[0] ?? "").replace(/^\//, ""),
          image: c.Image,
          imageId: c.ImageID,
          labels: c.Labels ?? {},
          state,
          exitCode: exited === undefined ? null : Number(exited),
        };
      });
    } catch (err) {
      throw this.fail(err, "listing containers", "BERTH_E_INTERNAL");
    }
  }

  followContainerEvents({ labels, signal }: ContainerEventsOptions): AsyncIterable<ContainerEvent> {
    const filters = { type: ["container"], event: [...CONTAINER_ACTIONS], label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) };
    // From the moment of the call, not of the first read: the generator's body runs only then.
    return this.events("following container events", filters, parseContainerEvent, sinceParameter(Date.now()), signal);
  }

  followImageEvents({ signal, onSubscribed }: ImageEventsOptions): AsyncIterable<ImageEvent> {
    // From a few seconds before the call: an engine whose clock is behind this host's (a VM, a remote engine)
    // would otherwise leave out the changes between the call and its subscription. Those before are harmless
    // to a follower that only needs to know that something changed.
    return this.events("following image events", { type: ["image"] }, parseImageEvent, sinceParameter(Date.now() - IMAGE_EVENTS_SLACK_MS), signal, onSubscribed);
  }

  /**
   * The engine's events that `filters` select, parsed line by line. The engine answers before it subscribes;
   * asking for events `since` the caller's call closes that gap (`onSubscribed` is called once it answered).
   */
  private async *events<T>(
    what: string,
    filters: Record<string, string[]>,
    parse: (line: string) => T | undefined,
    since: string,
    signal: AbortSignal,
    onSubscribed?: () => void,
  ): AsyncGenerator<T> {
    if (signal.aborted) return;
    let stream: Readable;
    try {
      stream = (await this.docker.getEvents({ since, filters, abortSignal: signal } as unknown as Docker.GetEventsOptions)) as Readable;
    } catch (err) {
      if (isAbort(err, signal)) return;
      throw this.fail(err, what, "BERTH_E_INTERNAL", { signal });
    }
    onSubscribed?.();
    // Decoded by the stream, so a character split between two chunks (a label value, say) stays whole.
    stream.setEncoding("utf8");
    let pending = "";
    try {
      for await (const chunk of stream) {
        pending += chunk as string;
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          const event = parseEvent(line, what, parse);
          if (event !== undefined) yield event;
        }
      }
    } catch (err) {
      if (isAbort(err, signal)) return;
      throw isBerthError(err) ? err : unreachableError(this.where, err, `the event stream broke: ${engineMessage(err)}`);
    } finally {
      // A consumer that stops reading early must not leave the request open.
      stream.destroy();
    }
    if (!signal.aborted) throw unreachableError(this.where, undefined, "the engine ended the event stream");
  }

  private fail(err: unknown, what: string, code: ErrorCode, extra: { signal?: AbortSignal; notFound?: ErrorCode } = {}): BerthError {
    return toBerthError(err, { where: this.where, what, code, ...extra });
  }
}

function parseEvent<T>(line: string, what: string, parse: (line: string) => T | undefined): T | undefined {
  try {
    return parse(line);
  } catch (err) {
    throw new BerthError("BERTH_E_INTERNAL", `${what} failed: the engine sent a line that is not an event: ${line.slice(0, 200)}`, { cause: err });
  }
}

/** Remembers the first error of a request body stream, which docker-modem would report only as a broken request. */
function watchForError(stream: Readable): { error: unknown } {
  const seen: { error: unknown } = { error: undefined };
  stream.once("error", (err) => {
    seen.error = err;
  });
  return seen;
}

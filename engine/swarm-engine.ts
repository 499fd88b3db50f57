/**
 * The ContainerEngine on Docker Swarm: each "container" is a service of one task, never restarted, on the
 * swarm the engine manages, so that the swarm, not the agent, places the run on a node. Images (pull, build,
 * import) are the manager engine's own, through the Docker engine; services carry the same labels a
 * container would, on the service and on its task's container.
 *
 * The service is replicated with one replica and restart condition "none" rather than a replicated job:
 * on Docker 20.10 (Debian 12's docker.io) removing a job service leaves its running task running, so a
 * cancel could not reach it, while a replicated service scaled to zero has its task stopped by the swarm.
 *
 * What a service cannot do that a container can, and how it is met:
 * - a service has no "stop": stopping scales it to zero, and the swarm stops its task with the grace period
 *   given at creation (`stopGraceMs`), SIGTERM then SIGKILL; the call returns once the task has ended. A zero
 *   grace (an abandoned attempt) still gets that creation-time grace.
 * - the task's exit code and output live as long as the service, or less: a task the swarm shut down on
 *   the scale to zero may be deleted at once, and then reads as ended with an unknown exit code.
 * - `no-new-privileges` cannot be set on a service through this engine's API version (1.41); capabilities,
 *   user, pids, memory and CPUs can, and are.
 * - published ports are not offered (flow runs publish none).
 */
import Docker from "dockerode";
import { BerthError, isBerthError, type ErrorCode } from "../wire/errors.js";
import { engineTarget, type EngineAddress } from "./address.js";
import { demultiplex, outputLines } from "./demux.js";
import type { OutputLine } from "../shared/output-frames.js";
import { DockerEngine } from "./docker-engine.js";
import { abortedError, statusOf, toBerthError } from "./errors.js";
import { sleep } from "../shared/backoff.js";
import type { BuildOptions, ContainerEngine, ContainerEventsOptions, ContainerInfo, ContainerSpec, ImageInfo } from "./port.js";
import type { Readable } from "node:stream";

/** How often a task's state is read while the agent waits for it to start or to end. */
const POLL_MS = 200;

/** Task states before the task's container runs. */
const NOT_YET = new Set(["new", "allocated", "pending", "assigned", "accepted", "ready", "preparing", "starting"]);
/** Task states after which nothing more happens to it. */
const ENDED = new Set(["complete", "failed", "shutdown", "rejected", "orphaned", "remove"]);

interface Task {
  ID: string;
  ServiceID: string;
  CreatedAt?: string;
  Status?: { State?: string; Timestamp?: string; Err?: string; ContainerStatus?: { ContainerID?: string; ExitCode?: number } };
  DesiredState?: string;
}

interface Service {
  ID: string;
  Version?: { Index?: number };
  Spec?: {
    Name?: string;
    Labels?: Record<string, string>;
    Mode?: { Replicated?: { Replicas?: number } };
    TaskTemplate?: { ContainerSpec?: { Image?: string; StopGracePeriod?: number } };
  };
}

export interface SwarmEngineOptions extends EngineAddress {
  pingTimeoutMs?: number;
}

export function createSwarmEngine(options: SwarmEngineOptions = {}): SwarmEngine {
  return new SwarmEngine(options);
}

export class SwarmEngine implements ContainerEngine {
  private readonly docker: Docker;
  /** The manager engine, for everything that is not a run: images, pings, events. */
  readonly images: DockerEngine;
  readonly where: string;

  constructor(options: SwarmEngineOptions = {}) {
    const target = engineTarget(options);
    this.where = target.where;
    this.docker = new Docker(target.options);
    this.images = new DockerEngine(options);
  }

  /**
   * Refuses an engine that is not a manager of an active swarm, saying what to do; call once at start.
   * Services can be created only on a manager.
   */
  async assertManager(): Promise<void> {
    await this.images.ping();
    let info: { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } };
    try {
      info = (await this.docker.info()) as typeof info;
    } catch (err) {
      throw this.fail(err, "reading the engine's swarm state", "BERTH_E_DOCKER_UNAVAILABLE");
    }
    const state = info.Swarm?.LocalNodeState ?? "inactive";
    if (state !== "active" || info.Swarm?.ControlAvailable !== true) {
      throw new BerthError(
        "BERTH_E_CONFIG",
        `--backend swarm needs a swarm manager, but the Docker engine at ${this.where} is ${state === "active" ? "a worker, not a manager" : `not in a swarm (${state})`}: ` +
          "run `docker swarm init` there (or point DOCKER_HOST at a manager), or use --backend docker",
      );
    }
  }

  ping(signal?: AbortSignal): Promise<void> {
    return this.images.ping(signal);
  }
  imageExists(ref: string): Promise<boolean> {
    return this.images.imageExists(ref);
  }
  pullImage(ref: string, signal?: AbortSignal): Promise<void> {
    return this.images.pullImage(ref, signal);
  }
  buildImage(options: BuildOptions) {
    return this.images.buildImage(options);
  }
  pushImage(ref: string, signal?: AbortSignal): Promise<void> {
    return this.images.pushImage(ref, signal);
  }
  importImage(rootfs: Readable, ref: string, options?: { changes?: string[]; signal?: AbortSignal }): Promise<void> {
    return this.images.importImage(rootfs, ref, options);
  }
  removeImage(ref: string): Promise<void> {
    return this.images.removeImage(ref);
  }

  /** This engine's images: on a swarm, each node keeps its own (see the README on several nodes). */
  listImages(labels: Record<string, string>): Promise<ImageInfo[]> {
    return this.images.listImages(labels);
  }
  tagImage(source: string, target: string): Promise<void> {
    return this.images.tagImage(source, target);
  }

  /** Task containers carry the service's labels: on one node, the engine's container events show them. */
  followContainerEvents(options: ContainerEventsOptions) {
    return this.images.followContainerEvents(options);
  }

  /**
   * Creates the service and waits until its task runs (or has already ended). A task the swarm cannot place
   * (no node satisfies the placement) or a node refused (its image missing there) fails here, with the
   * swarm's reason, and its service is removed so that the name is free again.
   */
  async runContainer(spec: ContainerSpec): Promise<string> {
    if (spec.ports !== undefined && spec.ports.length > 0) {
      throw new BerthError("BERTH_E_CONFIG", `container ${spec.name}: the swarm backend publishes no ports`);
    }
    let id: string;
    try {
      // `_body`-less: dockerode sends the options object as the body of POST /services/create.
      const created = (await this.docker.createService(serviceBody(spec) as unknown as Docker.CreateServiceOptions)) as { id?: string; ID?: string };
      id = created.id ?? created.ID ?? "";
    } catch (err) {
      throw this.fail(err, `creating service ${spec.name} from ${spec.image}`, "BERTH_E_INTERNAL", { signal: spec.signal });
    }
    spec.onCreated?.();
    try {
      for (;;) {
        const task = await this.latestTask(id);
        // Removed meanwhile (a later attempt of the run took its name): nothing to wait for.
        if (!task && !(await this.inspectContainer(id))) throw new BerthError("BERTH_E_NOT_FOUND", `service ${spec.name} was removed before its task started`);
        const state = task?.Status?.State ?? "new";
        const reason = task?.Status?.Err ?? "";
        if (state === "pending" && /no suitable node/i.test(reason)) {
          throw new BerthError("BERTH_E_CONFIG", `no node of the swarm can run ${spec.name}: ${reason} (placement: ${(spec.placement ?? []).join(", ") || "none"})`);
        }
        if (state === "rejected" || (state === "failed" && !task?.Status?.ContainerStatus?.ContainerID)) {
          const code: ErrorCode = /no such image|not found|pull access denied/i.test(reason) ? "BERTH_E_IMAGE_NOT_FOUND" : "BERTH_E_INTERNAL";
          throw new BerthError(code, `the swarm could not start ${spec.name} from ${spec.image}: ${reason || state}`);
        }
        if (!NOT_YET.has(state)) return id;
        await pause(POLL_MS, spec.startSignal, `starting service ${spec.name}`);
      }
    } catch (err) {
      await this.removeContainer(id).catch(() => undefined);
      if (isBerthError(err)) throw err;
      throw this.fail(err, `starting service ${spec.name}`, "BERTH_E_INTERNAL", { signal: spec.startSignal });
    }
  }

  async waitContainer(id: string, signal?: AbortSignal): Promise<number> {
    for (;;) {
      const info = await this.inspectContainer(id);
      if (!info) throw new BerthError("BERTH_E_NOT_FOUND", `service ${id} is gone`);
      if (info.state === "exited" || info.state === "dead") return info.exitCode ?? -1;
      await pause(POLL_MS, signal, `waiting for service ${id}`);
    }
  }

  async inspectContainer(id: string): Promise<ContainerInfo | undefined> {
    let service: Service;
    try {
      service = (await this.docker.getService(id).inspect()) as Service;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.fail(err, `inspecting service ${id}`, "BERTH_E_INTERNAL");
    }
    return toInfo(service, await this.latestTask(service.ID));
  }

  async *followOutput(id: string, signal?: AbortSignal): AsyncGenerator<OutputLine> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await this.docker.getService(id).logs({ stdout: true, stderr: true, follow: true, timestamps: true, abortSignal: signal } as Docker.ContainerLogsOptions & {
        follow: true;
      })) as NodeJS.ReadableStream;
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.fail(err, `following the output of service ${id}`, "BERTH_E_INTERNAL", { signal });
    }
    yield* outputLines(stream as AsyncIterable<Buffer>);
  }

  /** Empty when the service is already gone: its output went with it. */
  async containerOutput(id: string, tail: number): Promise<string> {
    try {
      const logs: unknown = await this.docker.getService(id).logs({ stdout: true, stderr: true, follow: false, tail } as Docker.ContainerLogsOptions & { follow: false });
      if (Buffer.isBuffer(logs)) return demultiplex(logs);
      return typeof logs === "string" ? logs : JSON.stringify(logs);
    } catch (err) {
      if (statusOf(err) === 404) return "";
      throw this.fail(err, `reading the output of service ${id}`, "BERTH_E_INTERNAL");
    }
  }

  /**
   * Scales the service to zero: the swarm stops its task (SIGTERM, then SIGKILL after the grace given at
   * creation). Resolves once the task has ended (its exit code then readable), or the service is gone.
   */
  async stopContainer(id: string, graceMs: number): Promise<void> {
    let stopGraceMs = graceMs;
    for (let attempt = 1; ; attempt++) {
      let service: Service;
      try {
        service = (await this.docker.getService(id).inspect()) as typeof service;
      } catch (err) {
        if (statusOf(err) === 404) return;
        throw this.fail(err, `inspecting service ${id}`, "BERTH_E_INTERNAL");
      }
      const info = toInfo(service, await this.latestTask(service.ID));
      if (info.state === "exited" || info.state === "dead") return;
      stopGraceMs = Math.max(graceMs, (service.Spec?.TaskTemplate?.ContainerSpec?.StopGracePeriod ?? 0) / 1e6);
      try {
        // `_query`/`_body`: docker-modem would otherwise put the whole spec, environment and run token
        // included, into the request URL.
        const update = { _query: { version: service.Version?.Index }, _body: { ...service.Spec, Mode: { Replicated: { Replicas: 0 } } } };
        await this.docker.getService(service.ID).update(update as unknown as Record<string, unknown>);
        break;
      } catch (err) {
        if (statusOf(err) === 404) return;
        // Another update came in between (the version moved on): read it again, once or twice.
        if (attempt < 3 && /out of sequence/i.test(String((err as Error).message))) continue;
        throw this.fail(err, `stopping service ${id}`, "BERTH_E_INTERNAL");
      }
    }
    // The swarm grants the grace the service was made with, whatever was asked now.
    const deadline = Date.now() + stopGraceMs + 30_000;
    while (Date.now() < deadline) {
      const tasks = await this.tasksOf(id).catch(() => []);
      if (tasks.every((t) => ENDED.has(t.Status?.State ?? ""))) return;
      await pause(POLL_MS, undefined, `stopping service ${id}`);
    }
    throw new BerthError("BERTH_E_INTERNAL", `the swarm did not stop the task of service ${id} within ${Math.round((stopGraceMs + 30_000) / 1000)} s`);
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getService(id).remove();
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.fail(err, `removing service ${id}`, "BERTH_E_INTERNAL");
    }
  }

  async listContainers(labels: Record<string, string>): Promise<ContainerInfo[]> {
    try {
      const services = (await this.docker.listServices({ filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) } })) as Service[];
      if (services.length === 0) return [];
      const tasks = (await this.docker.listTasks({ filters: { service: services.map((s) => s.ID) } })) as Task[];
      return services.map((service) => toInfo(service, newest(tasks.filter((t) => t.ServiceID === service.ID))));
    } catch (err) {
      throw this.fail(err, "listing services", "BERTH_E_INTERNAL");
    }
  }

  private async tasksOf(serviceId: string): Promise<Task[]> {
    try {
      return (await this.docker.listTasks({ filters: { service: [serviceId] } })) as Task[];
    } catch (err) {
      throw this.fail(err, `listing the tasks of service ${serviceId}`, "BERTH_E_INTERNAL");
    }
  }

  private async latestTask(serviceId: string): Promise<Task | undefined> {
    return newest(await this.tasksOf(serviceId));
  }

  private fail(err: unknown, what: string, code: ErrorCode, extra: { signal?: AbortSignal | undefined } = {}): BerthError {
    return toBerthError(err, { where: this.where, what, code, ...(extra.signal ? { signal: extra.signal } : {}) });
  }
}

/** The body of POST /services/create for a run: one task, no restart, the container's hardening and limits. */
export function serviceBody(spec: ContainerSpec): Record<string, unknown> {
  const mounts = (spec.binds ?? []).map((bind) => {
    const [source, target, mode] = bind.split(":");
    return { Type: "bind", Source: source, Target: target, ReadOnly: mode === "ro" };
  });
  const limits: Record<string, number> = {};
  if (spec.memoryBytes !== undefined) limits.MemoryBytes = spec.memoryBytes;
  if (spec.cpus !== undefined) limits.NanoCPUs = Math.round(spec.cpus * 1e9);
  if (spec.pidsLimit !== undefined) limits.Pids = spec.pidsLimit;
  return {
    Name: spec.name,
    Labels: spec.labels ?? {},
    Mode: { Replicated: { Replicas: 1 } },
    TaskTemplate: {
      ContainerSpec: {
        Image: spec.image,
        ...(spec.cmd ? { Args: spec.cmd } : {}),
        Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
        Labels: spec.labels ?? {},
        ...(spec.user !== undefined ? { User: spec.user } : {}),
        ...(spec.capDrop !== undefined && spec.capDrop.length > 0 ? { CapabilityDrop: spec.capDrop } : {}),
        ...(mounts.length > 0 ? { Mounts: mounts } : {}),
        ...(spec.stopGraceMs !== undefined ? { StopGracePeriod: Math.round(spec.stopGraceMs * 1e6) } : {}),
      },
      Resources: { Limits: limits },
      RestartPolicy: { Condition: "none", MaxAttempts: 0 },
      Placement: { Constraints: spec.placement ?? [] },
      ...(spec.network !== undefined ? { Networks: [{ Target: spec.network }] } : {}),
    },
  };
}

function newest(tasks: readonly Task[]): Task | undefined {
  return [...tasks].sort((a, b) => Date.parse(b.CreatedAt ?? "") - Date.parse(a.CreatedAt ?? ""))[0];
}

function toInfo(service: Service, task: Task | undefined): ContainerInfo {
  // Scaled to zero (stopped), the swarm may already have deleted the task it shut down: then it has ended,
  // its exit code unknown.
  const stopped = service.Spec?.Mode?.Replicated?.Replicas === 0;
  const state = task?.Status?.State ?? (stopped ? "shutdown" : "new");
  const ended = ENDED.has(state);
  const exitCode = task?.Status?.ContainerStatus?.ExitCode;
  return {
    id: service.ID,
    name: service.Spec?.Name ?? service.ID,
    image: service.Spec?.TaskTemplate?.ContainerSpec?.Image ?? "",
    labels: service.Spec?.Labels ?? {},
    state: NOT_YET.has(state) ? "created" : state === "running" ? "running" : ended && state !== "rejected" && state !== "orphaned" ? "exited" : ended ? "dead" : "running",
    exitCode: ended ? (exitCode ?? -1) : null,
    ...(state === "running" && task?.Status?.Timestamp ? { startedAt: task.Status.Timestamp } : {}),
  };
}

/** Waits `ms`; throws BERTH_E_ABORTED when `signal` aborts first. */
async function pause(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  await sleep(ms, signal, { keepAlive: true });
  if (signal?.aborted) throw abortedError(what, signal.reason);
}

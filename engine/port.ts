/**
 * The ContainerEngine port: everything berth asks of a container engine. `engine/docker-engine.ts` implements
 * it over dockerode for one Docker engine, and `engine/swarm-engine.ts` for Docker Swarm services (the only
 * modules that import dockerode); tests of the agent and storage run against the real engine through them.
 */
import type { Readable } from "node:stream";
import type { OutputLine } from "../shared/output-frames.js";

/** Labels put on everything berth creates, so that an agent can find what it owns after a restart. */
export const OWNER_LABEL = "io.berth.managed";
export const AGENT_LABEL = "io.berth.agent-id";
export const FLOW_RUN_LABEL = "io.berth.flow-run-id";
/** The lease epoch of the attempt a container runs. */
export const EPOCH_LABEL = "io.berth.epoch";

export interface BuildOptions {
  /** A tar stream of the build context, with a Dockerfile at its root. */
  context: Readable;
  /** Full image reference to tag, for example "localhost:5000/dev/my-flow:0a1b2c". */
  tag: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  /** Each line of build output, as it arrives. */
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
}

export interface BuildResult {
  imageId: string;
  /** The whole build output, for error reports. */
  output: string[];
}

export interface ContainerSpec {
  /** Deterministic name, e.g. "berth-run-<flowRunId>". */
  name: string;
  image: string;
  cmd?: string[];
  env?: Record<string, string>;
  labels?: Record<string, string>;
  /** "host", "bridge" or a user-defined network name; engine default when omitted. */
  network?: string;
  /** Container ports to publish on the host; none by default. */
  ports?: PortBinding[];
  /** Bind mounts, "host-path:container-path[:ro]". */
  binds?: string[];
  /** The user the command runs as ("uid:gid" or a name); the image's when omitted. */
  user?: string;
  /** Linux capabilities to drop ("ALL" for every one). */
  capDrop?: string[];
  /** Security options, such as "no-new-privileges". */
  securityOpt?: string[];
  /** Most processes (threads included) the container may have. */
  pidsLimit?: number;
  /** Memory limit in bytes (swap included: the same value, so none beyond it). */
  memoryBytes?: number;
  /** CPU limit, in CPUs (1.5 = one and a half). */
  cpus?: number;
  /**
   * Swarm placement constraints ("node.labels.zone==a"); engines that place nothing (one Docker engine)
   * ignore them.
   */
  placement?: string[];
  /** The stop grace period, for engines that must know it when the container is made (Swarm). */
  stopGraceMs?: number;
  /**
   * Ends the wait for the container to start where starting waits on a scheduler (Swarm: a node to take the
   * task, its image pulled there); what was made is then removed. Engines that start at once ignore it.
   */
  startSignal?: AbortSignal;
  signal?: AbortSignal;
  /** Called once the container (a swarm's service) is created, before it is started: timings per step. */
  onCreated?: () => void;
  /**
   * Keep the container's standard input open for one `openInput` (a warm container waits there for its run).
   * Engines without openInput ignore it.
   */
  openStdin?: boolean;
}

export interface PortBinding {
  containerPort: number;
  hostPort: number;
  /** Host address to bind; default "127.0.0.1", so nothing berth starts is reachable from other machines by accident. */
  hostIp?: string;
}

export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  /** The id of the image it runs, when the engine says (the reference in `image` may have moved since). */
  imageId?: string | undefined;
  labels: Record<string, string>;
  state: "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead";
  exitCode: number | null;
  /** When the engine started the container (RFC 3339 with nanoseconds), if it has. */
  startedAt?: string | undefined;
}

/** An image on the engine, as garbage collection weighs it. */
export interface ImageInfo {
  id: string;
  /** Its references (repository:tag); empty for an untagged image. */
  tags: string[];
  /** Its references by digest (repository@sha256:…), for images pulled from a registry. */
  digests: string[];
  labels: Record<string, string>;
  /** When it was made (ms since the epoch). */
  createdAt: number;
  sizeBytes: number;
}

/** The moments of a container's life that berth follows: its process began, its process ended, it was removed. */
export type ContainerAction = "start" | "die" | "destroy";

export interface ContainerEvent {
  action: ContainerAction;
  /** Full container id. */
  id: string;
  name: string;
  /** The container's labels, including those it inherited from its image. */
  labels: Record<string, string>;
  /**
   * When the engine recorded the event, in nanoseconds since the Unix epoch, on the engine's clock. Engines
   * that report only seconds give a multiple of 1e9.
   */
  timeNano: bigint;
  /** For "die": the exit code the engine reported. */
  exitCode?: number | undefined;
}

export interface ContainerEventsOptions {
  /** Only containers carrying every one of these labels with exactly these values. */
  labels: Record<string, string>;
  /** Ends the stream; iteration then finishes without an error. */
  signal: AbortSignal;
}

/** Something changed among the engine's images: a reference now names another image, or none. */
export interface ImageEvent {
  /** The engine's word for it: tag, untag, delete, pull, load, import… */
  action: string;
  /** The image's id (for pull, the reference pulled). */
  id: string;
}

export interface ImageEventsOptions {
  /** Ends the stream; iteration then finishes without an error. */
  signal: AbortSignal;
  /** Called once the engine has subscribed: every change after this moment is in the stream. */
  onSubscribed?: () => void;
}

/** A container's standard input, attached and held open (ContainerEngine.openInput). */
export interface ContainerInput {
  /** Writes `data` and closes the input: the container reads it to its end. Rejects once the attachment is lost. */
  send(data: string): Promise<void>;
  /** Drops the attachment without sending (the container then reads an empty input). */
  close(): void;
  /** True once the attachment has ended or failed (the container exited, the engine went): send would fail. */
  readonly lost: boolean;
}

export interface ContainerEngine {
  /** Throws BerthError BERTH_E_DOCKER_UNAVAILABLE, naming the socket and what to do, when the engine does not answer. */
  ping(signal?: AbortSignal): Promise<void>;
  imageExists(ref: string): Promise<boolean>;
  /** The id of the image `ref` names now, or undefined when there is none. Engines that cannot say leave it out. */
  imageId?(ref: string): Promise<string | undefined>;
  /** Throws BERTH_E_IMAGE_NOT_FOUND (naming the image and registry) when the pull fails. */
  pullImage(ref: string, signal?: AbortSignal): Promise<void>;
  /** Throws BERTH_E_IMAGE_BUILD with the failing step and the output tail when the build fails. */
  buildImage(options: BuildOptions): Promise<BuildResult>;
  /** Throws BERTH_E_PUSH naming the registry on failure. */
  pushImage(ref: string, signal?: AbortSignal): Promise<void>;
  /** `docker import`: a root filesystem tar stream becomes an image. */
  importImage(rootfs: Readable, ref: string, options?: { changes?: string[]; signal?: AbortSignal }): Promise<void>;
  removeImage(ref: string): Promise<void>;
  tagImage(source: string, target: string): Promise<void>;

  /** Creates and starts a container; returns its id. */
  runContainer(spec: ContainerSpec): Promise<string>;
  /** Resolves with the exit code once the container has stopped. */
  waitContainer(id: string, signal?: AbortSignal): Promise<number>;
  inspectContainer(id: string): Promise<ContainerInfo | undefined>;
  /** The last `tail` lines of stdout and stderr, interleaved. */
  containerOutput(id: string, tail: number): Promise<string>;
  /**
   * Every line the container wrote to stdout and stderr, from its start, in order, each with the engine's
   * timestamp; follows it live and ends once the container has stopped. Nothing when it is already gone.
   */
  followOutput(id: string, signal?: AbortSignal): AsyncIterable<OutputLine>;
  /** SIGTERM, then SIGKILL after `graceMs`. No error if already stopped. */
  stopContainer(id: string, graceMs: number): Promise<void>;
  /** Force-removes; no error if already gone. */
  removeContainer(id: string): Promise<void>;
  /**
   * Attaches to the standard input of a running container made with `openStdin`, and keeps it open until
   * one `send`: a warm container's run then reaches it over a connection made long before. Engines that
   * cannot (Swarm) leave it out.
   */
  openInput?(id: string): Promise<ContainerInput>;
  /** Renames a container (running or not). Engines that cannot leave it out. */
  renameContainer?(id: string, name: string): Promise<void>;
  listContainers(labels: Record<string, string>): Promise<ContainerInfo[]>;
  /** Images carrying all these labels. */
  listImages(labels: Record<string, string>): Promise<ImageInfo[]>;
  /**
   * A bridge network by this name, created (with `labels`) when missing; answers with its gateway, the
   * address the host has on it. Optional: engines that cannot make networks leave it out.
   */
  ensureNetwork?(name: string, labels: Record<string, string>): Promise<{ gateway: string }>;
  /**
   * Follows start, die and destroy of matching containers, from the moment of the call (events in the
   * instant between the call and the engine's subscription are not lost) until `signal` aborts. Iteration
   * throws BERTH_E_DOCKER_UNAVAILABLE if the engine cannot be reached or drops the stream.
   */
  followContainerEvents(options: ContainerEventsOptions): AsyncIterable<ContainerEvent>;
  /**
   * Follows every change to the engine's images (tags moved or removed, images pulled, loaded, imported or
   * deleted) from the moment of the call (and possibly a little before) until `signal` aborts; throws
   * BERTH_E_DOCKER_UNAVAILABLE as followContainerEvents does. Engines that cannot leave it out (their image
   * ids are then never remembered: agent/image-ids.ts).
   */
  followImageEvents?(options: ImageEventsOptions): AsyncIterable<ImageEvent>;
}

/**
 * One claimed flow run, from image to removed container: the agent's per-run loop. `run()` and `adopt()`
 * never throw: whatever goes wrong (image missing, engine error, a container that exits without reporting)
 * is recorded on the run with a message that says why, so no run is left hanging in Submitted or Running by
 * this agent.
 *
 * Every write carries the run's lease epoch: once another attempt owns the run (the server rescheduled it),
 * this one's writes are refused and it only cleans up after itself. Reads and writes ride out a server
 * restart for `serverDownForMs`.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { whileServerDown } from "../client/retry.js";
import { writeFlowRunState } from "../client/state-writes.js";
import { flowRunEnvironment, type AgentOptions, type RunDescription } from "../config/compile.js";
import { RUN_VARIABLES } from "../config/flow-run-env.js";
import { AGENT_LABEL, EPOCH_LABEL, FLOW_RUN_LABEL, OWNER_LABEL, type ContainerEngine, type ContainerInfo, type ContainerSpec } from "../engine/port.js";
import { ENGINE_CALL_MS, bounded } from "../engine/bounded.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import {
  EXIT_SUPERSEDED,
  FINAL_FLOW_RUN_STATES,
  IMAGE_FLOWS_DIR,
  MAX_LOG_MESSAGE_LENGTH,
  MAX_STATE_MESSAGE_LENGTH,
  type AgentPhases,
  type FlowRun,
  type FlowRunStateName,
  type Resources,
  type StorageSpec,
} from "../wire/schema.js";
import { cutText } from "../shared/text.js";
import { sleep } from "../shared/backoff.js";
import type { ImageProvider, RunLog } from "./images.js";
import type { AgentMetrics, ImageSource, RunOutcome } from "./metrics.js";
import { unframe } from "../shared/output-frames.js";
import { shipOutput } from "./output-shipper.js";
import { allowedLocalDir } from "./local-dirs.js";
import { imageAllowList } from "./allowed-images.js";
import type { AgentClaim } from "./flow-cache.js";
import { RUN_NAME_PREFIX, shapeKey, type WarmPool } from "./warm-pool.js";

/**
 * What every flow-run container gets: an unprivileged user (a uid of its own, not the host's 1000, whether or
 * not the image names it), every capability dropped, and no-new-privileges so that no setuid binary gives
 * one back.
 */
export const RUN_CONTAINER_HARDENING = {
  user: "10001:10001",
  capDrop: ["ALL"],
  securityOpt: ["no-new-privileges"],
} as const satisfies Partial<ContainerSpec>;

/** A flow's own limits, else the agent's. */
export function containerLimits(flow: Resources, agent: AgentOptions["limits"]): Pick<ContainerSpec, "memoryBytes" | "cpus" | "pidsLimit"> {
  const memoryBytes = flow.memoryBytes ?? agent.memoryBytes;
  const cpus = flow.cpus ?? agent.cpus;
  return { pidsLimit: flow.pids ?? agent.pids, ...(memoryBytes !== undefined ? { memoryBytes } : {}), ...(cpus !== undefined ? { cpus } : {}) };
}

export interface RunLifecycleDeps {
  client: ApiClient;
  engine: ContainerEngine;
  logger: Logger;
  agentId: string;
  options: AgentOptions;
  /** The berth image, for flows whose storage is not an image (local storage). */
  berthImage: () => Promise<string>;
  /** Present, pulled or built: the storage images of this agent's runs (images.ts). */
  images: ImageProvider;
  metrics: AgentMetrics;
  /** Resolves once the Docker engine answers again; called after the engine failed us. */
  engineBack: () => Promise<void>;
  /**
   * The server's start timeout, from the claim's reply: while the run's image is pulled or built, the run's
   * Submitted state is refreshed well within it, so that a long build is not taken for a stuck start. A
   * server that does not say predates these refreshes (it would refuse them): none are sent.
   */
  startTimeoutMs?: number | undefined;
  /** The agent's: aborted when it stops. A run whose image was not ready by then is handed back. */
  stopping: AbortSignal;
  /** Idle started containers to hand runs to (`--warm-pool`); none by default. */
  warmPool?: WarmPool | undefined;
}

/** This attempt found a later attempt's container in its place: it records nothing and starts nothing. */
class StaleAttempt extends Error {}

/** How long after the container's exit its output may take to be read to the end, and how quiet it must be to be over. */
const OUTPUT_AFTER_EXIT_MS = 10_000;
const OUTPUT_QUIET_MS = 1_000;

/** How long after a run is handed to a warm container the pool makes the next one of its shape. */
const WARM_REFILL_DELAY_MS = 250;

/**
 * How long after a warm hand-off the agent reports the steps of the run's start: the report is a write on the
 * server, which would meet the container's own first one (its Running) there.
 */
const WARM_REPORT_DELAY_MS = 250;

/** The deterministic name of a run's container: a new attempt on this engine replaces an old one by name. */
export function containerName(flowRunId: string): string {
  return `${RUN_NAME_PREFIX}${flowRunId}`;
}

export class RunLifecycle {
  private containerId: string | undefined;
  private stopReason: "cancel" | "timeout" | "lease" | undefined;
  private runTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  /** Set when the engine stopped answering while the container ran. */
  private engineOutage = false;
  /** The run's version as this attempt last wrote or read it. */
  private version: number;
  /** Aborted when the run no longer needs its image (cancelled, superseded): stops its pull or its wait for a build. */
  private readonly preparation = new AbortController();
  /** The last thing the run's log said while preparing, for the refreshed Submitted state. */
  private progress = "preparing";
  /** Cleared when the server refuses Submitted → Submitted (a server that predates it). */
  private refreshes = true;
  /** When the server last confirmed this agent still holds the run's lease. */
  leaseRenewedAt = Date.now();
  /**
   * Set once the container has stopped: what is left (recording an outcome, removing the container) needs
   * no lease, and the run has usually ended, so heartbeats no longer list it.
   */
  containerExited = false;

  /** The lease epoch of this attempt: the claim's, or for an adopted container, the one on its label. */
  readonly epoch: number;

  constructor(
    readonly claim: AgentClaim,
    private readonly deps: RunLifecycleDeps,
    epoch?: number,
  ) {
    this.epoch = epoch ?? claim.flowRun.epoch;
    this.version = claim.flowRun.version;
    this.log = deps.logger.child({ flowRunId: claim.flowRun.id, epoch: this.epoch });
  }

  get flowRunId(): string {
    return this.claim.flowRun.id;
  }

  /** Another attempt owns the run, or the lease lapsed: this attempt only cleans up. */
  get abandoned(): boolean {
    return this.stopReason === "lease";
  }

  /** Runs a freshly claimed flow run in a new container. */
  async run(): Promise<void> {
    const { flow } = this.claim;
    try {
      const storage = flow.storage;
      // Checked before anything is pulled or built: a directory the agent will not mount fails the run at once.
      const localDir = storage.type === "local" ? await allowedLocalDir(storage.directory, this.deps.options.allowLocalDirs) : undefined;
      if (storage.type === "docker") imageAllowList(this.deps.options.allowImages)(storage.image);
      if (flow.runAs === "root" && !this.deps.options.allowRoot) {
        throw new BerthError(
          "BERTH_E_NOT_ALLOWED",
          `flow "${flow.name}" asks to run as root (runAs: "root"), which this agent does not allow: start an agent with --allow-root for it, or drop runAs`,
        );
      }
      const preparingSince = performance.now();
      const { image, source, imageId } = await this.preparing(async (): Promise<{ image: string; source: ImageSource; imageId?: string }> =>
        storage.type === "docker"
          ? this.deps.images.ensure(storage, this.runLog, this.preparation.signal)
          : { image: await this.deps.berthImage(), source: "present" as const },
      );
      this.imageId = imageId;
      this.deps.metrics.imageSeconds.observe({ source }, (performance.now() - preparingSince) / 1000);
      this.phases = { imageReady: new Date().toISOString(), imageSource: source };
      if (this.abandoned) return;
      if (this.stopReason === "cancel") {
        await this.cancelledBeforeStart();
        return;
      }
      try {
        // Starting may wait on a scheduler (Swarm): the run stays visibly Submitted meanwhile, as while preparing.
        this.containerId = await this.preparing(() => this.start(image, localDir));
      } catch (err) {
        if (!(err instanceof StaleAttempt)) throw err;
        this.stopReason = "lease";
        this.log.warn(`not starting: ${err.message}`);
        return;
      }
      // Abandoned while the container was being created: it must not run on.
      if (this.abandoned) await this.deps.engine.stopContainer(this.containerId, 0);
      this.log.info({ containerId: this.containerId.slice(0, 12), image }, "flow run container started");
      await this.supervise();
    } catch (err) {
      if (this.abandoned) {
        this.log.info(`stopped preparing: ${describeError(err)}`);
      } else if (this.stopReason === "cancel" && this.containerId === undefined) {
        await this.cancelledBeforeStart();
      } else if (this.deps.stopping.aborted && this.containerId === undefined) {
        // Nothing ran: another agent can take it (the stop also stopped this run's pull or build).
        await this.finish("Scheduled", `handed back by agent ${this.deps.agentId}: it stopped before the run's image was ready (${describeError(err)})`, this.version);
      } else if (isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")) {
        // Nothing ran: hand the run back rather than fail it for the engine's trouble.
        void this.deps.engineBack();
        await this.finish("Scheduled", `handed back by agent ${this.deps.agentId}: the Docker engine is unavailable (${describeError(err)})`, this.version);
      } else {
        this.log.warn({ err }, "flow run could not be run");
        await this.finish("Failed", `the agent could not run this flow run: ${describeError(err)}`, this.version);
      }
    } finally {
      await this.cleanup();
    }
  }

  /** Takes over a container this agent created before it restarted. */
  async adopt(container: ContainerInfo): Promise<void> {
    this.containerId = container.id;
    const { flowRun } = this.claim;
    this.log.info({ containerId: container.id.slice(0, 12), containerState: container.state, runState: flowRun.state }, "adopting flow run container");
    try {
      if (container.state === "created") {
        // The agent stopped between creating and starting it: nothing ran, so the run goes back to the queue.
        await this.finish("Scheduled", `handed back: agent ${this.deps.agentId} restarted before starting its container`, flowRun.version);
        return;
      }
      if (FINAL_FLOW_RUN_STATES.includes(flowRun.state) || flowRun.epoch !== this.epoch) {
        this.stopReason = "lease";
        await this.deps.engine.stopContainer(container.id, this.deps.options.stopGraceMs);
      }
      await this.supervise();
    } catch (err) {
      this.log.warn({ err }, "adopted flow run could not be followed");
    } finally {
      await this.cleanup();
    }
  }

  /** Whether a cancel has reached this run (its container is being stopped). */
  get cancelling(): boolean {
    return this.stopReason === "cancel";
  }

  /** Stops the container: SIGTERM, then SIGKILL after the grace period. */
  async cancel(): Promise<void> {
    this.stopReason ??= "cancel";
    this.preparation.abort();
    if (this.containerId) await this.deps.engine.stopContainer(this.containerId, this.deps.options.stopGraceMs);
  }

  /**
   * The server no longer renews this attempt's lease. When the attempt's own container has just ended the
   * run (the heartbeat left as it wrote its final state), the container is exiting by itself: it is given the
   * stop grace to do so before it is stopped, and its outcome is counted as usual. Otherwise another attempt
   * owns the run, or the server ended it: stop at once.
   */
  async lost(why: string): Promise<void> {
    const current = await this.deps.client.getFlowRun(this.flowRunId).catch(() => undefined);
    const endedHere = current !== undefined && current.epoch === this.epoch && current.agentId === this.deps.agentId && FINAL_FLOW_RUN_STATES.includes(current.state);
    if (!endedHere || !this.containerId || this.containerExited) return this.abandon(why);
    // The reaper fails a silent run as this agent's attempt too: a container that does not exit is stopped.
    this.log.info(`the run is ${current.state}: waiting for its container to exit`);
    clearTimeout(this.exitTimer);
    this.exitTimer = setTimeout(() => {
      if (!this.containerExited && this.containerId) void this.deps.engine.stopContainer(this.containerId, this.deps.options.stopGraceMs).catch(() => undefined);
    }, this.deps.options.stopGraceMs);
    this.exitTimer.unref();
  }

  /** The id of the run's image, when preparing it told (a warm pool matches containers by it). */
  private imageId: string | undefined;

  /** Stops a container whose run ended here but which did not exit by itself (see lost()). */
  private exitTimer: NodeJS.Timeout | undefined;

  /** The run belongs to another attempt now, or its lease could not be renewed: stop at once. */
  async abandon(why: string): Promise<void> {
    this.stopReason = "lease";
    this.preparation.abort();
    this.log.warn(this.containerId ? `stopping the container: ${why}` : `not starting: ${why}`);
    if (this.containerId) await this.deps.engine.stopContainer(this.containerId, 0);
  }

  private async supervise(): Promise<void> {
    // Everything the container prints becomes run logs; following ends by itself when the container stops.
    const following = new AbortController();
    const progress = { lastLineAt: performance.now() };
    const output = shipOutput(
      {
        client: this.deps.client,
        engine: this.deps.engine,
        log: this.log,
        metrics: this.deps.metrics,
        flowRunId: this.flowRunId,
        epoch: this.epoch,
        serverDownForMs: this.deps.options.serverDownForMs,
      },
      this.containerId!,
      following.signal,
      progress,
      // The runtime sends every console line before it exits by itself (0: Success, 1: not, 75: superseded);
      // any other end (a kill, a crash) may have left some unsent.
      () => this.exitCode === undefined || ![0, 1, EXIT_SUPERSEDED].includes(this.exitCode),
    );
    try {
      await this.superviseExit();
    } finally {
      // A container's log ends with it; a swarm service's stays open while the service exists. Once the
      // container has stopped, the follow ends when its output has been quiet for a moment (or at the latest
      // after OUTPUT_AFTER_EXIT_MS).
      const exitedAt = performance.now();
      const watch = setInterval(() => {
        const now = performance.now();
        if (now - Math.max(progress.lastLineAt, exitedAt) > OUTPUT_QUIET_MS || now - exitedAt > OUTPUT_AFTER_EXIT_MS) following.abort();
      }, 100);
      await output;
      clearInterval(watch);
    }
  }

  private async superviseExit(): Promise<void> {
    const timeoutMs = this.claim.flow.runTimeoutMs;
    if (timeoutMs) {
      const startedAt = Date.parse(this.claim.flowRun.startedAt ?? "") || Date.now();
      this.runTimer = setTimeout(() => void this.timeOut(timeoutMs), Math.max(0, startedAt + timeoutMs - Date.now()));
      this.runTimer.unref();
    }
    try {
      const exitCode = await this.waitForExit();
      this.exitCode = exitCode;
      this.containerExited = true;
      clearTimeout(this.exitTimer);
      await this.settle(exitCode);
    } finally {
      clearTimeout(this.runTimer);
    }
  }

  /** Waits for the container to stop, riding out engine restarts; undefined if it vanished meanwhile. */
  private async waitForExit(): Promise<number | undefined> {
    for (;;) {
      try {
        return await this.deps.engine.waitContainer(this.containerId!);
      } catch (err) {
        if (isBerthError(err, "BERTH_E_NOT_FOUND")) return undefined;
        if (!isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")) throw err;
        this.engineOutage = true;
        this.log.warn("lost the Docker engine while the container ran; waiting for it to return");
        await this.deps.engineBack();
        const info = await this.deps.engine.inspectContainer(this.containerId!);
        if (!info) return undefined;
        if (info.state === "exited" || info.state === "dead") return info.exitCode ?? undefined;
      }
    }
  }

  private async timeOut(timeoutMs: number): Promise<void> {
    this.stopReason = "timeout";
    const message = `exceeded its run timeout of ${Math.round(timeoutMs / 1000)} s; the agent stopped its container`;
    this.log.warn(message);
    const current = await this.current().catch(() => undefined);
    if (current && !FINAL_FLOW_RUN_STATES.includes(current.state)) await this.finish("Failed", message, current.version);
    if (this.containerId) await this.deps.engine.stopContainer(this.containerId, this.deps.options.stopGraceMs).catch(() => undefined);
  }

  /**
   * Runs `prepare` (getting the run's image), refreshing the run's Submitted state with the latest progress
   * every third of the server's start timeout, so that the reaper sees a run being prepared rather than one
   * stuck before its start. One refresh at a time; one still out when the image is ready is dropped.
   */
  private async preparing<T>(prepare: () => Promise<T>): Promise<T> {
    const { startTimeoutMs } = this.deps;
    if (startTimeoutMs === undefined) return prepare();
    const dropped = new AbortController();
    let inFlight: Promise<void> | undefined;
    const timer = setInterval(() => {
      inFlight ??= this.refreshSubmitted(dropped.signal).finally(() => (inFlight = undefined));
    }, Math.max(100, Math.floor(startTimeoutMs / 3)));
    timer.unref();
    try {
      return await prepare();
    } finally {
      clearInterval(timer);
      dropped.abort();
      await inFlight;
    }
  }

  private async refreshSubmitted(signal: AbortSignal): Promise<void> {
    if (!this.refreshes || this.preparation.signal.aborted) return;
    const message = cutText(`agent ${this.deps.agentId}: ${this.progress}`, MAX_STATE_MESSAGE_LENGTH);
    try {
      const run = await this.deps.client.setFlowRunState(this.flowRunId, { state: "Submitted", message, expectedVersion: this.version, epoch: this.epoch }, signal);
      this.version = run.version;
      return;
    } catch (err) {
      if (signal.aborted) return;
      if (isBerthError(err, "BERTH_E_STALE_LEASE")) {
        void this.abandon("another attempt owns this flow run now");
        return;
      }
      if (!isBerthError(err, "BERTH_E_STALE_VERSION") && !isBerthError(err, "BERTH_E_INVALID_TRANSITION")) {
        // The server restarting, say: the next refresh, or the lease, decides.
        this.log.debug(`could not refresh the run's Submitted state: ${describeError(err)}`);
        return;
      }
      // Someone else wrote the run (the reaper, a user's cancel): go on only while it is still this attempt's.
      const current = await this.deps.client.getFlowRun(this.flowRunId, signal).catch(() => undefined);
      if (!current || signal.aborted) return;
      if (current.state === "Submitted" && current.epoch === this.epoch && current.agentId === this.deps.agentId) {
        this.version = current.version;
        // Still ours, yet refused: a server that predates progress reports. The lease keeps the run.
        if (isBerthError(err, "BERTH_E_INVALID_TRANSITION")) this.refreshes = false;
      } else if (current.state === "Cancelled" && current.epoch === this.epoch) {
        void this.cancel();
      } else {
        void this.abandon(`the flow run is ${current.state}, attempt ${current.epoch}, now`);
      }
    }
  }

  /** A run cancelled while its image was prepared: recorded Cancelled, unless it is final already (it usually is). */
  private async cancelledBeforeStart(): Promise<void> {
    const current = await this.current().catch(() => undefined);
    if (current && !FINAL_FLOW_RUN_STATES.includes(current.state)) {
      await this.finish("Cancelled", "cancelled before its container started", current.version);
    } else {
      this.log.info("cancelled before its container started");
    }
  }

  /**
   * A line in the run's own logs, from the agent (what it does before the container starts: pulls, builds).
   * Best effort: the run goes on if the line cannot be sent. Lines go out one after another, in order.
   */
  private readonly runLog: RunLog = (level, message) => {
    if (level === "info" || level === "warn") this.progress = message.split("\n")[0]!;
    const line = { at: new Date().toISOString(), level, message: cutText(message, MAX_LOG_MESSAGE_LENGTH), task: null };
    this.log[level === "debug" ? "debug" : level === "warn" ? "warn" : "info"]({ line: message }, "run log");
    this.logSending = this.logSending.then(() =>
      this.deps.client.appendLogs(this.flowRunId, [line], this.epoch).then(
        () => undefined,
        (err: unknown) => this.log.debug(`could not add a line to the run's logs: ${describeError(err)}`),
      ),
    );
  };
  private logSending: Promise<void> = Promise.resolve();

  /** Whether this attempt's outcome went to the metrics (a run the agent timed out is seen final twice). */
  private outcomeCounted = false;

  private countOutcome(outcome: RunOutcome): void {
    if (this.outcomeCounted) return;
    this.outcomeCounted = true;
    this.deps.metrics.runsFinished.inc({ outcome });
  }

  /** The container's exit code, once it has exited (undefined while it runs, or if it vanished). */
  private exitCode: number | undefined;

  /** This attempt's steps so far, as the agent saw them (sent to the server after the start and after cleanup). */
  private phases: AgentPhases = {};
  private phasesSending: Promise<void> = Promise.resolve();

  /**
   * Sends steps to the server in order, without holding up the run: a report that fails only costs the timeline.
   * `afterMs` holds this report (and those after it) back that long.
   */
  private reportPhases(phases: AgentPhases, afterMs = 0): void {
    const report = { ...phases, epoch: this.epoch };
    this.phasesSending = this.phasesSending.then(async () => {
      if (afterMs > 0) await sleep(afterMs, undefined, { keepAlive: true });
      return this.deps.client.reportPhases(this.flowRunId, report).then(
        () => undefined,
        (err: unknown) => this.log.debug(`could not report the run's phases: ${describeError(err)}`),
      );
    });
  }

  private async start(image: string, localDir: string | undefined): Promise<string> {
    const { flowRun, flow } = this.claim;
    const { options } = this.deps;
    if (flow.placement.length > 0 && options.backend === "docker") {
      this.runLog("warn", `placement ${flow.placement.join(", ")} ignored: this agent runs containers on one Docker engine (--backend docker), not on a swarm`);
    }
    const spec: ContainerSpec = {
      name: containerName(flowRun.id),
      image,
      cmd: ["berth", "execute", "flow-run"],
      // berth's own variables come last: a user's --env cannot redirect a run to another server or run.
      env: {
        ...options.env,
        ...flowRunEnvironment({ ...options.flowRun, apiToken: this.claim.runToken, flowRunId: flowRun.id, epoch: this.epoch, run: this.description() }),
      },
      // (A warm container's spec is this one's, less the run: see warm().)
      labels: {
        [OWNER_LABEL]: "true",
        [AGENT_LABEL]: this.deps.agentId,
        [FLOW_RUN_LABEL]: flowRun.id,
        [EPOCH_LABEL]: String(this.epoch),
      },
      ...(options.network ? { network: options.network } : {}),
      // Hardened: not root, no capabilities, no way to gain privileges, bounded processes (and memory and
      // CPUs when the operator says).
      ...RUN_CONTAINER_HARDENING,
      ...(flow.runAs === "root" ? { user: "0:0" } : {}),
      ...containerLimits(flow.resources, options.limits),
      ...(localDir !== undefined ? { binds: [`${localDir}:${IMAGE_FLOWS_DIR}:ro`] } : {}),
      ...(flow.placement.length > 0 ? { placement: flow.placement } : {}),
      stopGraceMs: options.stopGraceMs,
      startSignal: this.preparation.signal,
    };
    const { metrics } = this.deps;
    let since = performance.now();
    spec.onCreated = () => {
      metrics.containerCreateSeconds.observe((performance.now() - since) / 1000);
      this.phases.containerCreated = new Date().toISOString();
      since = performance.now();
    };
    const started = (id: string, reportAfterMs = 0) => {
      metrics.containerStartSeconds.observe((performance.now() - since) / 1000);
      this.phases.containerStarted = new Date().toISOString();
      this.reportPhases(this.phases, reportAfterMs);
      return id;
    };
    const warm = await this.warm(spec);
    if (warm !== undefined) {
      this.phases.containerCreated = new Date().toISOString();
      // A warm run's first milliseconds are its container's (its Running write): the timeline can wait.
      return started(warm, WARM_REPORT_DELAY_MS);
    }
    // Another attempt at this run may hold the deterministic name. An earlier one is over: it is replaced. A
    // later one owns the run now: this attempt is the stale one, and must not stop it.
    let first = true;
    return started(
      await this.claimName(spec.name, () => {
        if (!first) since = performance.now();
        first = false;
        return this.deps.engine.runContainer(spec);
      }),
    );
  }

  /** The run as its container needs it, so that the container does not have to ask the server (config/flow-run-env.ts). */
  private description(): RunDescription {
    const { flowRun, flow } = this.claim;
    const location = flow.storage.flows[flow.name];
    const flows = location === undefined ? {} : { [flow.name]: location };
    const storage: StorageSpec = flow.storage.type === "docker" ? { type: "docker", image: flow.storage.image, flows } : { ...flow.storage, flows };
    return { flowId: flow.id, flowName: flow.name, version: this.version, parameters: flowRun.parameters, storage };
  }

  /**
   * With a warm pool: hands the run to an idle warm container of its shape, if there is one (its id), and
   * has the pool make more of that shape. Any trouble handing it over removes that container, and the run
   * starts cold as without a pool.
   */
  private async warm(spec: ContainerSpec): Promise<string | undefined> {
    const { warmPool: pool, engine } = this.deps;
    if (!pool?.enabled || !engine.imageId || !engine.renameContainer) return undefined;
    const imageId = this.imageId ?? (await this.deps.images.imageId(spec.image).catch(() => undefined));
    if (imageId === undefined) return undefined;
    const key = shapeKey(spec, imageId);
    const env = spec.env ?? {};
    const run = Object.fromEntries(RUN_VARIABLES.flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]]])));
    const shared = Object.fromEntries(Object.entries(env).filter(([name]) => !RUN_VARIABLES.includes(name)));
    const taken = pool.take(key, imageId);
    // The pool's containers are nobody's run yet: none of this run's callbacks or signals. They are made a
    // moment later, so that making one does not slow the start of this run (the engine and the CPUs are shared).
    const { onCreated: _onCreated, startSignal: _startSignal, signal: _signal, ...template } = spec;
    const refill = setTimeout(() => pool.fill(key, imageId, { ...template, env: shared }, this.claim.flow.name), taken === undefined ? 0 : WARM_REFILL_DELAY_MS);
    refill.unref();
    if (taken === undefined) return undefined;
    const { id, input } = taken;
    // The run and the name go at once. A run that did not reach the container starts cold instead; a name
    // held by a later attempt makes this one stale (and the server refuses the container's writes).
    const [sent, named] = await Promise.allSettled([
      input.send(`${JSON.stringify(run)}\n`),
      this.claimName(spec.name, () => bounded(engine.renameContainer!(id, spec.name), ENGINE_CALL_MS, `renaming warm container ${id.slice(0, 12)}`)),
    ]);
    if (sent.status === "rejected" || (named.status === "rejected" && named.reason instanceof StaleAttempt)) {
      await bounded(engine.removeContainer(id), ENGINE_CALL_MS, "removing a warm container").catch(() => undefined);
      if (named.status === "rejected" && named.reason instanceof StaleAttempt) throw named.reason;
      this.log.warn(`could not hand the run to a warm container (${describeError((sent as PromiseRejectedResult).reason)}); starting a new one`);
      return undefined;
    }
    if (named.status === "rejected") {
      // It runs: only a restarted agent would not find it by its name (its run then ends by the server's reaper).
      this.log.warn(`the warm container running this flow run could not be renamed ${spec.name}: ${describeError(named.reason)}`);
    }
    this.runLog("info", `started in warm container ${id.slice(0, 12)}`);
    return id;
  }

  /**
   * Runs `take` (which gives a container the run's deterministic name); when another attempt's container
   * holds the name, an earlier one is removed and `take` tried again, and a later one makes this attempt the
   * stale one (a warm container's name carries no epoch label: it counts as earlier).
   */
  private async claimName<T>(name: string, take: () => Promise<T>): Promise<T> {
    try {
      return await take();
    } catch (err) {
      if (!isBerthError(err, "BERTH_E_CONFLICT")) throw err;
      const holder = await this.deps.engine.inspectContainer(name);
      const theirs = Number(holder?.labels[EPOCH_LABEL] ?? -1);
      if (holder && theirs > this.epoch) {
        throw new StaleAttempt(`attempt ${theirs} of this run already has a container (${holder.name}); this is attempt ${this.epoch}`);
      }
      await this.deps.engine.removeContainer(name);
      return take();
    }
  }

  /** After the container stopped: if it did not record a final state, record one from what we know. */
  private async settle(exitCode: number | undefined): Promise<void> {
    const current = await this.current();
    if (FINAL_FLOW_RUN_STATES.includes(current.state)) {
      this.countOutcome(current.state as RunOutcome);
      this.log.info({ state: current.state, exitCode }, "flow run finished");
      return;
    }
    if (current.epoch !== this.epoch || this.abandoned) {
      this.log.info({ state: current.state, currentEpoch: current.epoch }, "flow run belongs to another attempt now; not recording");
      return;
    }
    if (this.stopReason === "cancel" || current.state === "Cancelling") {
      await this.finish("Cancelled", "cancelled: the agent stopped the container", current.version);
      return;
    }
    if (exitCode === undefined) {
      await this.finish("Failed", "the flow run's container vanished (was the Docker engine restarted or the container removed?)", current.version);
      return;
    }
    const output = this.containerId ? unframe(await this.deps.engine.containerOutput(this.containerId, 30).catch(() => "")) : "";
    const tail = output.trim() === "" ? "(no output)" : output.trimEnd();
    const why = this.engineOutage ? "stopped while the Docker engine was unavailable (restarted?); it exited" : "exited";
    await this.finish("Failed", `the container ${why} with code ${exitCode} without reporting a final state; last output:\n${tail}`, current.version);
  }

  /** The run as the server has it now, waiting out a server restart. */
  private current(): Promise<FlowRun> {
    return whileServerDown(() => this.deps.client.getFlowRun(this.flowRunId), { forMs: this.deps.options.serverDownForMs });
  }

  private async finish(state: FlowRunStateName, message: string, knownVersion: number): Promise<void> {
    try {
      const outcome = await writeFlowRunState(this.deps.client, this.flowRunId, { state, message }, knownVersion, {
        epoch: this.epoch,
        serverDownForMs: this.deps.options.serverDownForMs,
      });
      this.log.info({ state: outcome.run.state, applied: outcome.applied }, message.split("\n")[0]);
      if (outcome.applied) this.countOutcome(state === "Scheduled" ? "handed_back" : (state as RunOutcome));
    } catch (err) {
      if (isBerthError(err, "BERTH_E_STALE_LEASE")) this.log.info("another attempt owns this flow run now; not recording");
      else this.log.error({ err, state }, "could not record the flow run's state");
    }
  }

  /**
   * Removes the container. An engine that dies mid-request can leave a call hanging, so each try is bounded;
   * if the engine is in trouble, the removal waits for it to return rather than leak the container.
   */
  private async cleanup(): Promise<void> {
    clearTimeout(this.runTimer);
    if (!this.containerId) return;
    const cleanedUp = () => this.stopReason !== "lease" && this.reportPhases({ cleanedUp: new Date().toISOString() });
    if (this.deps.options.keepContainers) return void cleanedUp();
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        await bounded(this.deps.engine.removeContainer(this.containerId), ENGINE_CALL_MS, "removing the container");
        cleanedUp();
        return;
      } catch (err) {
        this.log.warn({ err, attempt }, "could not remove the flow run container");
        if (attempt < 3) await this.deps.engineBack();
      }
    }
  }
}

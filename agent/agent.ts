/**
 * The Docker agent: claims flow runs whose labels it satisfies and runs each in a container.
 *
 * States (the only transitions allowed; every one is logged):
 *
 *   starting ──(registered, containers adopted)──► running ──stop()──► draining ──(runs done, or drainTimeout)──► stopped
 *      │                                              │                                                          ▲
 *      └──stop()──► draining                          └──────────────────────────kill()──────────────────────────┘
 *      └──kill()───────────────────────────────────────────────────────────────────────────────────────────────┘
 *
 * - starting: checks the Docker engine, registers with the server under its name (retrying while the server
 *   is unreachable), which gives it the same id as before a restart, then adopts the containers it owns.
 * - running: the claim loop (claim-loop.ts) long-polls for work while slots are free and the engine answers
 *   (engine-watch.ts); the lease keeper (lease-keeper.ts) heartbeats and renews the leases of its runs; each
 *   run has its own lifecycle (run-lifecycle.ts).
 * - draining: claims nothing more; waits for its runs, at most `drainTimeoutMs`.
 * - stopped: heartbeats and loops have ended; containers still running are left to be adopted on restart.
 *
 * `run()` is the agent's whole life: it resolves once the agent has stopped, and holds the process open
 * until then. `stop()` is graceful and memoised; `kill()` stops at once and does not wait.
 */
import { isServerDown } from "../client/retry.js";
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import type { AgentOptions } from "../config/compile.js";
import type { ContainerEngine } from "../engine/port.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { BerthError, describeError } from "../wire/errors.js";
import { FlowCache, type AgentClaim } from "./flow-cache.js";
import { WarmPool } from "./warm-pool.js";
import { Adoption } from "./adoption.js";
import { runCancelWatch } from "./cancel-watch.js";
import { HOUSEKEEPING_INTERVAL_MS, ImageGc, type Removal } from "./image-gc.js";
import { OrphanCollector } from "./orphans.js";
import { ClaimLoopProgress, runClaimLoop } from "./claim-loop.js";
import { AgentHttp, type AgentHealth } from "./http.js";
import { AgentMetrics } from "./metrics.js";
import { freeBytes } from "./disk.js";
import { formatBytes } from "../shared/sizes.js";
import { EngineWatch } from "./engine-watch.js";
import { ImageProvider } from "./images.js";
import { ImageIds } from "./image-ids.js";
import { LeaseKeeper } from "./lease-keeper.js";
import { RunLifecycle } from "./run-lifecycle.js";
import { RunTable } from "./run-table.js";

export type AgentState = "starting" | "running" | "draining" | "stopped";

/** How long /health waits for the engine to answer a ping. */
const HEALTH_ENGINE_CHECK_MS = 2_000;
/** How much longer than one claim wait the claim loop may go without turning (backoff after failed claims). */
const CLAIM_LOOP_GRACE_MS = 60_000;

const TRANSITIONS: Readonly<Record<AgentState, readonly AgentState[]>> = {
  starting: ["running", "draining", "stopped"],
  running: ["draining", "stopped"],
  draining: ["stopped"],
  stopped: [],
};

export interface AgentDeps {
  client: ApiClient;
  engine: ContainerEngine;
  logger: Logger;
  /** The berth image, for flows kept in local storage. */
  berthImage: () => Promise<string>;
}

export class Agent {
  private current: AgentState = "starting";
  id: string | undefined;
  private readonly runs = new RunTable();
  /** Flow versions this agent holds: its claims ask the server not to send them again. */
  private readonly flows = new FlowCache();
  /** Aborted when the agent stops claiming: ends long-polls and backoff sleeps at once. */
  private readonly stopping = new AbortController();
  /** Aborted once the agent has stopped: ends the cancel watch, which outlives claiming (a draining agent's runs can be cancelled). */
  private readonly stopped = new AbortController();
  private readonly engineWatch: EngineWatch;
  private readonly imageIds: ImageIds;
  private readonly leases: LeaseKeeper;
  private readonly adoption: Adoption;
  private readonly images: ImageProvider;
  readonly metrics: AgentMetrics;
  private readonly progress = new ClaimLoopProgress();
  private readonly http: AgentHttp;
  private readonly imageGc: ImageGc;
  private readonly orphans: OrphanCollector;
  /** Started, idle containers to hand runs to (`--warm-pool`); empty unless enabled. */
  private readonly warmPool: WarmPool;
  /** Every HOUSEKEEPING_INTERVAL_MS: image garbage collection, and containers left by agents gone for good. */
  private housekeepingTimer: NodeJS.Timeout | undefined;
  /** The berth runtime image, once this agent has made or found it (image GC keeps it). */
  private knownBerthImage: string | undefined;
  /** The port /health and /metrics are served on, once listening (agent.http). */
  httpPort: number | undefined;
  private log: Logger;
  private starting: Promise<void> | undefined;
  private claimLoop: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private readonly ended: Promise<void>;
  private markEnded: () => void = () => {};

  constructor(
    private readonly deps: AgentDeps,
    readonly options: AgentOptions,
  ) {
    this.log = deps.logger;
    this.ended = new Promise<void>((resolve) => (this.markEnded = resolve));
    this.metrics = new AgentMetrics({ slots: options.concurrency, slotsUsed: () => this.runs.size });
    this.http = new AgentHttp(() => this.health(), this.metrics, () => this.log);
    this.imageGc = new ImageGc({
      engine: deps.engine,
      keptImages: async () => (await deps.client.keptImages(this.id!, this.stopping.signal)).images,
      berthImage: () => this.knownBerthImage,
      freeBytes: () => freeBytes(options.disk.path),
      lowWatermarkBytes: options.disk.lowWatermarkBytes,
      highWatermarkBytes: options.disk.highWatermarkBytes,
      log: () => this.log,
      onRemoved: ({ image, kind }) => {
        this.metrics.imagesRemoved.inc({ kind });
        this.metrics.imageBytesRemoved.inc({ kind }, image.sizeBytes);
      },
    });
    this.orphans = new OrphanCollector({
      client: deps.client,
      engine: deps.engine,
      agentId: () => this.id!,
      log: () => this.log,
      signal: this.stopping.signal,
      onRemoved: () => this.metrics.orphansRemoved.inc(),
    });
    this.warmPool = new WarmPool({ engine: deps.engine, agentId: () => this.id!, size: options.warmPool.size, ttlMs: options.warmPool.ttlMs, log: () => this.log });
    this.engineWatch = new EngineWatch(deps.engine, () => this.log, this.stopping.signal, () => void this.leases.beat());
    this.leases = new LeaseKeeper({
      client: deps.client,
      log: () => this.log,
      agentId: () => this.id,
      runs: this.runs,
      engine: this.engineWatch,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      leaseTimeoutMs: options.leaseTimeoutMs,
      afterBeat: () => void this.adoption.retry(),
      draining: () => this.state === "draining",
      health: async () => {
        const h = await this.health();
        return { slotsUsed: h.slots.used, diskFreeBytes: h.disk.freeBytes, reasons: h.reasons.slice(0, 10).map((r) => r.slice(0, 500)) };
      },
    });
    this.imageIds = new ImageIds(deps.engine, () => this.log);
    this.images = new ImageProvider({
      client: deps.client,
      engine: deps.engine,
      imageIds: this.imageIds,
      options,
      berthImage: () => this.berthImage(),
      stopping: this.stopping.signal,
    });
    this.adoption = new Adoption({
      client: deps.client,
      engine: deps.engine,
      log: () => this.log,
      agentId: () => this.id!,
      runs: this.runs,
      serverDownForMs: options.serverDownForMs,
      signal: this.stopping.signal,
      lifecycle: (claim, epoch) => this.lifecycle(claim, epoch),
    });
  }

  get state(): AgentState {
    return this.current;
  }

  get runningFlowRuns(): string[] {
    return this.runs.ids();
  }

  get healthy(): boolean {
    return this.engineWatch.healthy;
  }

  /**
   * The agent's whole life: starts, then resolves once it has stopped (after `stop()` or `kill()`). While it
   * runs, it holds the process open: its own timers do not, because a library must not keep a process
   * alive, but a process that runs an agent exists for it.
   */
  async run(): Promise<void> {
    const lifetime = setInterval(() => {}, 2 ** 30);
    try {
      await this.start();
      await this.ended;
    } finally {
      clearInterval(lifetime);
    }
  }

  /** Resolves once the agent is registered and claiming (or was stopped meanwhile). */
  start(): Promise<void> {
    this.starting ??= this.boot();
    return this.starting;
  }

  /** Stops claiming and waits for running flow runs, at most drainTimeoutMs. Idempotent. */
  stop(): Promise<void> {
    this.closing ??= this.drain();
    return this.closing;
  }

  /** Stops now without waiting for flow runs; their containers keep running, to be adopted on restart. */
  kill(): void {
    if (this.current === "stopped") return;
    this.stopping.abort();
    this.runs.wake();
    this.finish();
  }

  /** The berth runtime image (made or found once), remembered so that image garbage collection keeps it. */
  private async berthImage(): Promise<string> {
    this.knownBerthImage = await this.deps.berthImage();
    return this.knownBerthImage;
  }

  /** Removes the containers that agents gone for good left on this engine; a failure is logged, not thrown. */
  async removeOrphans(): Promise<string[]> {
    try {
      return await this.orphans.collect();
    } catch (err) {
      if (!this.stopping.signal.aborted) this.log.warn(`could not look for containers left by other agents: ${describeError(err)}`);
      return [];
    }
  }

  /** One pass of image garbage collection (the agent makes one every minute); a failure is logged, not thrown. */
  async collectImages(): Promise<Removal[]> {
    try {
      return await this.imageGc.collect();
    } catch (err) {
      this.log.warn(`image garbage collection failed: ${describeError(err)}`);
      return [];
    }
  }

  /** What /health answers: ok only when the engine answers, the claim loop turns and the disk has room. */
  async health(): Promise<AgentHealth> {
    const reasons: string[] = [];
    const checked = await Promise.race([this.engineWatch.check().then(() => true), sleep(HEALTH_ENGINE_CHECK_MS).then(() => false)]);
    const engineUp = checked && this.engineWatch.healthy;
    this.metrics.engineUp.set(engineUp ? 1 : 0);
    if (!checked) reasons.push(`the container engine did not answer within ${HEALTH_ENGINE_CHECK_MS} ms`);
    else if (!engineUp) reasons.push("the container engine is not answering");
    if (this.current !== "running") reasons.push(`the agent is ${this.current}${this.current === "starting" ? " (registering with the server)" : ""}`);
    const { turnedAt, waitingFor } = this.progress;
    const quietMs = Date.now() - turnedAt;
    const boundMs = this.options.claimWaitMs + CLAIM_LOOP_GRACE_MS;
    if (this.current === "running" && waitingFor === undefined && quietMs > boundMs) {
      reasons.push(`the claim loop has not turned for ${Math.round(quietMs / 1000)} s (bound: the claim wait plus ${CLAIM_LOOP_GRACE_MS / 1000} s)`);
    }
    const { path, lowWatermarkBytes } = this.options.disk;
    const free = await freeBytes(path).catch((err: unknown) => {
      reasons.push(`cannot read the free space of ${path}: ${describeError(err)}`);
      return null;
    });
    if (free !== null) {
      this.metrics.diskFreeBytes.set(free);
      if (free < lowWatermarkBytes) reasons.push(`free disk on ${path} is ${formatBytes(free)}, under the low watermark of ${formatBytes(lowWatermarkBytes)}`);
    }
    return {
      status: reasons.length === 0 ? "ok" : "unhealthy",
      reasons,
      state: this.current,
      engine: { up: engineUp },
      claimLoop: { turnedSecondsAgo: Math.round(quietMs / 100) / 10, waitingFor: waitingFor ?? null },
      disk: { path, freeBytes: free, lowWatermarkBytes },
      slots: { used: this.runs.size, total: this.options.concurrency },
    };
  }

  private async boot(): Promise<void> {
    // First: /health answers while the agent starts, and an address it cannot take fails it at once.
    if (this.options.http) {
      this.httpPort = await this.http.listen(this.options.http.host, this.options.http.port);
      this.log.info({ url: `http://${this.options.http.host}:${this.httpPort}` }, "serving /health and /metrics");
    }
    try {
      await this.deps.engine.ping(this.stopping.signal);
    } catch (err) {
      // Stopped while starting: that is not a failure to start.
      if (this.stopping.signal.aborted) return;
      throw err;
    }
    // Followed from here on: runs then learn their image's id without asking the engine each time.
    void this.imageIds.follow(this.stopping.signal);
    await this.register();
    if (this.current !== "starting") return;
    await this.adoption.adoptAll();
    if (this.current !== "starting") return;
    // Idle warm containers from before a restart wait for runs nobody will send them: the pool starts empty.
    if (this.warmPool.enabled) await this.warmPool.removeLeftovers(true).catch((err: unknown) => this.log.warn(`could not remove idle warm containers: ${describeError(err)}`));
    this.setState("running", `agent "${this.options.name}" is claiming flow runs`, {
      labels: this.options.labels,
      concurrency: this.options.concurrency,
      network: this.options.network ?? "default",
    });
    if (this.options.network === "host") {
      // Loopback is reachable only from the host's own network; there the runs also reach every other service
      // listening on this host's loopback. Putting the server on a Docker network the runs join avoids both.
      this.log.warn(
        "flow-run containers use the host network, because the API is on loopback: they can reach every service on this host's loopback interface; to isolate them, run the server where containers reach it on a Docker network (docker compose, or --network NAME with --container-api URL)",
      );
    }
    this.leases.start();
    void this.removeOrphans();
    this.housekeepingTimer = setInterval(() => {
      void this.collectImages();
      void this.removeOrphans();
      if (this.warmPool.enabled) {
        this.warmPool.prune();
        void this.warmPool.removeLeftovers(false).catch(() => undefined);
      }
    }, HOUSEKEEPING_INTERVAL_MS);
    this.housekeepingTimer.unref();
    void runCancelWatch({
      client: this.deps.client,
      log: () => this.log,
      agentId: () => this.id!,
      runs: this.runs,
      waitMs: this.options.claimWaitMs,
      signal: this.stopped.signal,
    });
    this.claimLoop = runClaimLoop({
      client: this.deps.client,
      log: () => this.log,
      agentId: () => this.id!,
      concurrency: this.options.concurrency,
      claimWaitMs: this.options.claimWaitMs,
      runs: this.runs,
      engine: this.engineWatch,
      claiming: () => this.current === "running",
      progress: this.progress,
      stopping: this.stopping.signal,
      launch: (claim, startTimeoutMs) => this.launch(claim, startTimeoutMs),
      flows: this.flows,
      register: () => this.register(),
    });
  }

  private async drain(): Promise<void> {
    if (this.current === "stopped") return;
    this.setState("draining", "agent draining: no new claims", { running: this.runs.size });
    this.stopping.abort();
    this.runs.wake();
    // Every step runs even when one fails: a stuck boot must not keep the agent from stopping.
    await Promise.allSettled([this.starting, this.claimLoop]);
    const drained = this.runs.settled().then(() => false);
    const timedOut = await Promise.race([drained, sleep(this.options.drainTimeoutMs).then(() => true)]);
    if (timedOut) this.log.warn({ running: this.runningFlowRuns }, "drain timed out; leaving containers running");
    await this.warmPool.close();
    this.finish();
  }

  private finish(): void {
    if (this.current === "stopped") return;
    this.setState("stopped", "agent stopped");
    this.stopped.abort();
    clearInterval(this.housekeepingTimer);
    void this.http.close();
    this.leases.stop();
    void this.leases.sayStopped();
    this.markEnded();
  }

  /** The one way the state changes: refuses a transition the machine does not have, and logs every one. */
  private setState(next: AgentState, message: string, fields: Record<string, unknown> = {}): void {
    const from = this.current;
    if (!TRANSITIONS[from].includes(next)) {
      throw new BerthError("BERTH_E_INTERNAL", `agent "${this.options.name}" cannot go from ${from} to ${next}`);
    }
    this.current = next;
    this.log.info({ ...fields, state: next, from }, message);
  }

  private async register(): Promise<void> {
    for (let attempt = 0; !this.stopping.signal.aborted; attempt++) {
      try {
        const agent = await this.deps.client.registerAgent(
          { name: this.options.name, labels: this.options.labels, concurrency: this.options.concurrency },
          this.stopping.signal,
        );
        this.id = agent.id;
        this.log = this.deps.logger.child({ agentId: agent.id });
        return;
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        if (!isServerDown(err)) throw err;
        const delay = backoffMs(attempt);
        this.log.warn(`${describeError(err)}; retrying in ${delay} ms`);
        await sleep(delay, this.stopping.signal);
      }
    }
  }

  private lifecycle(claim: AgentClaim, epoch?: number, startTimeoutMs?: number): RunLifecycle {
    return new RunLifecycle(
      claim,
      {
        client: this.deps.client,
        engine: this.deps.engine,
        logger: this.log,
        agentId: this.id!,
        options: this.options,
        berthImage: () => this.berthImage(),
        images: this.images,
        metrics: this.metrics,
        engineBack: () => this.engineWatch.whenBack(),
        startTimeoutMs,
        stopping: this.stopping.signal,
        warmPool: this.warmPool,
      },
      epoch,
    );
  }

  private launch(claim: AgentClaim, startTimeoutMs: number | undefined): void {
    // The same run claimed again (its lease lapsed while this agent still held it): the old attempt is over.
    const previous = this.runs.get(claim.flowRun.id);
    if (previous) void previous.abandon(`superseded by attempt ${claim.flowRun.epoch} of the same run`).catch(() => undefined);
    const lifecycle = this.lifecycle(claim, undefined, startTimeoutMs);
    this.runs.track(lifecycle, lifecycle.run());
  }
}

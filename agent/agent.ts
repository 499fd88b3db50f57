/**
 * The Docker agent.
 *
 * State machine:
 *   starting ──start()──► running ──stop()──► draining ──(runs done or drain timeout)──► stopped
 *       └──────────────────kill()──────────────────────────────────────────────────────► stopped
 * - starting: checks the Docker engine, registers with the server (retrying while it is unreachable) under
 *   its name, which gives it the same id as before a restart, then adopts the containers it owns.
 * - running: long-polls for claims while it has free slots and the engine answers; heartbeats renew the
 *   leases of its runs. While the engine is down it claims nothing and reports itself unhealthy.
 * - draining: claims nothing more; waits for its flow runs, at most `drainTimeoutMs`.
 * - stopped: heartbeats and loops have ended; containers still running are left to be adopted again.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../client/api-client.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError, isBerthError } from "../wire/errors.js";
import type { ClaimedRun } from "../wire/schema.js";
import { AGENT_LABEL, EPOCH_LABEL, FLOW_RUN_LABEL, OWNER_LABEL, type ContainerEngine } from "../engine/port.js";
import { FlowRunContainer } from "./run-lifecycle.js";
import { defaultNetwork, type AgentOptions } from "./options.js";

export type AgentState = "starting" | "running" | "draining" | "stopped";

export interface AgentDeps {
  client: ApiClient;
  engine: ContainerEngine;
  logger: Logger;
  /** The berth image, for flows kept in local storage. */
  berthImage: () => Promise<string>;
}

export class Agent {
  state: AgentState = "starting";
  id: string | undefined;
  private readonly active = new Map<string, { container: FlowRunContainer; done: Promise<void> }>();
  /** Aborted when the agent stops: ends long-polls and backoff sleeps at once. */
  private readonly stopping = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private slotFreed: (() => void) | undefined;
  /** Set while the Docker engine does not answer; resolves when it does again. */
  private engineRecovery: Promise<void> | undefined;
  private log: Logger;

  constructor(
    private readonly deps: AgentDeps,
    readonly options: AgentOptions,
  ) {
    this.log = deps.logger;
  }

  get runningFlowRuns(): string[] {
    return [...this.active.keys()];
  }

  get healthy(): boolean {
    return this.engineRecovery === undefined;
  }

  /** Resolves once the agent is registered and claiming. */
  async start(): Promise<void> {
    if (this.state !== "starting") return;
    await this.deps.engine.ping(this.stopping.signal);
    await this.register();
    if (this.state !== "starting") return;
    await this.adoptContainers();
    this.state = "running";
    this.log.info(
      { labels: this.options.labels, concurrency: this.options.concurrency, network: this.network ?? "default" },
      `agent "${this.options.name}" is claiming flow runs`,
    );
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.options.heartbeatIntervalMs);
    this.heartbeatTimer.unref();
    this.loopDone = this.claimLoop();
  }

  /** Stops claiming and waits for running flow runs, at most drainTimeoutMs. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    if (this.state !== "draining") {
      this.state = "draining";
      this.stopping.abort();
      this.wakeLoop();
      this.log.info({ running: this.active.size }, "agent draining: no new claims");
    }
    await this.loopDone;
    const drained = Promise.all([...this.active.values()].map((a) => a.done));
    const timedOut = await Promise.race([drained.then(() => false), sleep(this.options.drainTimeoutMs).then(() => true)]);
    if (timedOut) this.log.warn({ running: this.runningFlowRuns }, "drain timed out; leaving containers running");
    this.finish();
  }

  /** Stops now without waiting for flow runs; their containers keep running, to be adopted on restart. */
  kill(): void {
    this.stopping.abort();
    this.finish();
    this.wakeLoop();
  }

  private wakeLoop(): void {
    const freed = this.slotFreed;
    this.slotFreed = undefined;
    freed?.();
  }

  private finish(): void {
    if (this.state === "stopped") return;
    this.state = "stopped";
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.id) void this.deps.client.heartbeatAgent(this.id, { status: "stopped" }).catch(() => undefined);
    this.log.info("agent stopped");
  }

  private get network(): string | undefined {
    return this.options.network ?? defaultNetwork(this.options.containerApiUrl ?? this.options.apiUrl);
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
        if (!isBerthError(err, "BERTH_E_SERVER_UNREACHABLE")) throw err;
        const delay = backoffMs(attempt);
        this.log.warn(`${describeError(err)}; retrying in ${delay} ms`);
        await sleep(delay, this.stopping.signal);
      }
    }
  }

  /** Finds the containers this agent started before a restart and follows them to their end. */
  private async adoptContainers(): Promise<void> {
    const owned = await this.deps.engine.listContainers({ [OWNER_LABEL]: "true", [AGENT_LABEL]: this.id! });
    for (const info of owned) {
      const flowRunId = info.labels[FLOW_RUN_LABEL];
      if (!flowRunId || this.active.has(flowRunId)) continue;
      try {
        const flowRun = await this.deps.client.getFlowRun(flowRunId);
        const flow = await this.deps.client.getFlow(flowRun.flowId);
        const epoch = Number(info.labels[EPOCH_LABEL] ?? flowRun.epoch);
        const container = new FlowRunContainer({ flowRun, flow }, this.containerDeps(), epoch);
        this.track(flowRunId, container, container.adopt(info));
      } catch (err) {
        this.log.warn({ err, flowRunId }, "cannot adopt this container; removing it");
        await this.deps.engine.removeContainer(info.id).catch(() => undefined);
      }
    }
    if (owned.length > 0) this.log.info({ adopted: this.runningFlowRuns }, `adopted ${owned.length} container(s) from before the restart`);
  }

  private async claimLoop(): Promise<void> {
    let failures = 0;
    while (this.state === "running") {
      if (this.engineRecovery) {
        await this.engineRecovery;
        continue;
      }
      const free = this.options.concurrency - this.active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      try {
        this.log.debug({ free }, "waiting for a claim");
        const { claims } = await this.deps.client.claim(
          this.id!,
          { max: free, waitMs: this.options.claimWaitMs },
          this.stopping.signal,
        );
        failures = 0;
        for (const claim of claims) this.launch(claim);
      } catch (err) {
        if (this.state !== "running") break;
        if (isBerthError(err, "BERTH_E_AGENT_NOT_FOUND")) {
          this.log.warn("the server no longer knows this agent; registering again");
          await this.register().catch((e: unknown) => this.log.error({ err: e }, "re-registration failed"));
          continue;
        }
        const delay = backoffMs(failures++);
        this.log.warn(`claim failed: ${describeError(err)}; retrying in ${delay} ms`);
        await sleep(delay, this.stopping.signal);
      }
    }
  }

  private containerDeps() {
    return {
      client: this.deps.client,
      engine: this.deps.engine,
      logger: this.log,
      agentId: this.id!,
      apiUrl: this.options.containerApiUrl ?? this.options.apiUrl,
      apiToken: this.options.apiToken,
      network: this.network,
      pullPolicy: this.options.pullPolicy,
      env: this.options.env,
      keepContainers: this.options.keepContainers,
      stopGraceMs: this.options.stopGraceMs,
      serverDownForMs: this.options.serverDownForMs,
      berthImage: this.deps.berthImage,
      engineBack: () => this.engineBack(),
    };
  }

  private launch(claim: ClaimedRun): void {
    const container = new FlowRunContainer(claim, this.containerDeps());
    this.track(claim.flowRun.id, container, container.run());
  }

  private track(flowRunId: string, container: FlowRunContainer, running: Promise<void>): void {
    const done = running.finally(() => {
      this.active.delete(flowRunId);
      this.wakeLoop();
    });
    this.active.set(flowRunId, { container, done });
  }

  /**
   * Resolves when the Docker engine answers again. The first caller starts probing (with backoff); until it
   * answers, the agent claims nothing and reports itself unhealthy.
   */
  engineBack(): Promise<void> {
    this.engineRecovery ??= (async () => {
      this.log.warn("the Docker engine is not answering: claiming nothing until it does");
      void this.heartbeat();
      for (let attempt = 0; !this.stopping.signal.aborted; attempt++) {
        try {
          await this.deps.engine.ping(this.stopping.signal);
          this.log.info("the Docker engine answers again: claiming");
          return;
        } catch (err) {
          const delay = backoffMs(attempt, { maxMs: 5_000 });
          this.log.debug(`still no Docker engine (${describeError(err)}); probing again in ${delay} ms`);
          await sleep(delay, this.stopping.signal);
        }
      }
    })().finally(() => {
      this.engineRecovery = undefined;
      void this.heartbeat();
    });
    return this.engineRecovery;
  }

  private async heartbeat(): Promise<void> {
    if (!this.id || this.state === "stopped") return;
    if (this.healthy) {
      await this.deps.engine.ping(this.stopping.signal).catch((err: unknown) => {
        if (isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")) void this.engineBack();
      });
    }
    const runs = [...this.active.values()].map(({ container }) => ({ id: container.flowRunId, epoch: container.epoch }));
    try {
      const reply = await this.deps.client.heartbeatAgent(this.id, { status: this.healthy ? "online" : "unhealthy", runs });
      const now = Date.now();
      const lost = new Set(reply.lostRunIds);
      for (const { id } of runs) {
        const entry = this.active.get(id);
        if (!entry) continue;
        if (lost.has(id)) {
          void entry.container.abandon("the server says another attempt owns this flow run now").catch(() => undefined);
        } else {
          entry.container.leaseRenewedAt = now;
        }
      }
      for (const flowRunId of reply.cancelRunIds) {
        const entry = this.active.get(flowRunId);
        if (!entry) continue;
        this.log.info({ flowRunId }, "cancelling flow run: stopping its container");
        void entry.container.cancel().catch((err: unknown) => this.log.warn({ err, flowRunId }, "could not stop container"));
      }
    } catch (err) {
      this.log.warn(`heartbeat failed: ${describeError(err)}`);
      this.expireLeases();
    }
  }

  /** Without a renewed lease, the server may give a run to another agent: stop it here first. */
  private expireLeases(): void {
    const now = Date.now();
    for (const { container } of this.active.values()) {
      if (now - container.leaseRenewedAt > this.options.leaseTimeoutMs) {
        void container.abandon(`its lease could not be renewed for ${Math.round((now - container.leaseRenewedAt) / 1000)} s`).catch(() => undefined);
      }
    }
  }
}

/**
 * The Docker agent.
 *
 * State machine:
 *   starting ──start()──► running ──stop()──► draining ──(runs done or drain timeout)──► stopped
 *       └──────────────────kill()──────────────────────────────────────────────────────► stopped
 * - starting: checks the Docker engine, registers with the server (retrying while it is unreachable).
 * - running: long-polls the server for claims while it has free slots (`concurrency`), and heartbeats.
 * - draining: claims nothing more; waits for its flow runs, at most `drainTimeoutMs`.
 * - stopped: heartbeats and loops have ended; containers still running are left to be found again.
 */
import type { Logger } from "pino";
import type { ApiClient } from "../api/client.js";
import { describeError, isBerthError } from "../api/errors.js";
import type { ClaimedRun } from "../api/schema.js";
import type { ContainerRuntime } from "../docker/port.js";
import { backoffMs, sleep } from "./backoff.js";
import { FlowRunContainer } from "./flow-run-container.js";
import { defaultNetwork, type AgentOptions } from "./options.js";

export type AgentState = "starting" | "running" | "draining" | "stopped";

export interface AgentDeps {
  client: ApiClient;
  runtime: ContainerRuntime;
  logger: Logger;
  /** The berth runtime image, for flows kept in local storage. */
  runtimeImage: () => Promise<string>;
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

  /** Resolves once the agent is registered and claiming. */
  async start(): Promise<void> {
    if (this.state !== "starting") return;
    await this.deps.runtime.ping(this.stopping.signal);
    await this.register();
    if (this.state !== "starting") return;
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

  /** Stops now without waiting for flow runs; their containers keep running. */
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

  private async claimLoop(): Promise<void> {
    let failures = 0;
    while (this.state === "running") {
      const free = this.options.concurrency - this.active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      try {
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

  private launch(claim: ClaimedRun): void {
    const container = new FlowRunContainer(claim, {
      client: this.deps.client,
      runtime: this.deps.runtime,
      logger: this.log,
      agentId: this.id!,
      apiUrl: this.options.containerApiUrl ?? this.options.apiUrl,
      apiToken: this.options.apiToken,
      network: this.network,
      pullPolicy: this.options.pullPolicy,
      env: this.options.env,
      keepContainers: this.options.keepContainers,
      stopGraceMs: this.options.stopGraceMs,
      runtimeImage: this.deps.runtimeImage,
    });
    const done = container.run().finally(() => {
      this.active.delete(claim.flowRun.id);
      this.wakeLoop();
    });
    this.active.set(claim.flowRun.id, { container, done });
  }

  private async heartbeat(): Promise<void> {
    if (!this.id || this.state === "stopped") return;
    try {
      const reply = await this.deps.client.heartbeatAgent(this.id, { status: "online" });
      for (const flowRunId of reply.cancelRunIds) {
        const entry = this.active.get(flowRunId);
        if (entry) {
          this.log.info({ flowRunId }, "cancelling flow run: stopping its container");
          void entry.container.cancel().catch((err: unknown) => this.log.warn({ err, flowRunId }, "could not stop container"));
        }
      }
    } catch (err) {
      this.log.warn(`heartbeat failed: ${describeError(err)}`);
    }
  }
}

/**
 * One pass of the reaper's rules (see server/reaper.ts), all as of one instant `now`:
 *
 * 1. Submitted runs that will not start, because their agent stopped renewing the lease or because they were
 *    claimed more than startTimeoutMs ago → Scheduled again while attempts remain (epoch <
 *    recovery.maxAttempts), else Failed.
 * 2. Running runs whose container has been silent for runHeartbeatTimeoutMs → per the flow's recovery.onLost:
 *    Scheduled again ("reschedule", while attempts remain) or Failed. Only the container's silence counts: a
 *    run whose agent is gone but whose container still reports is left alone, for the restarted agent to adopt.
 * 3. Cancelling runs unconfirmed for cancelTimeoutMs whose agent is lost → Cancelled, saying that the
 *    container may still be running.
 * 4. Build contexts no flow version names, kept for longer than BUILD_CONTEXT_GRACE_MS (an upload whose
 *    registration never came) → removed.
 * 5. With server.logRetention, the logs of runs that ended longer ago than that → removed.
 *
 * Every move is the store's compare-and-swap on the version the scan read: a run that changed meanwhile is
 * skipped, someone else has decided. Fencing makes rescheduling safe: the superseded attempt's writes are
 * refused (BERTH_E_STALE_LEASE) and its agent is told to stop it (lostRunIds). Silence is counted from the
 * server's start at the earliest ("last heard" is at least `startedAt`): a server that was down must not blame
 * runs that simply could not reach it. Running → Scheduled is the reaper's alone: the transition table of
 * states.ts (what clients may ask for) does not list it.
 */
import { formatMs } from "../shared/text.js";
import { isBerthError } from "../wire/errors.js";
import { DEFAULT_RECOVERY, type FlowRun, type FlowRunStateName, type RecoveryPolicy } from "../wire/schema.js";
import type { FastifyBaseLogger } from "fastify";
import type { StateStore, StoredAgent } from "../store/port.js";
import type { ServerOptions } from "../config/compile.js";
import type { Notifier } from "./notifier.js";
import type { AgentPresence } from "./presence.js";
import type { ServerMetrics } from "./metrics.js";
import { writeState } from "./write-state.js";

/** The rules that move runs, as metrics name them (berth_reaper_actions_total). */
type ReaperRule = "unstarted" | "silent" | "unconfirmed_cancel";

export interface ReaperOptions {
  store: StateStore;
  notifier: Notifier;
  metrics: ServerMetrics;
  presence: AgentPresence;
  logger: FastifyBaseLogger;
  timings: Pick<ServerOptions, "agentLostAfterMs" | "leaseMs" | "reaperIntervalMs" | "startTimeoutMs" | "runHeartbeatTimeoutMs" | "cancelTimeoutMs" | "logRetentionMs">;
  /** Milliseconds since the epoch; the same clock as the store's timestamps. */
  now: () => number;
  /** When the server started (ms): silence is only counted from then on, see reaper-pass.ts. */
  startedAt: number;
}

export interface ReapReport {
  /** Ids of the runs moved by this pass, by outcome. */
  rescheduled: string[];
  failed: string[];
  cancelled: string[];
  /** Digests of the build contexts removed as unused. */
  buildContextsRemoved: string[];
  /** How many runs' logs were removed for their age. */
  logsRemoved: number;
}

/** How long an uploaded build context may wait for the registration that names it. */
export const BUILD_CONTEXT_GRACE_MS = 60 * 60 * 1_000;

/** Runs looked at per scan and pass: a larger backlog drains over the next passes. */
const BATCH = 100;

export class ReaperPass {
  private readonly report: ReapReport = { rescheduled: [], failed: [], cancelled: [], buildContextsRemoved: [], logsRemoved: 0 };
  private readonly recoveries = new Map<string, Promise<RecoveryPolicy>>();
  private readonly agents = new Map<string, Promise<StoredAgent | undefined>>();

  constructor(
    private readonly options: ReaperOptions,
    private readonly now: number,
  ) {}

  async run(): Promise<ReapReport> {
    await this.unstarted();
    await this.silent();
    await this.unconfirmedCancels();
    await this.unusedBuildContexts();
    await this.oldLogs();
    return this.report;
  }

  /** Rule 5. */
  private async oldLogs(): Promise<void> {
    const { store, timings } = this.options;
    if (timings.logRetentionMs <= 0) return;
    const runs = await store.removeLogsOfRunsEndedBefore(new Date(this.now - timings.logRetentionMs), BATCH);
    if (runs > 0) this.options.logger.info(`removed the logs of ${runs} run(s) that ended more than ${formatMs(timings.logRetentionMs)} ago (server.logRetention)`);
    this.report.logsRemoved += runs;
  }

  /** Rule 1. */
  private async unstarted(): Promise<void> {
    const { store, timings } = this.options;
    const found = new Map<string, { run: FlowRun; leaseLost: boolean }>();
    if (this.upFor(timings.leaseMs)) {
      for (const run of await store.listExpiredLeases(["Submitted"], new Date(this.now), BATCH)) found.set(run.id, { run, leaseLost: true });
    }
    if (this.upFor(timings.startTimeoutMs)) {
      const claimedBefore = new Date(this.now - timings.startTimeoutMs);
      for (const run of await store.listRunsUpdatedBefore("Submitted", claimedBefore, BATCH)) {
        if (!found.has(run.id)) found.set(run.id, { run, leaseLost: false });
      }
    }
    for (const { run, leaseLost } of found.values()) {
      const agent = await this.describeAgent(run.agentId);
      const cause = leaseLost
        ? `flow run ${run.id} (attempt ${run.epoch}) was not started: ${agent} stopped renewing its lease`
        : `flow run ${run.id} (attempt ${run.epoch}) did not start within ${formatMs(timings.startTimeoutMs)} of its claim or last progress report at ${run.updatedAt} by ${agent}`;
      await this.retryOrFail("unstarted", run, await this.recoveryOf(run), cause);
    }
  }

  /** Rule 2. */
  private async silent(): Promise<void> {
    const { store, timings } = this.options;
    if (!this.upFor(timings.runHeartbeatTimeoutMs)) return;
    for (const run of await store.listSilentRunningRuns(new Date(this.now - timings.runHeartbeatTimeoutMs), BATCH)) {
      const heard = run.lastHeartbeatAt
        ? `its container was last heard from at ${run.lastHeartbeatAt} (${this.ago(run.lastHeartbeatAt)} ago)`
        : `its container has not been heard from since the run started at ${run.startedAt ?? "?"} (${this.ago(run.startedAt)} ago)`;
      const cause = `flow run ${run.id} (attempt ${run.epoch}) is lost: ${heard}, on ${await this.describeAgent(run.agentId)}`;
      const recovery = await this.recoveryOf(run);
      if (recovery.onLost === "reschedule") await this.retryOrFail("silent", run, recovery, cause);
      else await this.move("silent", run, "Failed", `${cause}; failed, as the flow's recovery.onLost is "fail"`);
    }
  }

  /** Rule 3. */
  private async unconfirmedCancels(): Promise<void> {
    const { store, timings } = this.options;
    if (!this.upFor(timings.cancelTimeoutMs)) return;
    for (const run of await store.listRunsUpdatedBefore("Cancelling", new Date(this.now - timings.cancelTimeoutMs), BATCH)) {
      const agent = run.agentId === null ? undefined : await this.agent(run.agentId);
      if (agent && !this.isLost(agent)) continue;
      const message = `flow run ${run.id} cancelled without confirmation from ${await this.describeAgent(run.agentId)}: its container may still be running`;
      await this.move("unconfirmed_cancel", run, "Cancelled", message);
    }
  }

  /** Rule 4. */
  private async unusedBuildContexts(): Promise<void> {
    const removed = await this.options.store.deleteUnusedBuildContexts(new Date(this.now - BUILD_CONTEXT_GRACE_MS));
    if (removed.length > 0) this.options.logger.info({ removed }, `removed ${removed.length} build context(s) no flow version names`);
    this.report.buildContextsRemoved.push(...removed);
  }

  private async retryOrFail(rule: ReaperRule, run: FlowRun, recovery: RecoveryPolicy, cause: string): Promise<void> {
    const left = recovery.maxAttempts - run.epoch;
    if (left > 0) await this.move(rule, run, "Scheduled", `${cause}; rescheduled (${left} of ${recovery.maxAttempts} attempts left)`);
    else await this.move(rule, run, "Failed", `${cause}; gave up after ${run.epoch} attempt${run.epoch === 1 ? "" : "s"}`);
  }

  private async move(rule: ReaperRule, run: FlowRun, state: FlowRunStateName, message: string): Promise<void> {
    const log = this.options.logger.child({ flowRunId: run.id, agentId: run.agentId, epoch: run.epoch });
    try {
      await writeState(this.options, run.id, { state, message, expectedVersion: run.version });
    } catch (err) {
      if (!isBerthError(err, "BERTH_E_STALE_VERSION")) throw err;
      log.debug(`reaper: flow run ${run.id} changed meanwhile; leaving it as it is`);
      return;
    }
    this.report[state === "Scheduled" ? "rescheduled" : state === "Cancelled" ? "cancelled" : "failed"].push(run.id);
    this.options.metrics.reaperActions.inc({ rule, outcome: state });
    log.warn({ state }, message);
  }

  /** Whether the server has been up for longer than `windowMs`: before that, no silence is long enough. */
  private upFor(windowMs: number): boolean {
    return this.now - this.options.startedAt > windowMs;
  }

  private isLost(agent: StoredAgent): boolean {
    if (this.options.presence.isWaiting(agent)) return false;
    const heard = Math.max(Date.parse(agent.lastHeartbeatAt), this.options.startedAt);
    return this.now - heard > this.options.timings.agentLostAfterMs;
  }

  /** "agent NAME (id ID, last heard from at T, 12s ago)": who held the run, and when it last spoke. */
  private async describeAgent(agentId: string | null): Promise<string> {
    if (agentId === null) return "no agent";
    const agent = await this.agent(agentId);
    if (!agent) return `agent ${agentId} (unknown to this server)`;
    return `agent ${agent.name} (id ${agent.id}, last heard from at ${agent.lastHeartbeatAt}, ${this.ago(agent.lastHeartbeatAt)} ago)`;
  }

  private ago(at: string | null | undefined): string {
    return at ? formatMs(Math.max(0, this.now - Date.parse(at))) : "?";
  }

  private agent(id: string): Promise<StoredAgent | undefined> {
    let agent = this.agents.get(id);
    if (!agent) this.agents.set(id, (agent = this.options.store.getAgent(id)));
    return agent;
  }

  private recoveryOf(run: FlowRun): Promise<RecoveryPolicy> {
    let recovery = this.recoveries.get(run.flowId);
    if (!recovery) {
      recovery = this.options.store.getFlow(run.flowId).then((flow) => flow?.recovery ?? DEFAULT_RECOVERY);
      this.recoveries.set(run.flowId, recovery);
    }
    return recovery;
  }
}

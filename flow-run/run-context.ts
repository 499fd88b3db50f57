/**
 * What a flow-run container knows about its run, and the state writes it makes. Every flow-run state write
 * is a compare-and-swap on the run's version; a write that loses to a concurrent writer (for example a user
 * cancelling) re-reads the run and tries again only if the transition still makes sense.
 */
import type { RunClient } from "../client/run-client.js";
import { BerthError, isBerthError } from "../wire/errors.js";
import { writeFlowRunState } from "../client/state-writes.js";
import { isServerDown } from "../client/retry.js";
import { FINAL_FLOW_RUN_STATES } from "../wire/constants.js";
import type { FlowRunStateName } from "../wire/schema.js";

/** The run as its container knows it: which it is, its version when the container started, its parameters. */
export interface RunInfo {
  id: string;
  version: number;
  parameters: Record<string, unknown>;
}
import type { RunReporter, StateReport } from "./reporter.js";

export class RunContext {
  version: number;
  /** Set once the runner has reported a final state. */
  finalState: FlowRunStateName | undefined;
  /** Set when the runner has started the flow. */
  started = false;
  /** Set once the server refused this attempt's writes: another attempt owns the run. */
  fenced = false;
  private readonly abortController = new AbortController();

  constructor(
    readonly client: RunClient,
    readonly reporter: RunReporter,
    readonly flowRun: RunInfo,
    /** This attempt's lease epoch (absent when run by hand, without an agent). */
    readonly epoch: number | undefined,
    /** How long state writes (and the last reports) wait out an unreachable server. */
    readonly serverDownForMs: number,
  ) {
    this.version = flowRun.version;
  }

  get id(): string {
    return this.flowRun.id;
  }

  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  /** Why the run was stopped from inside the container, if it was. */
  get stopReason(): string | undefined {
    const reason: unknown = this.abortController.signal.reason;
    return this.abortController.signal.aborted ? (reason instanceof Error ? reason.message : String(reason)) : undefined;
  }

  /** Whether the server holds the run as cancelled (Cancelling): a stop is then a cancellation, not a failure. */
  async cancelledByUser(): Promise<boolean> {
    try {
      const run = await this.client.getFlowRun(this.id);
      return run.state === "Cancelling" || run.state === "Cancelled";
    } catch {
      return false;
    }
  }

  cancel(reason: string): void {
    if (!this.abortController.signal.aborted) this.abortController.abort(new BerthError("BERTH_E_ABORTED", reason));
  }

  /** Stops this attempt: another one owns the run, so nothing more from here may reach the server. */
  fence(): void {
    if (this.fenced) return;
    this.fenced = true;
    this.cancel("another attempt owns this flow run (stale lease): stopping");
  }

  /**
   * Writes a state; returns false when it no longer applies (the run ended elsewhere, or this attempt was
   * superseded). Waits out a server restart. The task states and log lines not yet reported travel with it,
   * and are recorded before it; a final state waits for any that are too many to travel with it.
   */
  async setState(state: FlowRunStateName, message?: string): Promise<boolean> {
    if (this.fenced) return false;
    let report = await this.reporter.takeForStateWrite();
    if (report === undefined && FINAL_FLOW_RUN_STATES.includes(state)) {
      // Once a run is final its followers stop reading: everything it printed goes first.
      await this.reporter.drain(this.serverDownForMs);
      report = await this.reporter.takeForStateWrite();
    }
    const write = (carry: StateReport | undefined) =>
      writeFlowRunState(this.client, this.id, { state, message, ...carry }, this.version, {
        epoch: this.epoch,
        serverDownForMs: this.serverDownForMs,
        onConflict: (current) => {
          if (current.state === "Cancelling") this.cancel("the run was cancelled");
        },
      });
    let outcome;
    try {
      try {
        outcome = await write(report);
        // Not applied (the run ended elsewhere): what it carried goes on its own.
        if (report) this.reporter.stateWriteDone(report, outcome.applied);
      } catch (err) {
        // Not recorded: the reporter sends it on its own (or learns that this attempt is fenced).
        if (report) this.reporter.stateWriteDone(report, false);
        // What it carried must not cost the state (a server with a smaller body limit, a line its database
        // cannot store): once more without it; the reporter splits, retries or drops what the server will
        // not take. An unreachable server or a superseded attempt would refuse that too.
        if (!report || isServerDown(err) || isBerthError(err, "BERTH_E_STALE_LEASE")) throw err;
        if (FINAL_FLOW_RUN_STATES.includes(state)) await this.reporter.drain(this.serverDownForMs);
        outcome = await write(undefined);
      }
    } catch (err) {
      if (!isBerthError(err, "BERTH_E_STALE_LEASE")) throw err;
      this.fence();
      return false;
    }
    this.version = outcome.run.version;
    if (FINAL_FLOW_RUN_STATES.includes(outcome.run.state)) this.finalState = outcome.run.state;
    return outcome.applied;
  }
}

/**
 * What a flow-run container knows about its run, and the state writes it makes. Every flow-run state write
 * is a compare-and-swap on the run's version; a write that loses to a concurrent writer (for example a user
 * cancelling) re-reads the run and tries again only if the transition still makes sense.
 */
import type { ApiClient } from "../api/client.js";
import { BerthError } from "../api/errors.js";
import { writeFlowRunState } from "../api/state-writes.js";
import { FINAL_FLOW_RUN_STATES, type FlowRun, type FlowRunStateName } from "../api/schema.js";
import type { RunReporter } from "./reporter.js";

export class RunContext {
  version: number;
  /** Set once the runner has reported a final state. */
  finalState: FlowRunStateName | undefined;
  /** Set when the runner has started the flow. */
  started = false;
  private readonly abortController = new AbortController();

  constructor(
    readonly client: ApiClient,
    readonly reporter: RunReporter,
    readonly flowRun: FlowRun,
  ) {
    this.version = flowRun.version;
  }

  get id(): string {
    return this.flowRun.id;
  }

  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  cancel(reason: string): void {
    if (!this.abortController.signal.aborted) this.abortController.abort(new BerthError("BERTH_E_ABORTED", reason));
  }

  /** Writes a state; returns false when the run already ended elsewhere (and the write no longer applies). */
  async setState(state: FlowRunStateName, message?: string): Promise<boolean> {
    const outcome = await writeFlowRunState(this.client, this.id, { state, message }, this.version, (current) => {
      if (current.state === "Cancelling") this.cancel("the run was cancelled");
    });
    this.version = outcome.run.version;
    if (FINAL_FLOW_RUN_STATES.includes(outcome.run.state)) this.finalState = outcome.run.state;
    return outcome.applied;
  }
}

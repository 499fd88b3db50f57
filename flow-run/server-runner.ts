/**
 * The flow runner used inside a flow-run container: flows/'s FlowRunner with hooks that report the
 * flow's states, every task's state and its logs to the server. It takes the run's parameters and
 * cancellation from the run context, so a custom environment can call `new Runner({ flow }).run(...)`
 * exactly as it would locally.
 */
import { BerthError } from "../wire/errors.js";
import { FlowRunner, type FlowRunnerOptions, type RunOptions } from "../flows/runner.js";
import type { FlowState } from "../flows/state.js";
import type { RunContext } from "./run-context.js";

export function serverFlowRunnerClass(context: RunContext): typeof FlowRunner {
  return class ServerFlowRunner extends FlowRunner {
    constructor(options: FlowRunnerOptions) {
      super({
        ...options,
        hooks: {
          onFlowState: async (state, message) => {
            if (state === "Running") {
              // No task may start unless this attempt is the one the server says is Running.
              if (!(await context.setState("Running", message))) {
                throw new BerthError("BERTH_E_ABORTED", `flow run ${context.id} is not this attempt's to run (it is ${context.finalState ?? "owned by another attempt"})`);
              }
              context.started = true;
              return;
            }
            // Every log line and task state goes with the final state (context.setState), or before it.
            if (state === "Cancelled" && !(await context.cancelledByUser())) {
              // Stopped from outside (SIGTERM from the Docker engine or an operator), not cancelled: that is a failure.
              await context.setState("Failed", `the flow run's container was stopped before the flow finished (${context.stopReason ?? "signal"})`);
              return;
            }
            await context.setState(state, message);
          },
          onTaskState: (task, state) => {
            context.reporter.taskState({
              taskSlug: task.slug,
              taskName: task.name,
              state: state.name,
              message: state.message ?? null,
              attempt: state.attempt,
              updatedAt: new Date().toISOString(),
            });
          },
        },
      });
    }

    override run(options: RunOptions = {}): Promise<FlowState> {
      return super.run({
        ...options,
        parameters: { ...context.flowRun.parameters, ...(options.parameters ?? {}) },
        signal: options.signal ? AbortSignal.any([options.signal, context.signal]) : context.signal,
      });
    }
  };
}

/**
 * FlowRunner: runs a flow's tasks to a final flow state. Hooks let a subclass report every state as it
 * happens (flow-run/ reports to the server that way); without hooks nothing extra is called per task.
 *
 * Final state (Prefect's rule): Cancelled if the run was aborted; otherwise Failed when any reference task
 * (by default the terminal tasks) ended Failed, TriggerFailed or TimedOut; otherwise Success. A flow whose
 * definition or parameters are wrong ends Failed before any task runs. A Failed flow's message starts with
 * the first task that failed and its error: the cause, not the downstream tasks that could not run.
 *
 * Every failed attempt is logged (error for a task that failed for good, warn for one that will be retried)
 * with the error's message and stack, attributed to the task: through `hooks.onLog` when set, else the
 * process-wide log sink, so the error shows in `berth logs` and on the console of an in-process run.
 */
import { describeError } from "../wire/errors.js";
import { LocalExecutor, type Executor } from "./executors.js";
import type { Flow } from "./flow.js";
import { createLogger, type LogRecord, type Logger } from "../shared/logging.js";
import { RunLoop, type RunLoopOutcome, type TaskRef } from "./run-loop.js";
import { isFailed, type FlowState, type FlowStateName, type TaskState } from "./state.js";

export type { TaskRef } from "./run-loop.js";

export type FlowRunnerStateName = "Running" | FlowStateName;

export interface FlowRunnerHooks {
  /** Called with Running before any task starts, and with the final state; awaited. */
  onFlowState?(state: FlowRunnerStateName, message: string): void | Promise<void>;
  /** Called synchronously on every task state change (Running, Retrying and the final one). */
  onTaskState?(task: TaskRef, state: TaskState): void;
  /** When set, task loggers (`ctx.logger`) write here instead of the process-wide sink. */
  onLog?(record: LogRecord): void;
}

export interface FlowRunnerOptions {
  flow: Flow;
  hooks?: FlowRunnerHooks;
}

export interface RunOptions {
  /** Default: a LocalExecutor. */
  executor?: Executor;
  /** Values for the flow's Parameters, by name (default none). */
  parameters?: Record<string, unknown>;
  /** Aborting it cancels the run: unfinished tasks end Cancelled, and so does the flow. */
  signal?: AbortSignal;
}

interface Prepared {
  parameterValues: Map<number, unknown>;
  reference: number[];
}

export class FlowRunner {
  readonly flow: Flow;
  protected readonly hooks: FlowRunnerHooks;

  constructor({ flow, hooks = {} }: FlowRunnerOptions) {
    this.flow = flow;
    this.hooks = hooks;
  }

  async run(options: RunOptions = {}): Promise<FlowState> {
    const { flow, hooks } = this;
    await hooks.onFlowState?.("Running", `Running flow "${flow.name}"`);
    const prepared = this.prepare(options.parameters ?? {});
    if (typeof prepared === "string") return this.end({ name: "Failed", message: prepared, taskStates: new Map() });
    const executor = options.executor ?? new LocalExecutor();
    const onLog = hooks.onLog;
    const logSink = onLog ? (record: LogRecord) => onLog.call(hooks, record) : undefined;
    const log = createLogger({ flow: flow.name }, logSink);
    const outcome = await new RunLoop({
      nodes: flow.nodes,
      parameterValues: prepared.parameterValues,
      maxConcurrency: executor.maxConcurrency,
      signal: options.signal,
      onTaskState: hooks.onTaskState?.bind(hooks),
      onTaskFailure: (task, state) => logFailure(log, task, state, flow.nodes),
      logSink,
    }).execute();
    return this.end(this.finalState(outcome, prepared.reference));
  }

  private async end(state: FlowState): Promise<FlowState> {
    await this.hooks.onFlowState?.(state.name, state.message);
    return state;
  }

  /** Checks the graph and parameters; returns what the run needs, or why it cannot start. */
  private prepare(given: Record<string, unknown>): Prepared | string {
    const { flow } = this;
    try {
      flow.validate();
    } catch (err) {
      return describeError(err);
    }
    const reference = flow.referenceIndices();
    const parameterValues = new Map<number, unknown>();
    const declared = new Set<string>();
    const problems: string[] = [];
    for (const node of flow.nodes) {
      const p = node.task.parameter;
      if (!p) continue;
      declared.add(p.name);
      const value = Object.hasOwn(given, p.name) ? given[p.name] : undefined;
      if (value === undefined && p.required) problems.push(`required parameter "${p.name}" was not given`);
      parameterValues.set(node.index, value === undefined ? p.default : value);
    }
    for (const name of Object.keys(given)) {
      if (!declared.has(name)) {
        const known = [...declared].map((d) => `"${d}"`).join(", ") || "none";
        problems.push(`unknown parameter "${name}" (flow "${flow.name}" declares: ${known})`);
      }
    }
    return problems.length > 0 ? problems.join("; ") : { parameterValues, reference };
  }

  private finalState(outcome: RunLoopOutcome, reference: number[]): FlowState {
    const nodes = this.flow.nodes;
    const { states } = outcome;
    const taskStates = new Map<string, TaskState>();
    for (let i = 0; i < nodes.length; i++) taskStates.set(nodes[i]!.slug, states[i]!);
    if (outcome.cancelled) {
      return { name: "Cancelled", message: `The flow run was cancelled: ${describeError(outcome.reason ?? "aborted")}`, taskStates };
    }
    const failed = reference.filter((i) => isFailed(states[i]!));
    if (failed.length === 0) return { name: "Success", message: "All reference tasks succeeded.", taskStates };
    const cause = outcome.firstFailure;
    const others = failed.filter((i) => i !== cause);
    const named = others.slice(0, 5).map((i) => {
      const s = states[i]!;
      return `"${nodes[i]!.slug}" (${s.name}${s.message && s.name !== "TriggerFailed" ? `: ${s.message}` : ""})`;
    });
    const more = others.length > 5 ? ` and ${others.length - 5} more` : "";
    const rest = `${named.join(", ")}${more}`;
    if (cause === undefined) return { name: "Failed", message: `Some reference tasks failed: ${rest}`, taskStates };
    const first = states[cause]!;
    const what = first.name === "TimedOut" ? "timed out" : "failed";
    const head = `Task "${nodes[cause]!.slug}" ${what}: ${first.message ?? "no message"}`;
    const tail = others.length === 0 ? "" : `; reference tasks that did not succeed: ${rest}`;
    return { name: "Failed", message: `${head}${tail}`, taskStates };
  }
}

/** One log line per failed attempt, with the error's stack: what a user needs to fix the task. */
function logFailure(log: Logger, task: TaskRef, state: TaskState, nodes: Flow["nodes"]): void {
  const node = nodes.find((n) => n.slug === task.slug);
  const attempts = (node?.task.maxRetries ?? 0) + 1;
  const attempt = attempts > 1 ? ` (attempt ${state.attempt} of ${attempts})` : "";
  const fields = { task: task.slug };
  if (state.name === "Retrying") {
    log.warn({ ...fields, err: state.error }, `Task "${task.slug}" failed${attempt}; retrying`);
  } else if (state.name === "TimedOut") {
    // A timeout's stack is the timer's, which says nothing about the task.
    log.error(fields, `Task "${task.slug}" timed out${attempt}: ${state.message ?? ""}`);
  } else {
    log.error({ ...fields, err: state.error }, `Task "${task.slug}" failed${attempt}`);
  }
}

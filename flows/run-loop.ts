/**
 * One execution of a flow's task graph. Event-driven and iterative: a ready queue (a preallocated ring of
 * node indices) is drained by `pump()`; synchronous tasks complete inline, asynchronous ones count against
 * `maxConcurrency` and call `pump()` again when they settle. Completion costs O(downstream) and no
 * Promise.race, so long chains cannot grow the stack and wide fan-outs stay linear.
 */
import { BerthError, describeError } from "../wire/errors.js";
import { AttemptContext } from "./attempt-context.js";
import { runInTask } from "./context.js";
import type { TaskNode } from "./graph.js";
import type { LogSink } from "../shared/logging.js";
import type { TaskState } from "./state.js";
import { triggerFailure } from "./triggers.js";

export interface TaskRef {
  readonly slug: string;
  readonly name: string;
}

export interface RunLoopOptions {
  nodes: readonly TaskNode[];
  /** Values of the Parameter nodes, by node index. */
  parameterValues: ReadonlyMap<number, unknown>;
  maxConcurrency: number;
  signal?: AbortSignal | undefined;
  onTaskState?: ((task: TaskRef, state: TaskState) => void) | undefined;
  /** Called when an attempt fails (Retrying, Failed, TimedOut), before onTaskState; only on failures. */
  onTaskFailure?: ((task: TaskRef, state: TaskState) => void) | undefined;
  /** Where task loggers write (default: the process-wide sink). */
  logSink?: LogSink | undefined;
}

export interface RunLoopOutcome {
  /** Every node's final state, by node index. */
  states: TaskState[];
  cancelled: boolean;
  /** The abort reason, when cancelled. */
  reason?: unknown;
  /** The node that ended Failed or TimedOut first, if any: the root cause a user wants to see. */
  firstFailure?: number;
}

type FailureKind = "Failed" | "TimedOut";

export class RunLoop {
  private readonly nodes: readonly TaskNode[];
  private readonly max: number;
  private readonly states: (TaskState | undefined)[];
  private readonly pending: Int32Array;
  private readonly attempts: Int32Array;
  private readonly queue: Int32Array;
  private head = 0;
  private tail = 0;
  private inFlight = 0;
  private finished = false;
  private firstFailure: number | undefined;
  private readonly controller = new AbortController();
  private readonly attemptControllers = new Set<AbortController>();
  // Not unref'd: a pending retry or timeout is the run's own work and must keep the process alive.
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly report: ((i: number, state: TaskState) => void) | undefined;
  private resolve: (outcome: RunLoopOutcome) => void = () => {};
  private reject: (err: unknown) => void = () => {};

  constructor(private readonly options: RunLoopOptions) {
    this.nodes = options.nodes;
    const n = this.nodes.length;
    this.max = options.maxConcurrency;
    this.states = new Array<TaskState | undefined>(n);
    this.pending = new Int32Array(n);
    this.attempts = new Int32Array(n);
    this.queue = new Int32Array(n);
    for (let i = 0; i < n; i++) this.pending[i] = this.nodes[i]!.upstream.length;
    const hook = options.onTaskState;
    if (hook) this.report = (i, state) => this.callHook(hook, i, state);
  }

  execute(): Promise<RunLoopOutcome> {
    return new Promise<RunLoopOutcome>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      const { signal } = this.options;
      if (signal?.aborted) return this.cancel(signal.reason);
      signal?.addEventListener("abort", this.onAbort, { once: true });
      for (let i = 0; i < this.nodes.length; i++) if (this.pending[i] === 0) this.queue[this.tail++] = i;
      this.pump();
    });
  }

  private readonly onAbort = (): void => this.cancel(this.options.signal?.reason);

  private pump(): void {
    while (!this.finished) {
      if (this.head === this.tail) {
        if (this.inFlight === 0) this.finish();
        return;
      }
      if (this.inFlight >= this.max) return;
      const i = this.queue[this.head++]!;
      if (this.triggerPasses(i)) this.start(i, 1);
    }
  }

  /** Runs the task's trigger (flows/triggers.ts); a refusal ends the task TriggerFailed, saying why. */
  private triggerPasses(i: number): boolean {
    const node = this.nodes[i]!;
    const why = triggerFailure(node.task.trigger, node.upstream, this.states, this.nodes);
    if (why === undefined) return true;
    this.complete(i, { name: "TriggerFailed", message: why, attempt: 1 });
    return false;
  }

  private start(i: number, firstAttempt: number): void {
    const node = this.nodes[i]!;
    const task = node.task;
    if (task.parameter) {
      this.complete(i, { name: "Success", result: this.options.parameterValues.get(i), attempt: 1 });
      return;
    }
    for (let attempt = firstAttempt; ; attempt++) {
      this.attempts[i] = attempt;
      let signal = this.controller.signal;
      let own: AbortController | undefined;
      if (task.timeout !== undefined) {
        own = new AbortController();
        this.attemptControllers.add(own);
        signal = own.signal;
      }
      const ctx = new AttemptContext(signal, attempt, node.name, node.slug, this.options.logSink);
      this.report?.(i, { name: "Running", attempt });
      if (this.finished) return;
      let out: unknown;
      let thenable = false;
      let threw = false;
      try {
        out = runInTask({ slug: node.slug, name: node.name, attempt }, task.fn, this.inputsOf(node), ctx);
        thenable = out !== null && (typeof out === "object" || typeof out === "function") && typeof (out as PromiseLike<unknown>).then === "function";
      } catch (err) {
        threw = true;
        out = err;
      }
      if (own && !thenable) this.attemptControllers.delete(own);
      // The task itself may have cancelled the run.
      if (this.finished) return;
      if (threw) {
        if (this.afterFailure(i, attempt, out, "Failed")) continue;
      } else if (thenable) {
        this.awaitAttempt(i, attempt, out as PromiseLike<unknown>, own);
      } else {
        this.complete(i, { name: "Success", result: out, attempt });
      }
      return;
    }
  }

  private awaitAttempt(i: number, attempt: number, promise: PromiseLike<unknown>, own: AbortController | undefined): void {
    this.inFlight++;
    const task = this.nodes[i]!.task;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (ok: boolean, value: unknown, kind: FailureKind): void => {
      if (settled) return;
      settled = true;
      if (timer) {
        clearTimeout(timer);
        this.timers.delete(timer);
      }
      if (own) this.attemptControllers.delete(own);
      if (this.finished) return;
      this.inFlight--;
      if (ok) this.complete(i, { name: "Success", result: value, attempt });
      else if (this.afterFailure(i, attempt, value, kind)) this.start(i, attempt + 1);
      this.pump();
    };
    if (task.timeout !== undefined) {
      const ms = task.timeout;
      timer = setTimeout(() => {
        const err = new BerthError("BERTH_E_TIMEOUT", `task "${this.nodes[i]!.slug}" timed out after ${ms} ms`);
        own?.abort(err);
        settle(false, err, "TimedOut");
      }, ms);
      this.timers.add(timer);
    }
    Promise.resolve(promise).then(
      (value) => settle(true, value, "Failed"),
      (err: unknown) => settle(false, err, "Failed"),
    );
  }

  /** Records a failed attempt; returns true when the next attempt should start right away. */
  private afterFailure(i: number, attempt: number, err: unknown, kind: FailureKind): boolean {
    const task = this.nodes[i]!.task;
    const message = describeError(err);
    if (attempt > task.maxRetries) {
      const state: TaskState = { name: kind, message, error: err, attempt };
      this.firstFailure ??= i;
      this.failed(i, state);
      this.complete(i, state);
      return false;
    }
    const retrying: TaskState = { name: "Retrying", message, error: err, attempt };
    this.failed(i, retrying);
    this.report?.(i, retrying);
    if (this.finished) return false;
    if (task.retryDelay === 0) return true;
    this.inFlight++;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.finished) return;
      this.inFlight--;
      this.start(i, attempt + 1);
      this.pump();
    }, task.retryDelay);
    this.timers.add(timer);
    return false;
  }

  private failed(i: number, state: TaskState): void {
    const hook = this.options.onTaskFailure;
    if (hook) this.callHook(hook, i, state);
  }

  private inputsOf(node: TaskNode): Record<string, unknown> {
    const inputs: Record<string, unknown> = {};
    const bindings = node.bindings;
    for (let k = 0; k < bindings.length; k++) {
      const b = bindings[k]!;
      inputs[b.key] = b.source < 0 ? b.value : this.states[b.source]!.result;
    }
    return inputs;
  }

  /** Sets a final state and releases the downstream tasks it was holding back. */
  private complete(i: number, state: TaskState): void {
    this.states[i] = state;
    this.report?.(i, state);
    const downstream = this.nodes[i]!.downstream;
    for (let k = 0; k < downstream.length; k++) {
      const d = downstream[k]!;
      const left = this.pending[d]! - 1;
      this.pending[d] = left;
      if (left === 0) this.queue[this.tail++] = d;
    }
  }

  private cancel(reason: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.cleanup();
    const message = `cancelled: ${describeError(reason ?? "the run was aborted")}`;
    for (let i = 0; i < this.nodes.length; i++) {
      if (this.states[i] !== undefined) continue;
      const state: TaskState = { name: "Cancelled", message, attempt: Math.max(1, this.attempts[i]!) };
      this.states[i] = state;
      this.report?.(i, state);
    }
    this.controller.abort(reason);
    for (const own of this.attemptControllers) own.abort(reason);
    this.attemptControllers.clear();
    this.resolve({ states: this.states as TaskState[], cancelled: true, reason });
  }

  private finish(): void {
    this.finished = true;
    this.cleanup();
    this.resolve({
      states: this.states as TaskState[],
      cancelled: false,
      ...(this.firstFailure === undefined ? {} : { firstFailure: this.firstFailure }),
    });
  }

  private cleanup(): void {
    this.options.signal?.removeEventListener("abort", this.onAbort);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  /** A throwing hook ends the run: the runner cannot report, so it must not pretend to go on. */
  private callHook(hook: (task: TaskRef, state: TaskState) => void, i: number, state: TaskState): void {
    const node = this.nodes[i]!;
    try {
      hook({ slug: node.slug, name: node.name }, state);
    } catch (err) {
      this.finished = true;
      this.cleanup();
      this.controller.abort(err);
      for (const own of this.attemptControllers) own.abort(err);
      this.reject(err);
    }
  }
}

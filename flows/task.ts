/**
 * A task: one function of a flow, taking one object of named inputs. A Task object is a definition; the
 * flow decides its slug, its upstream tasks and what is bound to its inputs, so one task can appear in
 * several flows (and, copied, several times in one).
 */
import { brand, hasBrand } from "../shared/brand.js";
import { BerthError } from "../wire/errors.js";
import type { Flow } from "./flow.js";
import { declareInputs, inferInputs, type DeclaredInputs } from "./inputs.js";
import type { Logger } from "../shared/logging.js";
import { isTaskTrigger, TASK_TRIGGERS, type TaskTrigger } from "./triggers.js";

export interface TaskContext {
  /** Aborted when the run is cancelled or this attempt times out. */
  readonly signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, and so on. */
  readonly attempt: number;
  readonly taskName: string;
  readonly taskSlug: string;
  readonly logger: Logger;
}

/**
 * A task's function. Declared through a method signature so that Task<{ x: number }> is assignable to
 * Task<Record<string, any>> (method parameters are bivariant), which keeps chains of typed tasks easy.
 */
export type TaskFn<I, O> = { bivariant(inputs: I, ctx: TaskContext): O }["bivariant"];

export interface TaskOptions {
  /**
   * Default: the function's name; for an anonymous function, the variable the task is assigned to when
   * `berth register` bundles the flow, else its position in the flow ("task-3").
   */
  name?: string;
  /** How many times a failed attempt is retried (default 0). */
  maxRetries?: number;
  /** Milliseconds between a failed attempt and its retry (default 0). */
  retryDelay?: number;
  /** Milliseconds an asynchronous attempt may take before it ends TimedOut (default: no limit). */
  timeout?: number;
  /** Free-form tags (default none). */
  tags?: string[];
  /** The input names the task takes; "name?" marks an optional one. Default: read off the function. */
  inputs?: string[];
  /**
   * When the task runs, judged once every upstream task is final (default "allSuccessful"): "allFinished"
   * whatever they ended in, "anyFailed" / "anySuccessful" if at least one failed / succeeded, "allFailed" if
   * every one failed. Otherwise the task ends TriggerFailed. The flow's state still comes from its reference
   * tasks only: a terminal "allFinished" cleanup that succeeds after a failure leaves the flow Success.
   */
  trigger?: TaskTrigger;
}

export interface ParameterInfo {
  readonly name: string;
  readonly default: unknown;
  readonly required: boolean;
}

export type AnyTask = Task<any, any>;

/** What `bind` accepts for each input: a constant, or a task whose result becomes the input. */
export type BindInputs<I> = { [K in keyof I]?: I[K] | Task<any, I[K]> };

interface TaskInternals {
  inputs?: DeclaredInputs | undefined;
  parameter?: ParameterInfo;
  secret?: string;
}

/**
 * Set by bundled flow code (storage/task-names.ts) right after `const x = task(...)`: the variable's name, for
 * a task that has no other. A registered symbol, so that it reaches a Task of any copy of berth.
 */
export const BINDING_NAME = Symbol.for("berth.Task.bindingName");

export class Task<I extends object = Record<string, any>, O = unknown> {
  #name: string;
  #anonymous: boolean;
  readonly fn: TaskFn<I, O | PromiseLike<O>>;
  readonly maxRetries: number;
  readonly retryDelay: number;
  readonly timeout: number | undefined;
  readonly tags: readonly string[];
  /** When the task runs, from its upstream tasks' final states (flows/triggers.ts). */
  readonly trigger: TaskTrigger;
  /** Declared inputs; undefined when the task accepts any input names. */
  readonly inputs: DeclaredInputs | undefined;
  /** Set on tasks made by `Parameter`: their value comes from the run's parameters. */
  readonly parameter: ParameterInfo | undefined;
  /** Set on tasks made by `Secret`: the name of the secret whose value is their result. */
  readonly secret: string | undefined;

  constructor(fn: TaskFn<I, O | PromiseLike<O>>, options: TaskOptions = {}, internals: TaskInternals = {}) {
    if (typeof fn !== "function") {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `task() takes a function, got ${typeof fn}`);
    }
    this.fn = fn;
    this.#anonymous = options.name === undefined && fn.name === "";
    this.#name = options.name ?? (fn.name || "task");
    this.maxRetries = count(options.maxRetries ?? 0, "maxRetries", this.name);
    if (!Number.isInteger(this.maxRetries)) {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `task "${this.name}": maxRetries must be a whole number`);
    }
    this.retryDelay = count(options.retryDelay ?? 0, "retryDelay", this.name);
    if (options.timeout !== undefined && !(options.timeout > 0)) {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `task "${this.name}": timeout must be a positive number of ms`);
    }
    this.timeout = options.timeout;
    this.tags = [...(options.tags ?? [])];
    this.trigger = checkedTrigger(options.trigger, this.name);
    this.inputs = "inputs" in internals ? internals.inputs : options.inputs ? declareInputs(options.inputs) : inferInputs(fn);
    this.parameter = internals.parameter;
    this.secret = internals.secret;
  }

  /** The task's name: given, the function's, the variable it was assigned to, or "task" when it has none. */
  get name(): string {
    return this.#name;
  }

  /** True when nothing names the task: in a flow it is then known by its position ("task-3"). */
  get anonymous(): boolean {
    return this.#anonymous;
  }

  /** Names an anonymous task after the variable it was assigned to; a task with a name keeps it. */
  [BINDING_NAME](name: string): void {
    if (!this.#anonymous || typeof name !== "string" || name === "") return;
    this.#name = name;
    this.#anonymous = false;
  }

  /** A new task with the same function and options (and the same already-read inputs). */
  copy(): Task<I, O> {
    // Plain literals, no spreads: builders copy tasks by the thousand, and spreads make this several times slower.
    const options: TaskOptions = { name: this.#name, maxRetries: this.maxRetries, retryDelay: this.retryDelay, timeout: this.timeout, tags: [...this.tags], trigger: this.trigger };
    const internals: TaskInternals = { inputs: this.inputs };
    if (this.parameter) internals.parameter = this.parameter;
    if (this.secret !== undefined) internals.secret = this.secret;
    const copy = new Task<I, O>(this.fn, options, internals);
    // An anonymous task's copy is anonymous too: known by its own position in the flow.
    copy.#anonymous = this.#anonymous;
    return copy;
  }

  /** Makes `upstream` run before this task in `flow`, adding both to it if needed. */
  setUpstream(upstream: AnyTask, { flow }: { flow: Flow }): this {
    flow.addEdge(upstream, this);
    return this;
  }

  /** Makes `downstream` run after this task in `flow`, adding both to it if needed. */
  setDownstream(downstream: AnyTask, { flow }: { flow: Flow }): this {
    flow.addEdge(this, downstream);
    return this;
  }

  /** Binds inputs in `flow`: a Task value passes that task's result (and runs it first); anything else is a constant. */
  bind(inputs: BindInputs<I>, { flow }: { flow: Flow }): this {
    flow.bindInputs(this, inputs as Record<string, unknown>);
    return this;
  }
}

brand(Task, "Task");

/** Whether `value` is a Task (made with task() or Parameter()), by this copy of berth or another. */
export function isTask(value: unknown): value is AnyTask {
  return hasBrand(value, "Task");
}

/** Wraps a function of one object of named inputs (sync or async) as a task. */
export function task<I extends object = Record<string, any>, O = unknown>(
  fn: (inputs: I, ctx: TaskContext) => O,
  options: TaskOptions = {},
): Task<I, Awaited<O>> {
  return new Task<I, Awaited<O>>(fn as TaskFn<I, Awaited<O> | PromiseLike<Awaited<O>>>, options);
}

export interface ParameterOptions<T> {
  /** The value when the run does not give one (default: none). */
  default?: T;
  /** Whether a run must give a value (default: true exactly when there is no default). */
  required?: boolean;
}

/** A task whose value is the run's parameter `name`. */
export function Parameter<T = unknown>(name: string, options: ParameterOptions<T> = {}): Task<{}, T> {
  if (typeof name !== "string" || name.trim() === "") {
    throw new BerthError("BERTH_E_FLOW_DEFINITION", "a Parameter needs a non-empty name");
  }
  const parameter: ParameterInfo = {
    name,
    default: options.default,
    required: options.required ?? options.default === undefined,
  };
  // The runner never calls a parameter's function: it takes the value from the run's parameters.
  const fn = (): T => options.default as T;
  return new Task<{}, T>(fn, { name }, { inputs: { names: new Set(), required: [] }, parameter });
}

/** The trigger option, checked: a Prefect user may pass a function or a snake_case name here. */
function checkedTrigger(value: unknown, name: string): TaskTrigger {
  if (value === undefined) return "allSuccessful";
  if (isTaskTrigger(value)) return value;
  const given = typeof value === "string" ? `"${value.slice(0, 60)}"` : `of type ${typeof value}`;
  const allowed = TASK_TRIGGERS.map((t) => `"${t}"`).join(", ");
  throw new BerthError("BERTH_E_FLOW_DEFINITION", `task "${name}": unknown trigger ${given} (allowed: ${allowed})`);
}

function count(value: number, option: string, name: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new BerthError("BERTH_E_FLOW_DEFINITION", `task "${name}": ${option} must be a non-negative number, got ${value}`);
  }
  return value;
}

/** How a Secret task reads its value; set by the flow-run container (one per process, whichever copy of berth). */
export type SecretResolver = (name: string, signal: AbortSignal) => Promise<string>;
const SECRET_RESOLVER = Symbol.for("berth.secretResolver");

/** Installs how Secret tasks read their values (the flow-run container's: from the server, with the run's token). */
export function setSecretResolver(resolver: SecretResolver | undefined): void {
  (globalThis as Record<symbol, unknown>)[SECRET_RESOLVER] = resolver;
}

/** The variable a Secret reads when no server is involved (`berth execute flow-file`, tests): BERTH_SECRET_<NAME>. */
export function secretVariable(name: string): string {
  return `BERTH_SECRET_${name.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`;
}

const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

/**
 * A task whose result is the value of the secret `name` (set with `berth secret set NAME`). In a flow run it
 * is fetched from the server with the run's own token when the task runs; run by hand, it is read from the
 * environment variable BERTH_SECRET_<NAME>. The server refuses it to runs of flows that do not declare it, and
 * replaces its value in every log line with [redacted].
 */
export function Secret(name: string, options: Pick<TaskOptions, "maxRetries" | "retryDelay" | "timeout"> = {}): Task<{}, string> {
  if (typeof name !== "string" || !SECRET_NAME.test(name)) {
    throw new BerthError("BERTH_E_FLOW_DEFINITION", `Secret(${JSON.stringify(name)}): a secret's name is 1 to 128 letters, digits, _ . or -, starting with a letter or _`);
  }
  const fn = async (_inputs: {}, ctx: TaskContext): Promise<string> => {
    const resolver = (globalThis as Record<symbol, unknown>)[SECRET_RESOLVER] as SecretResolver | undefined;
    if (resolver) return resolver(name, ctx.signal);
    const value = process.env[secretVariable(name)];
    if (value === undefined) {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `secret ${name} is not available here: set ${secretVariable(name)} to run this flow without a server`);
    }
    return value;
  };
  return new Task<{}, string>(fn, { ...options, name: `secret:${name}` }, { inputs: { names: new Set(), required: [] }, secret: name });
}

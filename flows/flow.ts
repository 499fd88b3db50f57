/**
 * A flow: a named graph of tasks plus where its code lives (storage) and how it runs (environment).
 * Definition errors are thrown as the graph is built (BERTH_E_FLOW_DEFINITION); `validate()` adds the
 * checks that need the whole graph, such as an input nothing is bound to.
 */
import { BerthError } from "../wire/errors.js";
// Checked by hand against the wire's bounds (wire/constants.ts), not with the wire schema: a flow's module is
// loaded in every flow-run container, and loading zod there costs more CPU than a trivial run.
import { CATCH_UP, MAX_ATTEMPTS, ON_LOST, PLACEMENT_CONSTRAINT, PLACEMENT_CONSTRAINT_HELP, RESOURCE_BOUNDS, RUN_AS } from "../wire/constants.js";
import type { CatchUp, ClockSpec, EnvironmentSpec, ParameterSpec, RecoveryPolicy, Resources, RunAs } from "../wire/schema.js";
import { parseByteSize } from "../shared/sizes.js";
import { slugify } from "../shared/slug.js";
import type { Environment } from "../environments/environment.js";
import { LocalEnvironment } from "../environments/local.js";
import { serializeEnvironment } from "../environments/serialize.js";
import { FlowBuilder } from "./builder.js";
import { getDefaultExecutorClass, getDefaultFlowRunnerClass } from "./defaults.js";
import { definition, TaskGraph, type Edge, type TaskNode } from "./graph.js";
import type { RunOptions } from "./runner.js";
import type { FlowState } from "./state.js";
import type { Storage } from "../storage/storage.js";
import type { AnyTask } from "./task.js";
import { brand, hasBrand } from "../shared/brand.js";
import { toClockSpecs, type Schedule } from "./schedules.js";

export interface FlowOptions {
  /** How the flow runs inside its container (default: a new LocalEnvironment). */
  environment?: Environment;
  /** Where the flow's code lives (default: none; `berth register` uses DockerStorage). */
  storage?: Storage;
  /** Labels an agent must have to run the flow, besides the environment's and storage's (default none). */
  labels?: string[];
  /** The clocks the server makes runs from: one CronSchedule or IntervalSchedule, or up to 20 (default none). */
  schedule?: Schedule | Schedule[];
  /** Scheduled slots missed while the server was down: "none" run, the "latest" runs, or "all" run (default "latest"). */
  catchUp?: CatchUp;
  /** At most this many runs of the flow Submitted, Running or Cancelling at once, across every agent; the rest wait Scheduled (default: no limit). */
  maxConcurrentRuns?: number;
  /** Tasks whose states decide the flow's (default: the terminal tasks, those without downstream). */
  referenceTasks?: AnyTask[];
  /** Longest a flow run may run, in ms; the agent stops its container after that (default: no limit). */
  runTimeout?: number;
  /** What the server does when a run's container goes silent (default: fail it; at most 3 attempts in all). */
  recovery?: Partial<RecoveryPolicy>;
  /** Limits of the run's container: memory ("512m", "2g" or bytes), CPUs (1.5), processes (default: the agent's). */
  resources?: ResourceOptions;
  /** "root" runs the flow as root, on agents started with --allow-root only (default "user": unprivileged). */
  runAs?: RunAs;
  /** Where a swarm may run it (agents with --backend swarm): constraints such as "node.labels.zone==a" (default none). */
  placement?: string[];
}

export interface ResourceOptions {
  memory?: string | number;
  cpus?: number;
  pids?: number;
}

export interface SerializedFlow {
  name: string;
  slug: string;
  labels: string[];
  environment: EnvironmentSpec;
  parameters: ParameterSpec[];
  /** Each task, with the slugs of the tasks it waits for (`upstream`, left out when none): the flow's DAG. */
  tasks: { slug: string; name: string; secret?: string; upstream?: string[] }[];
  runTimeoutMs: number | null;
  recovery: RecoveryPolicy;
  schedule: ClockSpec[];
  catchUp: CatchUp;
  maxConcurrentRuns: number | null;
  resources: Resources;
  runAs: RunAs;
  placement: string[];
}

/** The wire's bound on maxConcurrentRuns. */
const MAX_CONCURRENT_RUNS = 100_000;

export class Flow {
  readonly name: string;
  readonly slug: string;
  environment: Environment;
  storage: Storage | undefined;
  /** The flow's clocks, checked and in their wire form. */
  readonly schedule: ClockSpec[];
  readonly catchUp: CatchUp;
  readonly maxConcurrentRuns: number | null;
  readonly resources: Resources;
  readonly runAs: RunAs;
  readonly placement: string[];
  readonly runTimeoutMs: number | null;
  readonly recovery: RecoveryPolicy;
  private readonly explicitLabels: string[];
  private readonly graph = new TaskGraph();
  private reference: AnyTask[] | undefined;

  constructor(name: string, options: FlowOptions = {}) {
    if (typeof name !== "string" || name.trim() === "") throw definition("a Flow needs a non-empty name");
    this.name = name;
    this.slug = slugify(name);
    this.environment = options.environment ?? new LocalEnvironment();
    this.storage = options.storage;
    this.schedule = toClockSpecs(options.schedule, `flow "${name}": schedule`);
    const catchUp: unknown = options.catchUp ?? "latest";
    if (!(CATCH_UP as readonly unknown[]).includes(catchUp)) {
      throw definition(`flow "${name}": catchUp must be "none", "latest" or "all", not ${JSON.stringify(catchUp) ?? String(catchUp)}`);
    }
    this.catchUp = catchUp as CatchUp;
    const limit = options.maxConcurrentRuns;
    if (limit !== undefined && (!Number.isInteger(limit) || limit <= 0 || limit > MAX_CONCURRENT_RUNS)) {
      throw definition(`flow "${name}": maxConcurrentRuns must be a whole number from 1 to ${MAX_CONCURRENT_RUNS}, not ${String(limit)}`);
    }
    this.maxConcurrentRuns = limit ?? null;
    this.resources = checkedResources(name, options.resources);
    const runAs: unknown = options.runAs ?? "user";
    if (!(RUN_AS as readonly unknown[]).includes(runAs)) {
      throw definition(`flow "${name}": runAs must be "user" or "root", not ${JSON.stringify(runAs) ?? String(runAs)}`);
    }
    this.runAs = runAs as RunAs;
    this.placement = checkedPlacement(name, options.placement);
    this.explicitLabels = [...(options.labels ?? [])];
    this.reference = options.referenceTasks ? [...options.referenceTasks] : undefined;
    const timeout = options.runTimeout;
    if (timeout !== undefined && (!Number.isInteger(timeout) || timeout <= 0)) {
      throw definition(`flow "${name}": runTimeout must be a positive whole number of milliseconds, not ${String(timeout)}`);
    }
    this.runTimeoutMs = timeout ?? null;
    this.recovery = checkedRecovery(name, options.recovery);
  }

  /** Defines a flow functionally: `build(f)` adds tasks with `f.add(task, inputs?, { upstream? })`. */
  static build(name: string, build: (f: FlowBuilder) => void): Flow;
  static build(name: string, options: FlowOptions, build: (f: FlowBuilder) => void): Flow;
  static build(name: string, a: FlowOptions | ((f: FlowBuilder) => void), b?: (f: FlowBuilder) => void): Flow {
    const [options, build] = typeof a === "function" ? [{}, a] : [a, b];
    if (!build) throw definition("Flow.build needs a function that adds the tasks");
    const flow = new Flow(name, options);
    build(new FlowBuilder(flow));
    return flow;
  }

  /** The flow's labels: its own, its environment's and its storage's. */
  get labels(): string[] {
    return [...new Set([...this.explicitLabels, ...this.environment.labels, ...(this.storage?.labels ?? [])])];
  }

  get tasks(): AnyTask[] {
    return this.graph.nodes.map((n) => n.task);
  }

  get edges(): readonly Edge[] {
    return this.graph.edges;
  }

  /** The runner's view of the graph, in insertion order. Read-only by contract. */
  get nodes(): readonly TaskNode[] {
    return this.graph.nodes;
  }

  hasTask(task: AnyTask): boolean {
    return this.graph.nodeOf(task) !== undefined;
  }

  /** Adds a task (no-op if present) and returns it. */
  addTask<T extends AnyTask>(task: T): T {
    assertTask(task);
    this.graph.add(task);
    return task;
  }

  /** Adds upstream → downstream, adding either task if needed; `key` binds the result to that input. */
  addEdge(upstream: AnyTask, downstream: AnyTask, { key }: { key?: string } = {}): void {
    assertTask(upstream);
    assertTask(downstream);
    if (key === undefined) this.graph.connect(upstream, downstream);
    else this.graph.bind(downstream, { [key]: upstream }, isTask);
  }

  /** Binds inputs of `task`: Task values pass their result, anything else is a constant. */
  bindInputs(task: AnyTask, inputs: Record<string, unknown>): void {
    assertTask(task);
    this.graph.bind(task, inputs, isTask);
  }

  slugOf(task: AnyTask): string | undefined {
    return this.graph.nodeOf(task)?.slug;
  }

  taskBySlug(slug: string): AnyTask | undefined {
    return this.graph.nodes.find((n) => n.slug === slug)?.task;
  }

  upstreamTasks(task: AnyTask): AnyTask[] {
    return (this.graph.nodeOf(task)?.upstream ?? []).map((i) => this.graph.nodes[i]!.task);
  }

  downstreamTasks(task: AnyTask): AnyTask[] {
    return (this.graph.nodeOf(task)?.downstream ?? []).map((i) => this.graph.nodes[i]!.task);
  }

  /** The tasks whose states decide the flow's final state. */
  get referenceTasks(): AnyTask[] {
    return this.reference ? [...this.reference] : this.graph.nodes.filter((n) => n.downstream.length === 0).map((n) => n.task);
  }

  setReferenceTasks(tasks: AnyTask[] | undefined): void {
    this.reference = tasks ? [...tasks] : undefined;
  }

  /** Node indices of the reference tasks; throws if one is not in the flow. */
  referenceIndices(): number[] {
    if (!this.reference) return this.graph.nodes.filter((n) => n.downstream.length === 0).map((n) => n.index);
    return this.reference.map((t) => {
      const node = this.graph.nodeOf(t);
      if (!node) throw definition(`reference task "${t.name}" is not in flow "${this.name}"`);
      return node.index;
    });
  }

  parameters(): ParameterSpec[] {
    const specs: ParameterSpec[] = [];
    for (const { task } of this.graph.nodes) {
      const p = task.parameter;
      if (!p) continue;
      specs.push(p.default === undefined ? { name: p.name, required: p.required } : { name: p.name, required: p.required, default: p.default });
    }
    return specs;
  }

  /** Throws BERTH_E_FLOW_DEFINITION listing every problem the graph has as a whole. */
  validate(): void {
    const problems: string[] = [];
    try {
      this.referenceIndices();
    } catch (err) {
      problems.push((err as Error).message);
    }
    for (const node of this.graph.nodes) {
      for (const input of node.task.inputs?.required ?? []) {
        if (!node.bindings.some((b) => b.key === input)) {
          problems.push(`task "${node.slug}" needs input "${input}" but nothing is bound to it`);
        }
      }
    }
    if (problems.length > 0) {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `flow "${this.name}" is invalid: ${problems.join("; ")}`, {
        details: { problems },
      });
    }
  }

  /** What the server stores about the flow (the storage serializes itself). */
  serialize(): SerializedFlow {
    return {
      name: this.name,
      slug: this.slug,
      labels: this.labels,
      environment: serializeEnvironment(this.environment),
      parameters: this.parameters(),
      tasks: this.graph.nodes.map((n) => ({
        slug: n.slug,
        name: n.name,
        ...(n.task.secret === undefined ? {} : { secret: n.task.secret }),
        ...(n.upstream.length === 0 ? {} : { upstream: n.upstream.map((i) => this.graph.nodes[i]!.slug) }),
      })),
      runTimeoutMs: this.runTimeoutMs,
      recovery: this.recovery,
      schedule: structuredClone(this.schedule),
      catchUp: this.catchUp,
      maxConcurrentRuns: this.maxConcurrentRuns,
      resources: { ...this.resources },
      runAs: this.runAs,
      placement: [...this.placement],
    };
  }

  /** Runs the flow in this process with the default runner (and, unless given, the default executor). */
  run(options: RunOptions = {}): Promise<FlowState> {
    const Runner = getDefaultFlowRunnerClass();
    const executor = options.executor ?? new (getDefaultExecutorClass())();
    return new Runner({ flow: this }).run({ ...options, executor });
  }
}

/** The flow's placement constraints, each checked as the server will. */
function checkedPlacement(name: string, placement: unknown): string[] {
  if (placement === undefined) return [];
  if (!Array.isArray(placement)) throw definition(`flow "${name}": placement must be an array of constraints such as "node.labels.zone==a"`);
  if (placement.length > 32) throw definition(`flow "${name}": placement has ${placement.length} constraints; at most 32`);
  return placement.map((constraint: unknown) => {
    if (typeof constraint !== "string" || constraint.length > 256 || !PLACEMENT_CONSTRAINT.test(constraint)) {
      const why = typeof constraint !== "string" ? "not a string" : constraint.length > 256 ? "longer than 256 characters" : PLACEMENT_CONSTRAINT_HELP;
      throw definition(`flow "${name}": placement constraint ${JSON.stringify(constraint) ?? String(constraint)} is not valid: ${why}`);
    }
    return constraint.trim();
  });
}

brand(Flow, "Flow");

/** Whether `value` is a Flow, made by this copy of berth or another. */
export function isFlow(value: unknown): value is Flow {
  return hasBrand(value, "Flow");
}

function isTask(value: unknown): value is AnyTask {
  return hasBrand(value, "Task");
}

function assertTask(value: unknown): asserts value is AnyTask {
  if (!isTask(value)) {
    throw definition(`expected a Task (made with task() or Parameter()), got ${value === null ? "null" : typeof value}`);
  }
}

/** The resources option, checked and in its wire form (memory in bytes); each field names its bounds. */
function checkedResources(name: string, options: ResourceOptions | undefined): Resources {
  if (options === undefined) return { memoryBytes: null, cpus: null, pids: null };
  if (typeof options !== "object" || options === null) throw definition(`flow "${name}": resources must be an object like { memory: "512m", cpus: 1.5, pids: 256 }`);
  let memoryBytes: number | null = null;
  if (options.memory !== undefined) {
    const bytes = typeof options.memory === "number" || typeof options.memory === "string" ? parseByteSize(options.memory) : undefined;
    if (bytes === undefined) throw definition(`flow "${name}": resources.memory ${JSON.stringify(options.memory)} is not a size: write it like 512m or 2g`);
    memoryBytes = bytes;
  }
  const resources: Resources = { memoryBytes, cpus: options.cpus ?? null, pids: options.pids ?? null };
  const within = (value: unknown, bounds: { min: number; max: number }, whole: boolean) =>
    value === null || (typeof value === "number" && Number.isFinite(value) && (!whole || Number.isInteger(value)) && value >= bounds.min && value <= bounds.max);
  const wrong = !within(memoryBytes, RESOURCE_BOUNDS.memoryBytes, true)
    ? "memory"
    : !within(resources.cpus, RESOURCE_BOUNDS.cpus, false)
      ? "cpus"
      : !within(resources.pids, RESOURCE_BOUNDS.pids, true)
        ? "pids"
        : undefined;
  if (wrong !== undefined) {
    const given = wrong === "memory" ? options.memory : (options as Record<string, unknown>)[wrong];
    throw definition(`flow "${name}": resources.${wrong} ${JSON.stringify(given)} ${boundOf(wrong)}`);
  }
  return resources;
}

/** The recovery option, checked and with its defaults. */
function checkedRecovery(name: string, options: Partial<RecoveryPolicy> | undefined): RecoveryPolicy {
  if (options === undefined) return { onLost: "fail", maxAttempts: MAX_ATTEMPTS.default };
  if (typeof options !== "object" || options === null) throw definition(`flow "${name}": recovery must be an object like { onLost: "reschedule", maxAttempts: 3 }`);
  const onLost = options.onLost ?? "fail";
  if (!(ON_LOST as readonly unknown[]).includes(onLost)) {
    throw definition(`flow "${name}": recovery onLost: ${JSON.stringify(onLost) ?? String(onLost)} is not one of ${ON_LOST.map((o) => `"${o}"`).join(", ")}`);
  }
  const maxAttempts = options.maxAttempts ?? MAX_ATTEMPTS.default;
  if (typeof maxAttempts !== "number" || !Number.isInteger(maxAttempts) || maxAttempts < MAX_ATTEMPTS.min || maxAttempts > MAX_ATTEMPTS.max) {
    throw definition(`flow "${name}": recovery maxAttempts: ${JSON.stringify(maxAttempts) ?? String(maxAttempts)} must be a whole number from ${MAX_ATTEMPTS.min} to ${MAX_ATTEMPTS.max}`);
  }
  return { onLost, maxAttempts };
}

function boundOf(field: string): string {
  if (field === "memory") return "must be at least 6m (Docker's smallest)";
  if (field === "cpus") return "must be a number of CPUs from 0.01 to 1024";
  return "must be a whole number of processes from 16 to 4194304";
}

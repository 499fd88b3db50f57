/**
 * A flow's task graph, kept in the shape the runner consumes: nodes in insertion order with adjacency as
 * index arrays and input bindings resolved to node indices, so running needs no lookups by task or slug.
 * Every mutation is checked where it happens (cycles, undeclared or doubly bound inputs), and the cycle
 * check is skipped when it cannot find one, which keeps building a 10k-task flow linear.
 */
import { BerthError } from "../wire/errors.js";
import type { AnyTask } from "./task.js";

export interface Binding {
  readonly key: string;
  /** The node whose result is passed, or -1 for a constant. */
  readonly source: number;
  readonly value: unknown;
}

export interface TaskNode {
  readonly task: AnyTask;
  /** Unique in the flow: the task's name, suffixed when the name repeats ("fetch-2"). */
  readonly slug: string;
  /** How users see the task: its name, or for an anonymous task its slug ("task-3", by position). */
  readonly name: string;
  readonly index: number;
  /** Distinct upstream node indices. */
  readonly upstream: number[];
  /** Distinct downstream node indices. */
  readonly downstream: number[];
  readonly bindings: Binding[];
}

export interface Edge {
  readonly upstream: AnyTask;
  readonly downstream: AnyTask;
  /** The input of `downstream` that receives `upstream`'s result, if any. */
  readonly key?: string;
}

// Pairs are kept as one number: upstream * 2^26 + downstream, exact below 2^53.
const PAIR = 67_108_864;

export class TaskGraph {
  readonly nodes: TaskNode[] = [];
  readonly edges: Edge[] = [];
  private readonly byTask = new Map<AnyTask, TaskNode>();
  private readonly slugs = new Set<string>();
  private readonly nextSuffix = new Map<string, number>();
  private readonly pairs = new Set<number>();
  private readonly parameterNames = new Map<string, AnyTask>();

  nodeOf(task: AnyTask): TaskNode | undefined {
    return this.byTask.get(task);
  }

  /** Adds `task` unless present; returns its node. */
  add(task: AnyTask): TaskNode {
    const existing = this.byTask.get(task);
    if (existing) return existing;
    if (task.parameter) {
      const other = this.parameterNames.get(task.parameter.name);
      if (other) throw definition(`the flow already has a parameter named "${task.parameter.name}"`);
      this.parameterNames.set(task.parameter.name, task);
    }
    const slug = this.uniqueSlug(task.anonymous ? `task-${this.nodes.length + 1}` : task.name);
    const node: TaskNode = {
      task,
      slug,
      name: task.anonymous ? slug : task.name,
      index: this.nodes.length,
      upstream: [],
      downstream: [],
      bindings: [],
    };
    this.nodes.push(node);
    this.byTask.set(task, node);
    return node;
  }

  /** Adds the edge upstream → downstream (and both tasks), refusing one that closes a cycle. */
  connect(upstream: AnyTask, downstream: AnyTask, key?: string): void {
    const u = this.add(upstream);
    const d = this.add(downstream);
    this.assertAcyclic(u, d);
    const pair = u.index * PAIR + d.index;
    const known = this.pairs.has(pair);
    if (!known) {
      this.pairs.add(pair);
      u.downstream.push(d.index);
      d.upstream.push(u.index);
    }
    if (!known || key !== undefined) this.edges.push(key === undefined ? { upstream, downstream } : { upstream, downstream, key });
  }

  /** Binds inputs of `task`; checks every name first so that a refused bind changes nothing. */
  bind(task: AnyTask, inputs: Record<string, unknown>, isTask: (v: unknown) => v is AnyTask): void {
    const node = this.add(task);
    const keys = Object.keys(inputs);
    const declared = task.inputs;
    for (const key of keys) {
      if (declared && !declared.names.has(key)) {
        const list = [...declared.names].join(", ") || "no inputs";
        throw definition(`task "${node.slug}" has no input named "${key}" (it declares: ${list})`);
      }
      if (node.bindings.some((b) => b.key === key)) {
        throw definition(`input "${key}" of task "${node.slug}" is bound twice`);
      }
      const value = inputs[key];
      if (isTask(value)) {
        const source = this.byTask.get(value);
        if (source) this.assertAcyclic(source, node);
      }
    }
    for (const key of keys) {
      const value = inputs[key];
      if (isTask(value)) {
        this.connect(value, task, key);
        node.bindings.push({ key, source: this.byTask.get(value)!.index, value: undefined });
      } else {
        node.bindings.push({ key, source: -1, value });
      }
    }
  }

  private uniqueSlug(name: string): string {
    if (!this.slugs.has(name)) {
      this.slugs.add(name);
      return name;
    }
    // Remembering the next suffix per name keeps thousands of same-named tasks linear.
    let n = this.nextSuffix.get(name) ?? 2;
    while (this.slugs.has(`${name}-${n}`)) n++;
    const slug = `${name}-${n}`;
    this.nextSuffix.set(name, n + 1);
    this.slugs.add(slug);
    return slug;
  }

  private assertAcyclic(u: TaskNode, d: TaskNode): void {
    if (u === d) throw definition(`task "${u.slug}" cannot be its own upstream`);
    // A cycle needs a path d ⇝ u; none can exist if d has no downstream or u no upstream.
    if (d.downstream.length === 0 || u.upstream.length === 0) return;
    const path = this.findPath(d, u);
    if (path) {
      const names = [...path, d.index].map((i) => `"${this.nodes[i]!.slug}"`).join(" → ");
      throw definition(`the edge "${u.slug}" → "${d.slug}" would create a cycle: ${names}`);
    }
  }

  /** Node indices of a path from → … → to along downstream edges, or undefined. */
  private findPath(from: TaskNode, to: TaskNode): number[] | undefined {
    const parent = new Map<number, number>([[from.index, -1]]);
    const stack = [from.index];
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (i === to.index) {
        const path: number[] = [];
        for (let at = i; at !== -1; at = parent.get(at)!) path.push(at);
        return path.reverse();
      }
      for (const next of this.nodes[i]!.downstream) {
        if (!parent.has(next)) {
          parent.set(next, i);
          stack.push(next);
        }
      }
    }
    return undefined;
  }
}

export function definition(message: string): BerthError {
  return new BerthError("BERTH_E_FLOW_DEFINITION", message);
}

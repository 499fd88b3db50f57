/**
 * The functional way to define a flow: `Flow.build(name, options, (f) => { const v = f.add(t); ... })`.
 * Every `add` returns the node it added, so the same task definition can be used many times.
 */
import type { Flow } from "./flow.js";
import type { AnyTask, BindInputs, Task } from "./task.js";

export interface AddOptions {
  /** Tasks that must run first without passing a result (default none). */
  upstream?: AnyTask[];
}

export class FlowBuilder {
  constructor(readonly flow: Flow) {}

  /**
   * Adds `task` with `inputs` bound and returns the node. A task already in the flow is added again as a
   * copy with its own slug, except a Parameter: a flow has each parameter once, so it is returned as is.
   */
  add<I extends object, O>(task: Task<I, O>, inputs?: BindInputs<I>, options: AddOptions = {}): Task<I, O> {
    const node = this.flow.hasTask(task) && !task.parameter ? task.copy() : task;
    this.flow.addTask(node);
    for (const upstream of options.upstream ?? []) this.flow.addEdge(upstream, node);
    if (inputs) this.flow.bindInputs(node, inputs as Record<string, unknown>);
    return node;
  }
}

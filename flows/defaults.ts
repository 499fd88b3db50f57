/**
 * The runner and executor classes environments use. A flow-run container swaps in a runner that reports
 * to the server, so an environment written as `new (getDefaultFlowRunnerClass())({ flow })` reports
 * without knowing it.
 */
import { LocalExecutor, type Executor } from "./executors.js";
import { FlowRunner, type FlowRunnerOptions } from "./runner.js";

export type FlowRunnerClass = new (options: FlowRunnerOptions) => FlowRunner;
export type ExecutorClass = new () => Executor;

let runnerClass: FlowRunnerClass = FlowRunner;
let executorClass: ExecutorClass = LocalExecutor;

export function getDefaultFlowRunnerClass(): FlowRunnerClass {
  return runnerClass;
}

export function setDefaultFlowRunnerClass(cls: FlowRunnerClass): void {
  runnerClass = cls;
}

export function getDefaultExecutorClass(): ExecutorClass {
  return executorClass;
}

export function setDefaultExecutorClass(cls: ExecutorClass): void {
  executorClass = cls;
}

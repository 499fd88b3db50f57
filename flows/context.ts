/**
 * Which task is running right now, carried across awaits, so that console output and log lines written
 * anywhere inside a task can be attributed to it (flow-run/ reads it when capturing the console).
 */
import { AsyncLocalStorage } from "node:async_hooks";

export interface CurrentTask {
  readonly slug: string;
  readonly name: string;
  readonly attempt: number;
}

const storage = new AsyncLocalStorage<CurrentTask>();

/** The task whose attempt is executing in this async context, if any. */
export function currentTask(): CurrentTask | undefined {
  return storage.getStore();
}

/** Calls `fn(...args)` with `task` as the current task for everything it starts. */
export function runInTask<A extends unknown[], R>(task: CurrentTask, fn: (...args: A) => R, ...args: A): R {
  return storage.run(task, fn, ...args);
}

/** `berth`: every public name of the SDK. */
export { task, Task, Parameter, Secret, isTask } from "./flows/task.js";
export type { AnyTask, BindInputs, ParameterInfo, ParameterOptions, TaskContext, TaskFn, TaskOptions } from "./flows/task.js";
export { TASK_TRIGGERS, type TaskTrigger } from "./flows/triggers.js";
export { Flow, isFlow, type FlowOptions, type SerializedFlow } from "./flows/flow.js";
export {
  CronSchedule,
  IntervalSchedule,
  isSchedule,
  type Schedule,
  type CronScheduleOptions,
  type IntervalScheduleOptions,
} from "./flows/schedules.js";
export { FlowBuilder, type AddOptions } from "./flows/builder.js";
export type { Edge, TaskNode, Binding } from "./flows/graph.js";
export type { DeclaredInputs } from "./flows/inputs.js";
export { FlowRunner } from "./flows/runner.js";
export type { FlowRunnerHooks, FlowRunnerOptions, FlowRunnerStateName, RunOptions, TaskRef } from "./flows/runner.js";
export { LocalExecutor, ConcurrentExecutor, type Executor, type ConcurrentExecutorOptions } from "./flows/executors.js";
export {
  getDefaultFlowRunnerClass,
  setDefaultFlowRunnerClass,
  getDefaultExecutorClass,
  setDefaultExecutorClass,
  type FlowRunnerClass,
  type ExecutorClass,
} from "./flows/defaults.js";
export { isFailed, isFinal, isSuccessful, type TaskState, type FlowState, type FlowStateName } from "./flows/state.js";
export { currentTask, type CurrentTask } from "./flows/context.js";
export { createLogger, setLogSink, getLogSink, consoleSink, type Logger, type LogRecord, type LogSink } from "./shared/logging.js";
export * from "./environments/index.js";
export { BerthError, isBerthError, type ErrorCode } from "./wire/errors.js";
// storage exports are added by storage/
export * from "./storage/index.js";

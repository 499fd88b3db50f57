/**
 * The states a run ends in. A task's state is one of the wire's TaskRunStateName; a flow run, as the runner
 * sees it, ends Success, Failed or Cancelled (the server adds the states before and around it).
 */
import type { TaskRunStateName } from "../wire/schema.js";

export interface TaskState {
  name: TaskRunStateName;
  /** Why the task is in this state: the error for Failed and Retrying, the cause for TriggerFailed. */
  message?: string;
  /** The task's return value, on Success. */
  result?: unknown;
  /** What the task threw, on Failed, Retrying and TimedOut. */
  error?: unknown;
  /** Which attempt (1-based) this state belongs to. */
  attempt: number;
}

export type FlowStateName = "Success" | "Failed" | "Cancelled";

export interface FlowState {
  name: FlowStateName;
  message: string;
  /** Every task's last state, by task slug, in the order tasks were added to the flow. */
  taskStates: Map<string, TaskState>;
}

const FAILED: ReadonlySet<TaskRunStateName> = new Set(["Failed", "TriggerFailed", "TimedOut"]);
const FINAL: ReadonlySet<TaskRunStateName> = new Set(["Success", "Failed", "TriggerFailed", "TimedOut", "Cancelled"]);

/** Failed, TriggerFailed and TimedOut: the states that make a reference task fail its flow. */
export function isFailed(state: { name: string }): boolean {
  return FAILED.has(state.name as TaskRunStateName);
}

export function isSuccessful(state: { name: string }): boolean {
  return state.name === "Success";
}

/** A state nothing will move on from (for flows: Success, Failed, Cancelled). */
export function isFinal(state: { name: string }): boolean {
  return FINAL.has(state.name as TaskRunStateName);
}

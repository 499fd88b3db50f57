/**
 * Which flow-run state changes the server accepts. Anything not listed is refused with
 * BERTH_E_INVALID_TRANSITION, so that a late or confused writer cannot resurrect a finished run.
 * Pure; the store only enforces versions (compare-and-swap), never this table. The reaper
 * (server/reaper-pass.ts) is the server's own writer and not bound by it: Running → Scheduled, which no
 * client may ask for, is the reaper rescheduling a lost attempt.
 */
import { BerthError } from "../wire/errors.js";
import type { FlowRunStateName } from "../wire/schema.js";

const TRANSITIONS: Readonly<Record<FlowRunStateName, readonly FlowRunStateName[]>> = {
  // Scheduled → Submitted is a claim (POST /api/agents/:id/claim), never a state write: a write that raced
  // the reaper's rescheduling must not take the run back from the queue.
  Scheduled: ["Cancelled"],
  // Back to Scheduled: an agent that claimed a run but could not start it gives it back. Submitted →
  // Submitted: an agent still preparing the run (pulling, building its image) says how far it got.
  Submitted: ["Submitted", "Running", "Failed", "Cancelled", "Scheduled"],
  // Running → Running is a state write that only refreshes the message.
  Running: ["Running", "Success", "Failed", "Cancelling", "Cancelled"],
  // The run may finish on its own before the cancellation reaches it.
  Cancelling: ["Cancelled", "Failed", "Success"],
  Success: [],
  Failed: [],
  Cancelled: [],
};

export function canTransition(from: FlowRunStateName, to: FlowRunStateName): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws BERTH_E_INVALID_TRANSITION naming both states when `from → to` is not allowed. */
export function assertTransition(flowRunId: string, from: FlowRunStateName, to: FlowRunStateName): void {
  if (canTransition(from, to)) return;
  const allowed = TRANSITIONS[from];
  const hint = allowed.length === 0 ? `${from} is final` : `from ${from} a run may go to ${allowed.join(", ")}`;
  throw new BerthError("BERTH_E_INVALID_TRANSITION", `flow run ${flowRunId} cannot go from ${from} to ${to}: ${hint}`, {
    details: { from, to },
  });
}

export function isFinalState(state: FlowRunStateName): boolean {
  return TRANSITIONS[state].length === 0;
}

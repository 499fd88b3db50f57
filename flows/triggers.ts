/**
 * Triggers (Prefect 1's): whether a task runs, decided from its upstream tasks' states once every one of
 * them is final. A trigger that refuses ends the task TriggerFailed without running it, which counts as a
 * failure downstream and for the flow's final state like any other.
 *
 * Failed, TriggerFailed and TimedOut count as failures (state.ts `isFailed`), Success as success. Cancelled
 * counts as finished but as neither, as in Prefect 1 (where Cancelled is a Finished state, not a Failed one):
 * "allFinished" runs after it, "allSuccessful" and "allFailed" refuse, and "anySuccessful" / "anyFailed" need
 * another upstream task that succeeded / failed. (A cancelled run today ends all unfinished tasks at once, so
 * no trigger sees a Cancelled upstream yet; the rule is set for when one can.) A task with no upstream
 * always runs, as Prefect's "any" triggers pass on an empty set.
 */
import { isFailed, type TaskState } from "./state.js";

export const TASK_TRIGGERS = ["allSuccessful", "allFinished", "anyFailed", "anySuccessful", "allFailed"] as const;

export type TaskTrigger = (typeof TASK_TRIGGERS)[number];

const KNOWN: ReadonlySet<unknown> = new Set(TASK_TRIGGERS);

export function isTaskTrigger(value: unknown): value is TaskTrigger {
  return KNOWN.has(value);
}

/** How many upstream tasks a TriggerFailed message names before it says "and N more". */
const NAMED = 5;

/**
 * Why `trigger` refuses to run a task whose upstream node indices are `upstream`, or undefined when it
 * runs. Allocates nothing when the task runs: it is called once per task of every run.
 */
export function triggerFailure(
  trigger: TaskTrigger,
  upstream: readonly number[],
  states: readonly (TaskState | undefined)[],
  nodes: readonly { readonly slug: string }[],
): string | undefined {
  const n = upstream.length;
  if (n === 0 || trigger === "allFinished") return undefined;
  let succeeded = 0;
  let failed = 0;
  for (let k = 0; k < n; k++) {
    const state = states[upstream[k]!]!;
    if (state.name === "Success") succeeded++;
    else if (trigger === "allSuccessful") break;
    else if (isFailed(state)) failed++;
  }
  switch (trigger) {
    case "allSuccessful":
      return succeeded === n ? undefined : explain(trigger, "upstream tasks did not succeed", upstream, states, nodes, (s) => s.name !== "Success");
    case "anySuccessful":
      return succeeded > 0 ? undefined : explain(trigger, "no upstream task succeeded", upstream, states, nodes, () => true);
    case "anyFailed":
      return failed > 0 ? undefined : explain(trigger, "no upstream task failed", upstream, states, nodes, () => true);
    case "allFailed":
      return failed === n ? undefined : explain(trigger, "upstream tasks did not fail", upstream, states, nodes, (s) => !isFailed(s));
  }
}

/** `trigger "anyFailed": no upstream task failed: "a" (Success), "b" (Success)`, naming at most NAMED tasks. */
function explain(
  trigger: TaskTrigger,
  why: string,
  upstream: readonly number[],
  states: readonly (TaskState | undefined)[],
  nodes: readonly { readonly slug: string }[],
  shown: (state: TaskState) => boolean,
): string {
  const named: string[] = [];
  let more = 0;
  for (const u of upstream) {
    const state = states[u]!;
    if (!shown(state)) continue;
    if (named.length < NAMED) named.push(`"${nodes[u]!.slug}" (${state.name})`);
    else more++;
  }
  return `trigger "${trigger}": ${why}: ${named.join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
}

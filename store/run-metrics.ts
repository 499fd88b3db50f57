/**
 * What `/metrics` reports of the runs, read fresh at each scrape: the same SQL on SQLite and PostgreSQL.
 * Both queries are answered from indexes (flow_runs_name_state, and the claim's index of queued runs by
 * labels: flow_runs_state_labels_start on SQLite, flow_runs_due_labels on PostgreSQL), so a scrape costs a
 * walk of an index, never of the rows.
 */
import type { FlowRunStateName } from "../wire/schema.js";

/** How many runs a flow has in one state. */
export interface RunCount {
  flowName: string;
  state: FlowRunStateName;
  count: number;
}

/** The Scheduled runs already due that carry one set of labels, and the earliest due time among them. */
export interface QueueDepth {
  labels: string[];
  count: number;
  oldestDue: string;
}

export interface RunsSnapshot {
  runs: RunCount[];
  queue: QueueDepth[];
}

/** Flow versions of runs that are not over, or are recent. */
export const FLOW_IDS_IN_USE = `SELECT flow_id FROM flow_runs WHERE state IN ('Scheduled', 'Submitted', 'Running', 'Cancelling')
  UNION SELECT flow_id FROM flow_runs WHERE created_at >= @since`;

export const RUN_COUNTS = "SELECT flow_name, state, count(*) AS n FROM flow_runs GROUP BY flow_name, state";
export const QUEUE_DEPTHS = `SELECT labels, count(*) AS n, min(scheduled_start) AS oldest FROM flow_runs
  WHERE state = 'Scheduled' AND scheduled_start <= @now GROUP BY labels`;

export interface RunCountRow {
  flow_name: string;
  state: FlowRunStateName;
  n: number | string;
}
export interface QueueDepthRow {
  labels: string;
  n: number | string;
  oldest: string;
}

/**
 * Sorted here rather than in SQL, so that both stores give one order whatever PostgreSQL's collation.
 * PostgreSQL's count(*) is a bigint, which pg hands over as a string.
 */
export function toRunsSnapshot(runs: readonly RunCountRow[], queue: readonly QueueDepthRow[]): RunsSnapshot {
  const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return {
    runs: runs
      .map((r) => ({ flowName: r.flow_name, state: r.state, count: Number(r.n) }))
      .sort((a, b) => byText(a.flowName, b.flowName) || byText(a.state, b.state)),
    queue: queue
      .map((q) => ({ labels: JSON.parse(q.labels) as string[], count: Number(q.n), oldestDue: q.oldest }))
      .sort((a, b) => byText(a.labels.join(","), b.labels.join(","))),
  };
}

/**
 * The WHERE clause of a run listing (GET /api/flow-runs), shared by both stores: they differ only in how a
 * label is looked up in the JSON array of labels and in the column that orders runs created at the same
 * instant (SQLite's rowid, PostgreSQL's seq).
 */
import type { FlowRunFilter } from "./port.js";

export interface RunListDialect {
  /** A condition true when the run's labels include @label. */
  hasLabel: string;
  /** The column that orders runs created at the same instant, as the listing's ORDER BY does. */
  tieBreak: string;
}

export const DEFAULT_LIST_LIMIT = 100;

export function runListWhere(filter: FlowRunFilter, dialect: RunListDialect): { where: string; params: Record<string, unknown> } {
  const conditions: string[] = [];
  const params: Record<string, unknown> = { limit: filter.limit ?? DEFAULT_LIST_LIMIT };
  const columns = { flowId: "flow_id", flowName: "flow_name", state: "state", agentId: "agent_id" } as const;
  for (const [key, column] of Object.entries(columns) as [keyof typeof columns, string][]) {
    if (filter[key] === undefined) continue;
    conditions.push(`${column} = @${key}`);
    params[key] = filter[key];
  }
  if (filter.label !== undefined) {
    conditions.push(dialect.hasLabel);
    params.label = filter.label;
  }
  if (filter.createdSince !== undefined) {
    conditions.push("created_at >= @createdSince");
    params.createdSince = new Date(filter.createdSince).toISOString();
  }
  if (filter.createdBefore !== undefined) {
    conditions.push("created_at < @createdBefore");
    params.createdBefore = new Date(filter.createdBefore).toISOString();
  }
  if (filter.after !== undefined) {
    // Older than the cursor run in (created_at, tie-break) order; an unknown cursor gives an empty page.
    const t = dialect.tieBreak;
    conditions.push(`EXISTS (SELECT 1 FROM flow_runs cursor WHERE cursor.id = @after
      AND (flow_runs.created_at < cursor.created_at OR (flow_runs.created_at = cursor.created_at AND flow_runs.${t} < cursor.${t})))`);
    params.after = filter.after;
  }
  return { where: conditions.length > 0 ? `WHERE ${conditions.join(" AND ")}` : "", params };
}

/**
 * The SQLite store's orchestration: the claim under start times and concurrency limits, the limits
 * themselves, and the scheduler's slots. Each function runs inside the caller's transaction (sqlite.ts wraps
 * every write in BEGIN IMMEDIATE), so that a check and the write it allows cannot be split by another
 * connection. Slots are made once by a unique key, not by a lock held in memory, so that several schedulers
 * sharing one database (server replicas) still make each slot's run once.
 */
import type Database from "better-sqlite3";
import { clockKey, slotsAfter } from "../flows/schedules.js";
import type { ClockSpec, ConcurrencyLimit, FlowRecord, FlowRun, ScheduleTick } from "../wire/schema.js";
import { labelsMatch } from "./labels.js";
import { LimitCounts, claimPage } from "./limits.js";
import type { AppliedSlots, NewFlowRun, ScheduleState } from "./port.js";
import { newRunRow, toFlow, toFlowRun, type FlowRow, type FlowRunRow } from "./sqlite-rows.js";

/** What these functions need of the store's connection: prepared statements, and its clock. */
export interface SqlAccess {
  get<T>(sql: string, ...params: unknown[]): T | undefined;
  all<T>(sql: string, ...params: unknown[]): T[];
  run(sql: string, ...params: unknown[]): Database.RunResult;
  /** Now, or `afterMs` from now, on the store's clock (ISO-8601, UTC). */
  timestamp(afterMs?: number): string;
}

/** The states in which a run holds a slot of every limit that applies to it. */
const ACTIVE = "('Submitted', 'Running', 'Cancelling')";



// The label rule of store/labels.ts, in SQL, so that the (state, scheduled_start) index scan skips unmatched runs.
const LABEL_RULE = {
  unlabelled: "labels = '[]'",
  labelled: `labels <> '[]' AND NOT EXISTS (
      SELECT 1 FROM json_each(flow_runs.labels) AS l WHERE l.value NOT IN (SELECT value FROM json_each(@agentLabels)))`,
};

// No filter for full limits here: a claim takes this path only when none is full (else groupHeads), and one
// that fills up during the claim is checked run by run (LimitCounts.allows). Such filters cost more than the
// rest of the query: every execution built their lists.
function candidatesSql(rule: string, from = "flow_runs"): string {
  return `
    SELECT id, rowid AS rid, scheduled_start, labels, flow_name FROM ${from}
    WHERE state = 'Scheduled' AND scheduled_start <= @now AND ${rule}
      AND (scheduled_start, rowid) > (@afterStart, @afterRowid)
    ORDER BY scheduled_start, rowid LIMIT @page`;
}

/**
 * The due runs of one label set, earliest start first, from the (state, labels, scheduled_start) index: a
 * claim reads only runs it could take, however many runs of other labels are queued.
 */
// INDEXED BY: without statistics the planner would take (state, scheduled_start) for its range, and walk past
// every run of other labels.
export const CANDIDATES_OF_SET = candidatesSql("labels = @labels", "flow_runs INDEXED BY flow_runs_state_labels_start");
/** The next label set of the Scheduled runs after @labels: one index seek per distinct set (a skip scan). */
export const NEXT_LABEL_SET = "SELECT labels FROM flow_runs WHERE state = 'Scheduled' AND labels > @labels ORDER BY labels LIMIT 1";

export const NEXT_START = {
  unlabelled: `SELECT scheduled_start FROM flow_runs WHERE state = 'Scheduled' AND scheduled_start > @now AND ${LABEL_RULE.unlabelled}
    ORDER BY scheduled_start LIMIT 1`,
  labelled: `SELECT scheduled_start FROM flow_runs WHERE state = 'Scheduled' AND scheduled_start > @now AND ${LABEL_RULE.labelled}
    ORDER BY scheduled_start LIMIT 1`,
};

const CLAIM_RUN = `
  UPDATE flow_runs SET state = 'Submitted', state_message = NULL, agent_id = @agentId, version = version + 1,
    epoch = epoch + 1, lease_expires_at = @leaseExpiresAt, updated_at = @now, phases = json_object('claimed', @now)
  WHERE id = @id AND state = 'Scheduled' RETURNING *`;
const INSERT_RUN_STATE = "INSERT INTO flow_run_states (flow_run_id, state, message, version, agent_id, at) VALUES (?, ?, ?, ?, ?, ?)";

// The limits in force: every label limit, and each flow's maxConcurrentRuns as its newest version says.
const LABEL_LIMITS = "SELECT label, max_runs FROM concurrency_limits";
const FLOW_LIMITS = `
  SELECT name, max_concurrent_runs FROM flows f
  WHERE max_concurrent_runs IS NOT NULL AND version = (SELECT max(version) FROM flows g WHERE g.name = f.name)`;
const ACTIVE_BY_LABEL = `
  SELECT l.value AS key, count(*) AS n FROM flow_runs r, json_each(r.labels) AS l
  WHERE r.state IN ${ACTIVE} AND l.value IN (SELECT value FROM json_each(?)) GROUP BY l.value`;
const ACTIVE_BY_FLOW = `
  SELECT flow_name AS key, count(*) AS n FROM flow_runs
  WHERE state IN ${ACTIVE} AND flow_name IN (SELECT value FROM json_each(?)) GROUP BY flow_name`;

interface Candidate {
  id: string;
  rid: number;
  scheduled_start: string;
  labels: string;
  flow_name: string;
}

/** The limits in force and the slots taken, read inside the claim's transaction. */
function readLimits(sql: SqlAccess): LimitCounts {
  const labelMax = new Map(sql.all<{ label: string; max_runs: number }>(LABEL_LIMITS).map((r) => [r.label, r.max_runs]));
  const flowMax = new Map(sql.all<{ name: string; max_concurrent_runs: number }>(FLOW_LIMITS).map((r) => [r.name, r.max_concurrent_runs]));
  const labelActive = new Map<string, number>();
  const flowActive = new Map<string, number>();
  if (labelMax.size > 0) {
    for (const r of sql.all<{ key: string; n: number }>(ACTIVE_BY_LABEL, JSON.stringify([...labelMax.keys()]))) labelActive.set(r.key, r.n);
  }
  if (flowMax.size > 0) {
    for (const r of sql.all<{ key: string; n: number }>(ACTIVE_BY_FLOW, JSON.stringify([...flowMax.keys()]))) flowActive.set(r.key, r.n);
  }
  return new LimitCounts(labelMax, flowMax, labelActive, flowActive);
}

/**
 * Claims up to `max` runs. It writes only for a run it returns: a claim that returns nothing wrote nothing,
 * which lets store/sqlite.ts answer it without waiting for a sync.
 */
export function claimRuns(sql: SqlAccess, agentId: string, agentLabels: readonly string[], max: number, leaseMs: number): FlowRun[] {
  const now = sql.timestamp();
  const leaseExpiresAt = sql.timestamp(leaseMs);
  const limits = readLimits(sql);
  const claimed: FlowRun[] = [];
  const take = (candidate: Candidate): boolean => {
    const labels = JSON.parse(candidate.labels) as string[];
    if (!limits.allows(labels, candidate.flow_name)) return false;
    const row = sql.get<FlowRunRow>(CLAIM_RUN, { id: candidate.id, agentId, now, leaseExpiresAt });
    if (!row) return false;
    sql.run(INSERT_RUN_STATE, candidate.id, "Submitted", null, row.version, agentId, now);
    limits.take(labels, candidate.flow_name);
    claimed.push(toFlowRun(row));
    return claimed.length >= max;
  };
  if (limits.anyFull) {
    // Walking past every run a full limit holds would cost each claim the whole queue: look only at the
    // heads of the groups (label set, flow) that no full limit holds.
    for (const candidate of groupHeads(sql, agentLabels, limits, now, max)) if (take(candidate)) break;
    return claimed;
  }
  // The label sets the agent may take: each is read from its own place in the index, never past others'.
  const sets = agentLabels.length === 0 ? ["[]"] : labelSetsFor(sql, agentLabels);
  const page = claimPage(max, limits);
  const params = { now, page };
  // A merge of the sets' pages, earliest start first; a set's next page is read when its last one is used up.
  const queues = sets.map((labels) => ({ labels, buffer: [] as Candidate[], after: { start: "", rowid: 0 }, more: true }));
  for (;;) {
    for (const queue of queues) {
      if (queue.buffer.length > 0 || !queue.more) continue;
      queue.buffer = sql.all<Candidate>(CANDIDATES_OF_SET, { ...params, labels: queue.labels, afterStart: queue.after.start, afterRowid: queue.after.rowid });
      queue.more = queue.buffer.length === page;
      const last = queue.buffer[queue.buffer.length - 1];
      if (last) queue.after = { start: last.scheduled_start, rowid: last.rid };
    }
    let next: (typeof queues)[number] | undefined;
    for (const queue of queues) if (queue.buffer[0] && (!next || byStart(queue.buffer[0], next.buffer[0]!) < 0)) next = queue;
    if (!next) return claimed;
    if (take(next.buffer.shift()!)) return claimed;
  }
}

/** The label sets of Scheduled runs that these (non-empty) agent labels satisfy. */
function labelSetsFor(sql: SqlAccess, agentLabels: readonly string[]): string[] {
  const sets: string[] = [];
  // From the very first set: JSON arrays do not sort after "[]" ('"' comes before ']').
  for (let labels = ""; ; ) {
    const next = sql.get<{ labels: string }>(NEXT_LABEL_SET, { labels });
    if (!next) return sets;
    labels = next.labels;
    if (labelsMatch(JSON.parse(labels) as string[], agentLabels)) sets.push(labels);
  }
}

function byStart(a: Candidate, b: Candidate): number {
  return a.scheduled_start < b.scheduled_start ? -1 : a.scheduled_start > b.scheduled_start ? 1 : a.rid - b.rid;
}

// The groups of Scheduled runs, an index seek or two each (a skip scan of flow_runs_state_group: the next flow
// with the same labels, else the next labels), and a group's earliest due runs. A row-value comparison,
// (labels, flow_name) > (...), would scan the rest of the index instead of seeking.
const NEXT_FLOW_IN_GROUP = `
  SELECT labels, flow_name FROM flow_runs WHERE state = 'Scheduled' AND labels = @labels AND flow_name > @flowName
  ORDER BY flow_name LIMIT 1`;
const NEXT_LABELS = `
  SELECT labels, flow_name FROM flow_runs WHERE state = 'Scheduled' AND labels > @labels ORDER BY labels, flow_name LIMIT 1`;
const GROUP_HEADS = `
  SELECT id, rowid AS rid, scheduled_start, labels, flow_name FROM flow_runs
  WHERE state = 'Scheduled' AND labels = @labels AND flow_name = @flowName AND scheduled_start <= @now
  ORDER BY scheduled_start LIMIT @max`;

/** The first `max` due runs of each group the agent may take and no full limit holds, earliest start first. */
function groupHeads(sql: SqlAccess, agentLabels: readonly string[], limits: LimitCounts, now: string, max: number): Candidate[] {
  const heads: Candidate[] = [];
  for (let group = { labels: "", flowName: "" }; ; ) {
    const next =
      sql.get<{ labels: string; flow_name: string }>(NEXT_FLOW_IN_GROUP, group) ??
      sql.get<{ labels: string; flow_name: string }>(NEXT_LABELS, { labels: group.labels });
    if (!next) break;
    group = { labels: next.labels, flowName: next.flow_name };
    const labels = JSON.parse(next.labels) as string[];
    if (!labelsMatch(labels, agentLabels) || !limits.allows(labels, next.flow_name)) continue;
    heads.push(...sql.all<Candidate>(GROUP_HEADS, { ...group, now, max }));
  }
  return heads.sort(byStart);
}

export function nextScheduledStart(sql: SqlAccess, agentLabels: readonly string[]): string | undefined {
  const query = agentLabels.length === 0 ? NEXT_START.unlabelled : NEXT_START.labelled;
  return sql.get<{ scheduled_start: string }>(query, { now: sql.timestamp(), agentLabels: JSON.stringify(agentLabels) })?.scheduled_start;
}

// Concurrency limits.

const HOLDERS_OF_LABEL = `
  SELECT r.* FROM flow_runs r WHERE r.state IN ${ACTIVE}
    AND EXISTS (SELECT 1 FROM json_each(r.labels) AS l WHERE l.value = ?)
  ORDER BY r.updated_at, r.rowid LIMIT ?`;
const HOLDERS_OF_FLOW = `SELECT * FROM flow_runs WHERE flow_name = ? AND state IN ${ACTIVE} ORDER BY updated_at, rowid LIMIT ?`;

export function setConcurrencyLimit(sql: SqlAccess, label: string, max: number): ConcurrencyLimit {
  sql.run(
    `INSERT INTO concurrency_limits (label, max_runs, updated_at) VALUES (?, ?, ?)
     ON CONFLICT (label) DO UPDATE SET max_runs = excluded.max_runs, updated_at = excluded.updated_at`,
    label,
    max,
    sql.timestamp(),
  );
  return { label, max, holders: activeRuns(sql, { label }, 1000).map((run) => run.id) };
}

export function deleteConcurrencyLimit(sql: SqlAccess, label: string): boolean {
  return sql.run("DELETE FROM concurrency_limits WHERE label = ?", label).changes > 0;
}

export function listConcurrencyLimits(sql: SqlAccess): ConcurrencyLimit[] {
  return sql
    .all<{ label: string; max_runs: number }>(`${LABEL_LIMITS} ORDER BY label`)
    .map((row) => ({ label: row.label, max: row.max_runs, holders: activeRuns(sql, { label: row.label }, 1000).map((run) => run.id) }));
}

export function activeRuns(sql: SqlAccess, filter: { label?: string; flowName?: string }, limit: number): FlowRun[] {
  if (filter.label !== undefined) return sql.all<FlowRunRow>(HOLDERS_OF_LABEL, filter.label, limit).map(toFlowRun);
  if (filter.flowName !== undefined) return sql.all<FlowRunRow>(HOLDERS_OF_FLOW, filter.flowName, limit).map(toFlowRun);
  return [];
}

// Runs.

const INSERT_RUN = `
  INSERT INTO flow_runs (id, flow_id, flow_name, flow_version, state, state_message, version, labels, parameters,
    idempotency_key, agent_id, created_at, updated_at, started_at, ended_at, last_heartbeat_at, epoch, lease_expires_at,
    scheduled_start, clock)
  VALUES (@id, @flow_id, @flow_name, @flow_version, @state, @state_message, @version, @labels, @parameters,
    @idempotency_key, @agent_id, @created_at, @updated_at, @started_at, @ended_at, @last_heartbeat_at, @epoch,
    @lease_expires_at, @scheduled_start, @clock)`;

/** Inserts a Scheduled run and its first state; the caller has dealt with idempotency keys. */
export function insertRun(sql: SqlAccess, input: NewFlowRun & { clock?: string | null }): FlowRunRow {
  const now = sql.timestamp();
  const row = newRunRow(input, now);
  sql.run(INSERT_RUN, row);
  sql.run(INSERT_RUN_STATE, row.id, "Scheduled", null, 0, null, now);
  return row;
}

/** Removes a run that never ran (no claim), with its history. */
function deleteUnclaimedRun(sql: SqlAccess, id: string): boolean {
  const row = sql.get<{ id: string }>("SELECT id FROM flow_runs WHERE id = ? AND state = 'Scheduled' AND epoch = 0", id);
  if (!row) return false;
  sql.run("DELETE FROM flow_run_states WHERE flow_run_id = ?", id);
  sql.run("DELETE FROM task_runs WHERE flow_run_id = ?", id);
  sql.run("DELETE FROM logs WHERE flow_run_id = ?", id);
  sql.run("DELETE FROM flow_runs WHERE id = ?", id);
  return true;
}

// Schedules.

/** Slots recorded as paused on resume (those since the last paused pass: a few, unless no server ran). */
const RESUME_SLOTS_RECORDED = 1_000;

const UNCLAIMED_FUTURE = `
  SELECT id FROM flow_runs WHERE flow_name = ? AND clock IS NOT NULL AND state = 'Scheduled' AND epoch = 0 AND scheduled_start > ?`;

/**
 * A new version of `flowName` takes over its schedule (inside registerFlow's transaction): the scheduler's
 * unclaimed runs due after now go, with their slots, so that the new version's clocks make them again; a
 * clock the new version keeps restarts from now at the latest, and a new clock starts from now.
 */
export function takeOverSchedule(sql: SqlAccess, flowName: string, schedule: readonly ClockSpec[]): void {
  const now = sql.timestamp();
  for (const { id } of sql.all<{ id: string }>(UNCLAIMED_FUTURE, flowName, now)) {
    sql.run("DELETE FROM schedule_ticks WHERE flow_run_id = ?", id);
    deleteUnclaimedRun(sql, id);
  }
  const keys = schedule.map(clockKey);
  sql.run("DELETE FROM schedule_clocks WHERE flow_name = ? AND clock NOT IN (SELECT value FROM json_each(?))", flowName, JSON.stringify(keys));
  for (const key of keys) {
    sql.run("INSERT OR IGNORE INTO schedule_clocks (flow_name, clock, cursor) VALUES (?, ?, ?)", flowName, key, now);
    sql.run("UPDATE schedule_clocks SET cursor = ? WHERE flow_name = ? AND clock = ? AND cursor > ?", now, flowName, key, now);
  }
  if (keys.length > 0) sql.run("INSERT OR IGNORE INTO schedules (flow_name, paused, updated_at) VALUES (?, 0, ?)", flowName, now);
}

export function listScheduledFlows(sql: SqlAccess): FlowRecord[] {
  return sql
    .all<FlowRow>(
      `SELECT * FROM flows f WHERE schedule IS NOT NULL AND schedule <> '[]'
       AND version = (SELECT max(version) FROM flows g WHERE g.name = f.name) ORDER BY name`,
    )
    .map(toFlow);
}

export function getScheduleState(sql: SqlAccess, flowName: string): ScheduleState {
  const paused = sql.get<{ paused: number }>("SELECT paused FROM schedules WHERE flow_name = ?", flowName)?.paused === 1;
  const cursors: Record<string, string> = {};
  for (const row of sql.all<{ clock: string; cursor: string }>("SELECT clock, cursor FROM schedule_clocks WHERE flow_name = ?", flowName)) {
    cursors[row.clock] = row.cursor;
  }
  return { paused, cursors };
}

/** When the pass before this one ran, and this one's time (kept the later of the two). */
export function recordSchedulerPass(sql: SqlAccess, at: Date): Date | undefined {
  const previous = sql.get<{ passed_at: string }>("SELECT passed_at FROM scheduler_passes WHERE id = 1")?.passed_at;
  sql.run(
    `INSERT INTO scheduler_passes (id, passed_at) VALUES (1, ?)
     ON CONFLICT (id) DO UPDATE SET passed_at = max(passed_at, excluded.passed_at)`,
    at.toISOString(),
  );
  return previous === undefined ? undefined : new Date(previous);
}

export function applySlots(sql: SqlAccess, { flow, clock, paused, decisions, cursor }: AppliedSlots): FlowRun[] | undefined {
  // Decided outside this transaction: write only if the schedule is still as the decisions saw it.
  const newest = sql.get<{ id: string }>("SELECT id FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1", flow.name)?.id;
  const isPaused = sql.get<{ paused: number }>("SELECT paused FROM schedules WHERE flow_name = ?", flow.name)?.paused === 1;
  const hasClock = sql.get<{ one: number }>("SELECT 1 AS one FROM schedule_clocks WHERE flow_name = ? AND clock = ?", flow.name, clock) !== undefined;
  if (newest !== flow.id || isPaused !== paused || !hasClock) return undefined;
  const now = sql.timestamp();
  const made: FlowRun[] = [];
  for (const decision of decisions) {
    const slot = decision.slot.toISOString();
    // The unique (flow, clock, slot) decides: a slot someone recorded already is theirs.
    const recorded = sql.run(
      "INSERT OR IGNORE INTO schedule_ticks (flow_name, clock, slot, outcome, flow_run_id, at) VALUES (?, ?, ?, ?, NULL, ?)",
      flow.name,
      clock,
      slot,
      decision.outcome,
      now,
    );
    if (recorded.changes === 0 || decision.outcome !== "created" || !decision.run) continue;
    const row = insertRun(sql, { ...decision.run, scheduledStart: decision.slot, clock });
    sql.run("UPDATE schedule_ticks SET flow_run_id = ? WHERE flow_name = ? AND clock = ? AND slot = ?", row.id, flow.name, clock, slot);
    made.push(toFlowRun(row));
  }
  const to = cursor.toISOString();
  sql.run("UPDATE schedule_clocks SET cursor = ? WHERE flow_name = ? AND clock = ? AND cursor < ?", to, flow.name, clock, to);
  return made;
}

export function listUnclaimedSlotRuns(sql: SqlAccess, flowName: string, clock: string, from: Date, before: Date): FlowRun[] {
  return sql
    .all<FlowRunRow>(
      `SELECT * FROM flow_runs WHERE flow_name = ? AND clock = ? AND state = 'Scheduled' AND epoch = 0
       AND scheduled_start >= ? AND scheduled_start < ? ORDER BY scheduled_start`,
      flowName,
      clock,
      from.toISOString(),
      before.toISOString(),
    )
    .map(toFlowRun);
}

export function dropSlotRuns(sql: SqlAccess, runIds: readonly string[], outcome: "missed" | "paused"): string[] {
  const dropped: string[] = [];
  for (const id of runIds) {
    if (!deleteUnclaimedRun(sql, id)) continue;
    sql.run("UPDATE schedule_ticks SET outcome = ?, flow_run_id = NULL WHERE flow_run_id = ?", outcome, id);
    dropped.push(id);
  }
  return dropped;
}

export function setSchedulePaused(sql: SqlAccess, flowName: string, paused: boolean): { dropped: string[] } {
  const now = sql.timestamp();
  sql.run(
    `INSERT INTO schedules (flow_name, paused, updated_at) VALUES (?, ?, ?)
     ON CONFLICT (flow_name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at`,
    flowName,
    paused ? 1 : 0,
    now,
  );
  if (paused) {
    const future = sql.all<{ id: string }>(UNCLAIMED_FUTURE, flowName, now).map((row) => row.id);
    return { dropped: dropSlotRuns(sql, future, "paused") };
  }
  // Resumed: slots still to come that the pause dropped are made again; those that passed since the last
  // paused pass are paused too, so that none of them runs late; every clock goes on from now.
  sql.run("DELETE FROM schedule_ticks WHERE flow_name = ? AND outcome = 'paused' AND slot > ?", flowName, now);
  const flow = sql.get<FlowRow>("SELECT * FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1", flowName);
  const cursors = new Map(
    sql.all<{ clock: string; cursor: string }>("SELECT clock, cursor FROM schedule_clocks WHERE flow_name = ?", flowName).map((r) => [r.clock, r.cursor]),
  );
  for (const spec of flow ? toFlow(flow).schedule : []) {
    const key = clockKey(spec);
    const cursor = cursors.get(key);
    if (cursor === undefined || cursor >= now) continue;
    for (const slot of slotsAfter(spec, new Date(cursor), { until: new Date(now), limit: RESUME_SLOTS_RECORDED })) {
      sql.run(
        "INSERT OR IGNORE INTO schedule_ticks (flow_name, clock, slot, outcome, flow_run_id, at) VALUES (?, ?, ?, 'paused', NULL, ?)",
        flowName,
        key,
        slot.toISOString(),
        now,
      );
    }
  }
  sql.run("UPDATE schedule_clocks SET cursor = ? WHERE flow_name = ?", now, flowName);
  return { dropped: [] };
}

export function listScheduleTicks(sql: SqlAccess, flowName: string, limit: number): ScheduleTick[] {
  return sql
    .all<{ clock: string; slot: string; outcome: ScheduleTick["outcome"]; flow_run_id: string | null; at: string }>(
      "SELECT clock, slot, outcome, flow_run_id, at FROM schedule_ticks WHERE flow_name = ? ORDER BY slot DESC, id DESC LIMIT ?",
      flowName,
      limit,
    )
    .map((row) => ({ clock: row.clock, slot: row.slot, outcome: row.outcome, flowRunId: row.flow_run_id, at: row.at }));
}

export function pruneScheduleTicks(sql: SqlAccess, flowName: string, keep: number, before: Date): number {
  // A slot still to come keeps its tick: the tick, not the cursor alone, is what stops a second run.
  return sql.run(
    `DELETE FROM schedule_ticks WHERE id IN (
       SELECT id FROM schedule_ticks WHERE flow_name = ? AND slot <= ? ORDER BY slot DESC, id DESC LIMIT -1 OFFSET ?)`,
    flowName,
    before.toISOString(),
    keep,
  ).changes;
}

/**
 * The PostgreSQL StateStore, for several server replicas on one database. It keeps the SQLite store's rows
 * and rules (store/sqlite-rows.ts maps both), and passes the same contract suite. Each write that checks
 * before it writes runs in one transaction; where two writers could both pass the check (claims counting
 * concurrency limits, a flow's versions and schedule), the transaction first takes an advisory lock, so that
 * those writers go one at a time, whichever replica they are on (claims only while a limit is set). A claim's
 * candidates are taken FOR UPDATE SKIP LOCKED, so that it never waits on a row another writer holds. While no
 * limit is set, a claim is one round trip: the function berth_claim (store/postgres-migrations.ts), shared
 * with the claims that arrive while the last one is under way (store/postgres-claims.ts).
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { clockKey, slotsAfter } from "../flows/schedules.js";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";
import type {
  AgentHealthReport,
  AgentPhases,
  AgentRecord,
  AgentRegister,
  ClockSpec,
  ConcurrencyLimit,
  FlowCreate,
  FlowRecord,
  FlowRun,
  FlowRunStateEntry,
  FlowRunStateName,
  HeldRun,
  LogLine,
  ScheduleTick,
  SecretInfo,
  StoredLog,
  TaskRun,
  TokenRecord,
  TokenRole,
} from "../wire/schema.js";
import { FINAL_FLOW_RUN_STATES } from "../wire/schema.js";
import { buildContextNotFound } from "./build-contexts.js";
import { isStaleEpoch, staleLease } from "./fencing.js";
import { labelsMatch, normalizeLabels } from "./labels.js";
import { LimitCounts, claimPage } from "./limits.js";
import type {
  AppliedSlots,
  FlowRunFilter,
  LeaseRenewal,
  NewFlowRun,
  ScheduleState,
  SealedSecret,
  StateStore,
  StateWrite,
  StoredAgent,
  StoredToken,
} from "./port.js";
import { ClaimBatcher, LIMIT_SET } from "./postgres-claims.js";
import { migratePostgres } from "./postgres-migrations.js";
import { LOGS_REMOVED, logBudget } from "./log-limits.js";
import { FLOW_IDS_IN_USE, QUEUE_DEPTHS, RUN_COUNTS, toRunsSnapshot, type QueueDepthRow, type RunCountRow, type RunsSnapshot } from "./run-metrics.js";
import { runListWhere, type RunListDialect } from "./run-list.js";
import { PG_TYPES, access, unavailable, type PgAccess } from "./postgres-sql.js";
import {
  newFlowRow,
  newRunRow,
  newTokenRow,
  toAgent,
  toFlow,
  toFlowRun,
  toStoredLog,
  toTaskRun,
  toToken,
  withoutHash,
  type AgentRow,
  type FlowRow,
  type FlowRunRow,
  type LogRow,
  type TaskRunRow,
  type TokenRow,
} from "./sqlite-rows.js";

export interface PostgresStoreOptions {
  /** The clock for every stored timestamp; default: the system clock. */
  now?: () => Date;
  /** Connections in the pool; default 10. */
  poolSize?: number;
}

const FINAL_STATES = FINAL_FLOW_RUN_STATES.map((s) => `'${s}'`).join(", ");
const ACTIVE = "('Submitted', 'Running', 'Cancelling')";

/** Advisory lock keys: one for claims (limits are counted across them), one per flow name (versions, schedule). */
const CLAIM_LOCK = "berth:claims";
/** Whether any concurrency limit is set: a label's, or any version's of a flow. */
const ANY_LIMIT = `SELECT EXISTS (SELECT 1 FROM concurrency_limits) OR EXISTS (SELECT 1 FROM flows WHERE max_concurrent_runs IS NOT NULL) AS limited`;
const flowLock = (name: string) => `berth:flow:${name}`;

/** How long a pooled connection may stay idle before it is closed. */
const IDLE_CONNECTION_MS = 5 * 60_000;

/** Opens (and migrates) the database at `url`, a postgres:// connection string. */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    // A connection costs its first use several ms (the backend's start, its caches, the claim functions'
    // plans): one idle for a while stays open, so that a burst of claims every minute or so does not pay that
    // again (pg's default closes them after 10 s).
    idleTimeoutMillis: IDLE_CONNECTION_MS,
    types: PG_TYPES,
    keepAlive: true,
    connectionTimeoutMillis: 10_000,
    // Nothing berth does holds a lock or a transaction for long: a replica cut off mid-transaction must not
    // hold the claim lock for hours (until TCP notices), and a waiter gives up with a 503 rather than hang.
    options: "-c lock_timeout=15000 -c statement_timeout=30000 -c idle_in_transaction_session_timeout=30000",
  });
  // An idle connection that the server drops (a restart) must not take the process down.
  pool.on("error", () => undefined);
  let client: pg.PoolClient | undefined;
  const ignore = (): void => undefined;
  try {
    client = await pool.connect();
    client.on("error", ignore);
    await migratePostgres(client);
  } catch (err) {
    client?.release();
    await pool.end().catch(() => undefined);
    throw new BerthError("BERTH_E_CONFIG", `cannot open the PostgreSQL database at ${redactUrl(url)}: ${describeError(err)}`, { cause: err });
  }
  client.off("error", ignore);
  client.release();
  return new PostgresStore(pool, url, options.now ?? (() => new Date()));
}

/** The URL without its password, for messages and /health. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    if (parsed.searchParams.has("password")) parsed.searchParams.set("password", "***");
    return parsed.toString();
  } catch {
    return "postgres://…";
  }
}

interface Candidate {
  id: string;
  seq: number;
  scheduled_start: string;
  labels: string;
  flow_name: string;
}

/** How runs are listed here: labels are a JSON array, and runs created at one instant are ordered by seq. */
const RUN_LIST: RunListDialect = { hasLabel: "labels::jsonb @> jsonb_build_array(@label::text)", tieBreak: "seq" };

export class PostgresStore implements StateStore {
  readonly description: string;
  private readonly db: PgAccess;
  /** Claims while no limit is set: several that arrive together go as one statement. */
  private readonly claims: ClaimBatcher;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    url: string,
    private readonly now: () => Date,
  ) {
    this.description = `postgres:${redactUrl(url).replace(/^postgres(ql)?:\/\//, "//")}`;
    this.db = access(pool, now);
    this.claims = new ClaimBatcher(this.db, CLAIM_LOCK);
  }

  /** Runs `fn` in one transaction (after the advisory locks given, taken in order), committing or rolling back. */
  private async tx<T>(locks: readonly string[], fn: (db: PgAccess) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((err: unknown) => {
      throw unavailable(err) ?? err;
    });
    let broken = false;
    // A checked-out connection has no listener of the pool's: without one, a reset socket's 'error' event
    // would take the process down before the query's own rejection arrives.
    const onError = (): void => {
      broken = true;
    };
    client.on("error", onError);
    try {
      const db = access(client, this.now);
      await db.run("BEGIN");
      for (const key of locks) await db.run("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", key);
      const result = await fn(db);
      await db.run("COMMIT");
      return result;
    } catch (err) {
      broken = broken || unavailable(err) !== undefined || isBerthError(err, "BERTH_E_UNAVAILABLE");
      if (!broken) await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      // A connection that failed is dropped, not handed to the next caller.
      client.off("error", onError);
      client.release(broken);
    }
  }

  // Flows.

  async registerFlow(input: FlowCreate): Promise<{ flow: FlowRecord; created: boolean }> {
    return this.tx([flowLock(input.name)], async (db) => {
      const context = input.storage.type === "docker" ? input.storage.context : undefined;
      if (context) {
        // FOR SHARE: no removal of unused contexts can slip in between this check and the insert.
        const kept = await db.get<{ size: number }>("SELECT size FROM build_contexts WHERE sha256 = ? FOR SHARE", context.sha256);
        assertBuildContext(context.sha256, context.size, kept?.size);
      }
      const newest = await db.get<FlowRow>("SELECT * FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1", input.name);
      if (newest && newest.content_hash === input.contentHash) return { flow: toFlow(newest), created: false };
      const row = newFlowRow(input, (newest?.version ?? 0) + 1, db.timestamp());
      // A new version with a limit of its own waits, as setting a label's limit does, for the claims under way
      // that found no limit set (claimFlowRuns); the flow's lock is always taken first, so no deadlock.
      if (row.max_concurrent_runs != null) await db.run("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", CLAIM_LOCK);
      await db.run(
        `INSERT INTO flows (id, name, slug, version, content_hash, labels, storage, environment, parameters, tasks, created_at,
           recovery, run_timeout_ms, context_sha256, schedule, catch_up, max_concurrent_runs, resources, run_as, placement)
         VALUES (@id, @name, @slug, @version, @content_hash, @labels, @storage, @environment, @parameters, @tasks, @created_at,
           @recovery, @run_timeout_ms, @context_sha256, @schedule, @catch_up, @max_concurrent_runs, @resources, @run_as, @placement)`,
        row,
      );
      await takeOverSchedule(db, input.name, input.schedule);
      return { flow: toFlow(row), created: true };
    });
  }

  async getFlow(id: string): Promise<FlowRecord | undefined> {
    const row = await this.db.get<FlowRow>("SELECT * FROM flows WHERE id = ?", id);
    return row && toFlow(row);
  }

  async getFlowByName(name: string, version?: number): Promise<FlowRecord | undefined> {
    const row =
      version === undefined
        ? await this.db.get<FlowRow>("SELECT * FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1", name)
        : await this.db.get<FlowRow>("SELECT * FROM flows WHERE name = ? AND version = ?", name, version);
    return row && toFlow(row);
  }

  async listFlows(): Promise<FlowRecord[]> {
    return (await this.db.all<FlowRow>("SELECT * FROM flows ORDER BY name, version DESC")).map(toFlow);
  }

  // Runs.

  async createFlowRun(input: NewFlowRun, onCommitted?: (created: boolean) => void): Promise<{ flowRun: FlowRun; created: boolean }> {
    // A commit here is durable too: its listener hears of it as the write is acknowledged.
    const outcome =
      input.idempotencyKey === undefined
        ? await this.tx([], async (db) => ({ flowRun: toFlowRun(await insertRun(db, input)), created: true }))
        : await this.tx([`berth:idempotency:${input.idempotencyKey}`], async (db) => {
            const existing = await db.get<FlowRunRow>("SELECT * FROM flow_runs WHERE idempotency_key = ?", input.idempotencyKey);
            if (existing) return { flowRun: toFlowRun(existing), created: false };
            return { flowRun: toFlowRun(await insertRun(db, input)), created: true };
          });
    try {
      onCommitted?.(outcome.created);
    } catch {
      // The run is created whatever its listener does: a creator told of a failure would create it twice.
    }
    return outcome;
  }

  async getFlowRun(id: string): Promise<FlowRun | undefined> {
    const row = await this.db.get<FlowRunRow>("SELECT * FROM flow_runs WHERE id = ?", id);
    return row && toFlowRun(row);
  }

  async listFlowRuns(filter: FlowRunFilter): Promise<FlowRun[]> {
    const { where, params } = runListWhere(filter, RUN_LIST);
    const sql = `SELECT * FROM flow_runs ${where} ORDER BY created_at DESC, seq DESC LIMIT @limit`;
    return (await this.db.all<FlowRunRow>(sql, params)).map(toFlowRun);
  }

  async setFlowRunState(id: string, write: StateWrite): Promise<FlowRun> {
    return this.tx([], async (db) => {
      const now = db.timestamp();
      const row = await db.get<FlowRunRow>(
        `UPDATE flow_runs SET state = @state, state_message = @message, version = version + 1, updated_at = @now,
           agent_id = CASE WHEN @state = 'Scheduled' THEN NULL ELSE COALESCE(@agentId, agent_id) END,
           started_at = CASE WHEN @state = 'Running' THEN COALESCE(started_at, @now)
                             WHEN @state = 'Scheduled' THEN NULL ELSE started_at END,
           last_heartbeat_at = CASE WHEN @state = 'Scheduled' THEN NULL ELSE last_heartbeat_at END,
           lease_expires_at = CASE WHEN @state = 'Scheduled' OR @state IN (${FINAL_STATES}) THEN NULL ELSE lease_expires_at END,
           ended_at = CASE WHEN @state IN (${FINAL_STATES}) THEN @now ELSE ended_at END
         WHERE id = @id AND version = @expectedVersion AND (@epoch::bigint IS NULL OR epoch = @epoch::bigint) RETURNING *`,
        {
          id,
          state: write.state,
          message: write.message ?? null,
          agentId: write.agentId ?? null,
          expectedVersion: write.expectedVersion,
          epoch: write.epoch ?? null,
          now,
        },
      );
      if (!row) {
        const current = await db.get<{ version: number; epoch: number }>("SELECT version, epoch FROM flow_runs WHERE id = ?", id);
        if (!current) throw new BerthError("BERTH_E_FLOW_RUN_NOT_FOUND", `flow run ${id} not found`);
        if (write.epoch !== undefined && isStaleEpoch(write.epoch, current.epoch)) throw staleLease(id, current.epoch, write.epoch);
        throw new BerthError("BERTH_E_STALE_VERSION", `flow run ${id} is at version ${current.version}, not ${write.expectedVersion}: re-read it and try again`, {
          details: { expected: write.expectedVersion, actual: current.version },
        });
      }
      await insertRunState(db, id, row.state, row.state_message, row.version, row.agent_id, now);
      return toFlowRun(row);
    });
  }

  async heartbeatFlowRun(id: string, epoch?: number): Promise<FlowRun | undefined> {
    const row = await this.db.get<FlowRunRow>(
      "UPDATE flow_runs SET last_heartbeat_at = @now WHERE id = @id AND (@epoch::bigint IS NULL OR epoch = @epoch::bigint) RETURNING *",
      { id, epoch: epoch ?? null, now: this.db.timestamp() },
    );
    if (row) return toFlowRun(row);
    const current = await this.db.get<{ epoch: number }>("SELECT epoch FROM flow_runs WHERE id = ?", id);
    if (current && epoch !== undefined) throw staleLease(id, current.epoch, epoch);
    return undefined;
  }

  async recordPhases(id: string, epoch: number, phases: AgentPhases): Promise<FlowRun | undefined> {
    const row = await this.db.get<FlowRunRow>(
      "UPDATE flow_runs SET phases = (COALESCE(phases, '{}')::jsonb || @patch::jsonb)::text WHERE id = @id AND epoch = @epoch::bigint RETURNING *",
      { id, epoch, patch: JSON.stringify(phases) },
    );
    if (row) return toFlowRun(row);
    const current = await this.db.get<{ epoch: number }>("SELECT epoch FROM flow_runs WHERE id = ?", id);
    if (current) throw staleLease(id, current.epoch, epoch);
    return undefined;
  }

  /**
   * Claims count concurrency limits one at a time, under the claim lock. Where no limit is set at all, they
   * need not: SKIP LOCKED keeps them off each other's runs. Those hold the claim lock shared, so that setting a
   * limit (which takes it alone) waits for the ones under way, and a claim that finds a limit once it holds
   * the lock goes the way of limits. Which way the last claim went is the guess for the next.
   */
  async claimFlowRuns(agentId: string, agentLabels: readonly string[], max: number, leaseMs: number): Promise<FlowRun[]> {
    // One round trip, one implicit transaction, shared with the claims made at the same time (ClaimBatcher).
    const unlimited = await this.whileUnlimited(async () => (await this.claims.claim(agentId, agentLabels, max, leaseMs)).runs);
    if (unlimited) return unlimited.value;
    return this.tx([CLAIM_LOCK], async (db) => {
      this.limitsSeen = (await db.get<{ limited: boolean }>(ANY_LIMIT))?.limited ?? false;
      return claimRuns(db, agentId, agentLabels, max, leaseMs);
    });
  }

  async claimForAgent(agentId: string, max: number, leaseMs: number): Promise<{ agent: StoredAgent; runs: FlowRun[] } | undefined> {
    // The agent's row and its claim in the same round trip.
    const unlimited = await this.whileUnlimited(async () => {
      const { agent, runs } = await this.claims.claim(agentId, undefined, max, leaseMs);
      return agent && { agent, runs };
    });
    if (unlimited) return unlimited.value;
    const agent = await this.getAgent(agentId);
    return agent && { agent, runs: await this.claimFlowRuns(agentId, agent.labels, max, leaseMs) };
  }

  /**
   * A claim the short way while the last one found no limit set: its value; undefined, and limits seen from
   * now on, when the database function refuses because one is (LIMIT_SET).
   */
  private async whileUnlimited<T>(claim: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.limitsSeen) return undefined;
    try {
      return { value: await claim() };
    } catch (err) {
      if ((err as { code?: string } | undefined)?.code !== LIMIT_SET) throw err;
      this.limitsSeen = true;
      return undefined;
    }
  }

  /** Whether the last claim found a concurrency limit set (see claimFlowRuns). */
  private limitsSeen = false;

  async nextScheduledStart(agentLabels: readonly string[]): Promise<string | undefined> {
    const rule = agentLabels.length === 0 ? "labels = '[]'" : LABELLED_RULE;
    const row = await this.db.get<{ scheduled_start: string }>(
      `SELECT scheduled_start FROM flow_runs WHERE state = 'Scheduled' AND scheduled_start > @now AND ${rule} ORDER BY scheduled_start LIMIT 1`,
      { now: this.db.timestamp(), agentLabels: [...agentLabels] },
    );
    return row?.scheduled_start;
  }

  async flowIdsInUse(createdSince: Date): Promise<string[]> {
    return (await this.db.all<{ flow_id: string }>(FLOW_IDS_IN_USE, { since: createdSince.toISOString() })).map((r) => r.flow_id);
  }

  async runsSnapshot(): Promise<RunsSnapshot> {
    const [runs, queue] = await Promise.all([
      this.db.all<RunCountRow>(RUN_COUNTS),
      this.db.all<QueueDepthRow>(QUEUE_DEPTHS, { now: this.db.timestamp() }),
    ]);
    return toRunsSnapshot(runs, queue);
  }

  // Concurrency limits.

  async setConcurrencyLimit(label: string, max: number): Promise<ConcurrencyLimit> {
    return this.tx([CLAIM_LOCK], async (db) => {
      await db.run(
        `INSERT INTO concurrency_limits (label, max_runs, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (label) DO UPDATE SET max_runs = excluded.max_runs, updated_at = excluded.updated_at`,
        label,
        max,
        db.timestamp(),
      );
      return { label, max, holders: (await activeRuns(db, { label }, 1000)).map((run) => run.id) };
    });
  }

  async deleteConcurrencyLimit(label: string): Promise<boolean> {
    return (await this.db.run("DELETE FROM concurrency_limits WHERE label = ?", label)) > 0;
  }

  async listConcurrencyLimits(): Promise<ConcurrencyLimit[]> {
    const rows = await this.db.all<{ label: string; max_runs: number }>("SELECT label, max_runs FROM concurrency_limits ORDER BY label");
    const limits: ConcurrencyLimit[] = [];
    for (const row of rows) limits.push({ label: row.label, max: row.max_runs, holders: (await activeRuns(this.db, { label: row.label }, 1000)).map((run) => run.id) });
    return limits;
  }

  async listActiveRuns(filter: { label?: string; flowName?: string }, limit: number): Promise<FlowRun[]> {
    return activeRuns(this.db, filter, limit);
  }

  // Schedules.

  async listScheduledFlows(): Promise<FlowRecord[]> {
    const rows = await this.db.all<FlowRow>(
      `SELECT * FROM flows f WHERE schedule IS NOT NULL AND schedule <> '[]'
       AND version = (SELECT max(version) FROM flows g WHERE g.name = f.name) ORDER BY name`,
    );
    return rows.map(toFlow);
  }

  async getScheduleState(flowName: string): Promise<ScheduleState> {
    const paused = (await this.db.get<{ paused: boolean }>("SELECT paused FROM schedules WHERE flow_name = ?", flowName))?.paused === true;
    const cursors: Record<string, string> = {};
    for (const row of await this.db.all<{ clock: string; cursor: string }>("SELECT clock, cursor FROM schedule_clocks WHERE flow_name = ?", flowName)) {
      cursors[row.clock] = row.cursor;
    }
    return { paused, cursors };
  }

  async recordSchedulerPass(at: Date): Promise<Date | undefined> {
    return this.tx(["berth:scheduler-pass"], async (db) => {
      const previous = (await db.get<{ passed_at: string }>("SELECT passed_at FROM scheduler_passes WHERE id = 1"))?.passed_at;
      await db.run(
        `INSERT INTO scheduler_passes (id, passed_at) VALUES (1, ?)
         ON CONFLICT (id) DO UPDATE SET passed_at = GREATEST(scheduler_passes.passed_at, excluded.passed_at)`,
        at.toISOString(),
      );
      return previous === undefined ? undefined : new Date(previous);
    });
  }

  async applySlots({ flow, clock, paused, decisions, cursor }: AppliedSlots): Promise<FlowRun[] | undefined> {
    return this.tx([flowLock(flow.name)], async (db) => {
      const newest = (await db.get<{ id: string }>("SELECT id FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1", flow.name))?.id;
      const isPaused = (await db.get<{ paused: boolean }>("SELECT paused FROM schedules WHERE flow_name = ?", flow.name))?.paused === true;
      const hasClock = (await db.get<{ one: number }>("SELECT 1 AS one FROM schedule_clocks WHERE flow_name = ? AND clock = ?", flow.name, clock)) !== undefined;
      if (newest !== flow.id || isPaused !== paused || !hasClock) return undefined;
      const now = db.timestamp();
      const made: FlowRun[] = [];
      for (const decision of decisions) {
        const slot = decision.slot.toISOString();
        const recorded = await db.run(
          `INSERT INTO schedule_ticks (flow_name, clock, slot, outcome, flow_run_id, at) VALUES (?, ?, ?, ?, NULL, ?)
           ON CONFLICT (flow_name, clock, slot) DO NOTHING`,
          flow.name,
          clock,
          slot,
          decision.outcome,
          now,
        );
        if (recorded === 0 || decision.outcome !== "created" || !decision.run) continue;
        const row = await insertRun(db, { ...decision.run, scheduledStart: decision.slot, clock });
        await db.run("UPDATE schedule_ticks SET flow_run_id = ? WHERE flow_name = ? AND clock = ? AND slot = ?", row.id, flow.name, clock, slot);
        made.push(toFlowRun(row));
      }
      const to = cursor.toISOString();
      await db.run("UPDATE schedule_clocks SET cursor = ? WHERE flow_name = ? AND clock = ? AND cursor < ?", to, flow.name, clock, to);
      return made;
    });
  }

  async listUnclaimedSlotRuns(flowName: string, clock: string, from: Date, before: Date): Promise<FlowRun[]> {
    const rows = await this.db.all<FlowRunRow>(
      `SELECT * FROM flow_runs WHERE flow_name = ? AND clock = ? AND state = 'Scheduled' AND epoch = 0
       AND scheduled_start >= ? AND scheduled_start < ? ORDER BY scheduled_start`,
      flowName,
      clock,
      from.toISOString(),
      before.toISOString(),
    );
    return rows.map(toFlowRun);
  }

  async dropSlotRuns(runIds: readonly string[], outcome: "missed" | "paused"): Promise<string[]> {
    return this.tx([], (db) => dropSlotRuns(db, runIds, outcome));
  }

  async setSchedulePaused(flowName: string, paused: boolean): Promise<{ dropped: string[] }> {
    return this.tx([flowLock(flowName)], async (db) => {
      const now = db.timestamp();
      await db.run(
        `INSERT INTO schedules (flow_name, paused, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (flow_name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at`,
        flowName,
        paused,
        now,
      );
      if (paused) {
        const future = (await db.all<{ id: string }>(UNCLAIMED_FUTURE, flowName, now)).map((row) => row.id);
        return { dropped: await dropSlotRuns(db, future, "paused") };
      }
      await db.run("DELETE FROM schedule_ticks WHERE flow_name = ? AND outcome = 'paused' AND slot > ?", flowName, now);
      const flow = await db.get<FlowRow>("SELECT * FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1", flowName);
      const cursors = new Map(
        (await db.all<{ clock: string; cursor: string }>("SELECT clock, cursor FROM schedule_clocks WHERE flow_name = ?", flowName)).map((r) => [r.clock, r.cursor]),
      );
      for (const spec of flow ? toFlow(flow).schedule : []) {
        const key = clockKey(spec);
        const at = cursors.get(key);
        if (at === undefined || at >= now) continue;
        for (const slot of slotsAfter(spec, new Date(at), { until: new Date(now), limit: RESUME_SLOTS_RECORDED })) {
          await db.run(
            `INSERT INTO schedule_ticks (flow_name, clock, slot, outcome, flow_run_id, at) VALUES (?, ?, ?, 'paused', NULL, ?)
             ON CONFLICT (flow_name, clock, slot) DO NOTHING`,
            flowName,
            key,
            slot.toISOString(),
            now,
          );
        }
      }
      await db.run("UPDATE schedule_clocks SET cursor = ? WHERE flow_name = ?", now, flowName);
      return { dropped: [] };
    });
  }

  async listScheduleTicks(flowName: string, limit: number): Promise<ScheduleTick[]> {
    const rows = await this.db.all<{ clock: string; slot: string; outcome: ScheduleTick["outcome"]; flow_run_id: string | null; at: string }>(
      "SELECT clock, slot, outcome, flow_run_id, at FROM schedule_ticks WHERE flow_name = ? ORDER BY slot DESC, id DESC LIMIT ?",
      flowName,
      limit,
    );
    return rows.map((row) => ({ clock: row.clock, slot: row.slot, outcome: row.outcome, flowRunId: row.flow_run_id, at: row.at }));
  }

  async pruneScheduleTicks(flowName: string, keep: number, before: Date): Promise<number> {
    return this.db.run(
      `DELETE FROM schedule_ticks WHERE id IN (
         SELECT id FROM schedule_ticks WHERE flow_name = ? AND slot <= ? ORDER BY slot DESC, id DESC OFFSET ?)`,
      flowName,
      before.toISOString(),
      keep,
    );
  }

  // Leases and the reaper's scans.

  async renewLeases(agentId: string, runs: readonly HeldRun[], leaseMs: number): Promise<LeaseRenewal> {
    const leaseExpiresAt = this.db.timestamp(leaseMs);
    const lostRunIds: string[] = [];
    for (const { id, epoch } of runs) {
      const renewed = await this.db.run(
        `UPDATE flow_runs SET lease_expires_at = @leaseExpiresAt
         WHERE id = @id AND agent_id = @agentId AND epoch = @epoch AND state IN ${ACTIVE}`,
        { id, epoch, agentId, leaseExpiresAt },
      );
      if (renewed === 0) lostRunIds.push(id);
    }
    return { lostRunIds };
  }

  async listExpiredLeases(states: readonly FlowRunStateName[], before: Date, limit: number): Promise<FlowRun[]> {
    const rows = await this.db.all<FlowRunRow>(
      "SELECT * FROM flow_runs WHERE state = ANY(@states::text[]) AND lease_expires_at < @before ORDER BY lease_expires_at, seq LIMIT @limit",
      { states: [...states], before: before.toISOString(), limit },
    );
    return rows.map(toFlowRun);
  }

  async listSilentRunningRuns(before: Date, limit: number): Promise<FlowRun[]> {
    const rows = await this.db.all<FlowRunRow>(
      `SELECT * FROM flow_runs WHERE state = 'Running' AND COALESCE(last_heartbeat_at, started_at) < @before
       ORDER BY COALESCE(last_heartbeat_at, started_at) LIMIT @limit`,
      { before: before.toISOString(), limit },
    );
    return rows.map(toFlowRun);
  }

  async listRunsUpdatedBefore(state: FlowRunStateName, before: Date, limit: number): Promise<FlowRun[]> {
    const rows = await this.db.all<FlowRunRow>("SELECT * FROM flow_runs WHERE state = @state AND updated_at < @before ORDER BY updated_at LIMIT @limit", {
      state,
      before: before.toISOString(),
      limit,
    });
    return rows.map(toFlowRun);
  }

  async listFlowRunStates(flowRunId: string): Promise<FlowRunStateEntry[]> {
    return this.db.all<FlowRunStateEntry>(
      `SELECT state, message, version, agent_id AS "agentId", at FROM flow_run_states WHERE flow_run_id = ? ORDER BY id`,
      flowRunId,
    );
  }

  // Task runs and logs.

  async upsertTaskRuns(flowRunId: string, taskRuns: TaskRun[], epoch?: number): Promise<void> {
    await this.tx([], async (db) => {
      await assertWritable(db, flowRunId, epoch);
      const now = db.timestamp();
      for (const t of taskRuns) {
        await db.run(
          `INSERT INTO task_runs (flow_run_id, task_slug, task_name, state, message, attempt, updated_at)
           VALUES (@flowRunId, @taskSlug, @taskName, @state, @message, @attempt, @updatedAt)
           ON CONFLICT (flow_run_id, task_slug) DO UPDATE SET task_name = excluded.task_name, state = excluded.state,
             message = excluded.message, attempt = excluded.attempt, updated_at = excluded.updated_at`,
          {
            flowRunId,
            taskSlug: t.taskSlug,
            taskName: t.taskName,
            state: t.state,
            message: t.message ?? null,
            attempt: t.attempt,
            updatedAt: t.updatedAt ?? now,
          },
        );
      }
    });
  }

  async listTaskRuns(flowRunId: string): Promise<TaskRun[]> {
    return (await this.db.all<TaskRunRow>("SELECT * FROM task_runs WHERE flow_run_id = ? ORDER BY updated_at, task_slug", flowRunId)).map(toTaskRun);
  }

  async appendLogs(flowRunId: string, logs: LogLine[], epoch?: number, limitBytes?: number): Promise<void> {
    await this.tx([], async (db) => {
      // FOR UPDATE: appends to one run commit one after the other, in the order of their ids, so that a
      // follower paging by id never passes a line that commits later with a smaller id.
      await assertWritable(db, flowRunId, epoch, "FOR UPDATE");
      const attempt = epoch ?? 0;
      const used = Number((await db.get<{ log_bytes: string | number }>("SELECT log_bytes FROM flow_runs WHERE id = ?", flowRunId))?.log_bytes ?? 0);
      const budget = logBudget(used, limitBytes, db.timestamp());
      for (const wanted of logs) {
        const admitted = budget.admit(wanted);
        if (!admitted) break;
        // A line sent again (a lost reply) is already kept: it cannot pass the limit.
        if (admitted.truncates && wanted.seq !== undefined && (await db.get("SELECT 1 FROM logs WHERE flow_run_id = ? AND attempt = ? AND seq = ?", flowRunId, attempt, wanted.seq))) continue;
        const { line: log, truncates } = admitted;
        const inserted = await db.get<{ id: number }>(
          `INSERT INTO logs (flow_run_id, at, level, message, task, attempt, seq, stream) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (flow_run_id, attempt, seq) WHERE seq IS NOT NULL DO NOTHING RETURNING id`,
          flowRunId,
          log.at,
          log.level,
          log.message,
          log.task ?? null,
          log.seq === undefined ? null : attempt,
          log.seq ?? null,
          log.stream ?? null,
        );
        if (inserted) budget.stored(log, truncates);
        if (truncates) break;
      }
      if (budget.used !== used) await db.run("UPDATE flow_runs SET log_bytes = ? WHERE id = ?", budget.used, flowRunId);
    });
  }

  async removeLogsOfRunsEndedBefore(before: Date, limit: number): Promise<number> {
    return this.tx([], async (db) => {
      const runs = await db.all<{ id: string }>(
        "SELECT id FROM flow_runs WHERE log_bytes >= 0 AND ended_at IS NOT NULL AND ended_at < ? ORDER BY ended_at LIMIT ? FOR UPDATE SKIP LOCKED",
        before.toISOString(),
        limit,
      );
      for (const { id } of runs) {
        await db.run("DELETE FROM logs WHERE flow_run_id = ?", id);
        await db.run("UPDATE flow_runs SET log_bytes = ? WHERE id = ?", LOGS_REMOVED, id);
      }
      return runs.length;
    });
  }

  async listLogs(flowRunId: string, after: number, limit: number): Promise<StoredLog[]> {
    return (await this.db.all<LogRow>("SELECT id, at, level, message, task FROM logs WHERE flow_run_id = ? AND id > ? ORDER BY id LIMIT ?", flowRunId, after, limit)).map(
      toStoredLog,
    );
  }

  // Build contexts.

  async putBuildContext(sha256: string, data: Buffer): Promise<{ created: boolean }> {
    // One statement: a clean-up between an insert and a renewal could not remove what this reports kept.
    const row = await this.db.get<{ created: boolean }>(
      `INSERT INTO build_contexts (sha256, size, data, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (sha256) DO UPDATE SET created_at = excluded.created_at RETURNING (xmax = 0) AS created`,
      sha256,
      data.length,
      data,
      this.db.timestamp(),
    );
    return { created: row?.created === true };
  }

  async buildContextSize(sha256: string): Promise<number | undefined> {
    return (await this.db.get<{ size: number }>("SELECT size FROM build_contexts WHERE sha256 = ?", sha256))?.size;
  }

  async getBuildContext(sha256: string): Promise<Buffer | undefined> {
    return (await this.db.get<{ data: Buffer }>("SELECT data FROM build_contexts WHERE sha256 = ?", sha256))?.data;
  }

  async deleteUnusedBuildContexts(createdBefore: Date): Promise<string[]> {
    const rows = await this.db.all<{ sha256: string }>(
      `DELETE FROM build_contexts c WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM flows f WHERE f.context_sha256 = c.sha256)
       RETURNING sha256`,
      createdBefore.toISOString(),
    );
    return rows.map((row) => row.sha256);
  }

  // Agents.

  async registerAgent(input: AgentRegister): Promise<{ agent: StoredAgent; created: boolean }> {
    const now = this.db.timestamp();
    const labels = JSON.stringify(normalizeLabels(input.labels));
    const row = await this.db.get<AgentRow & { created: boolean }>(
      `INSERT INTO agents (id, name, labels, concurrency, status, created_at, last_heartbeat_at)
       VALUES (@id, @name, @labels, @concurrency, 'online', @now, @now)
       ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, concurrency = excluded.concurrency, status = 'online',
         last_heartbeat_at = excluded.last_heartbeat_at
       RETURNING *, (xmax = 0) AS created`,
      { id: randomUUID(), name: input.name, labels, concurrency: input.concurrency, now },
    );
    if (!row) throw new BerthError("BERTH_E_INTERNAL", `registering agent ${input.name} returned nothing`);
    return { agent: toAgent(row), created: row.created };
  }

  async getAgent(id: string): Promise<StoredAgent | undefined> {
    const row = await this.db.get<AgentRow>("SELECT * FROM agents WHERE id = ?", id);
    return row && toAgent(row);
  }

  async heartbeatAgent(id: string, status: AgentRecord["status"], health?: AgentHealthReport): Promise<StoredAgent | undefined> {
    const now = this.db.timestamp();
    const report = health ? JSON.stringify({ ...health, at: now }) : null;
    const row = await this.db.get<AgentRow>(
      "UPDATE agents SET status = ?, last_heartbeat_at = ?, health = COALESCE(?, health) WHERE id = ? RETURNING *",
      status,
      now,
      report,
      id,
    );
    return row && toAgent(row);
  }

  async listAgents(): Promise<StoredAgent[]> {
    return (await this.db.all<AgentRow>("SELECT * FROM agents ORDER BY created_at, seq")).map(toAgent);
  }

  async markAgentWaiting(id: string, until: string): Promise<void> {
    await this.db.run("UPDATE agents SET waiting_until = ? WHERE id = ?", until, id);
  }

  async clearAgentWaiting(id: string, until: string): Promise<void> {
    await this.db.run("UPDATE agents SET waiting_until = NULL WHERE id = ? AND waiting_until = ?", id, until);
  }

  // Tokens and secrets.

  async createToken(input: { role: TokenRole; name: string | null; labels: string[] | null; hash: string }): Promise<StoredToken> {
    const row = newTokenRow(input, this.db.timestamp());
    await this.db.run(
      "INSERT INTO api_tokens (id, hash, role, name, labels, created_at, revoked_at) VALUES (@id, @hash, @role, @name, @labels, @created_at, @revoked_at)",
      row,
    );
    return toToken(row);
  }

  async findToken(hash: string): Promise<StoredToken | undefined> {
    const row = await this.db.get<TokenRow>("SELECT * FROM api_tokens WHERE hash = ?", hash);
    return row && toToken(row);
  }

  async findTokenAndAgent(hash: string, agentId: string): Promise<{ token: StoredToken | undefined; agent: StoredAgent | undefined }> {
    const row = await this.db.get<{ token: TokenRow | null; agent: AgentRow | null }>(
      "SELECT (SELECT row_to_json(t) FROM api_tokens t WHERE t.hash = ?) AS token, (SELECT row_to_json(a) FROM agents a WHERE a.id = ?) AS agent",
      hash,
      agentId,
    );
    return { token: row?.token ? toToken(row.token) : undefined, agent: row?.agent ? toAgent(row.agent) : undefined };
  }

  async listTokens(): Promise<TokenRecord[]> {
    return (await this.db.all<TokenRow>("SELECT * FROM api_tokens ORDER BY created_at, id")).map((row) => withoutHash(toToken(row)));
  }

  async revokeToken(id: string): Promise<TokenRecord | undefined> {
    await this.db.run("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", this.db.timestamp(), id);
    const row = await this.db.get<TokenRow>("SELECT * FROM api_tokens WHERE id = ?", id);
    return row && withoutHash(toToken(row));
  }

  async putSecret(secret: SealedSecret): Promise<{ created: boolean }> {
    const now = this.db.timestamp();
    const row = await this.db.get<{ created: boolean }>(
      `INSERT INTO secrets (name, sealed, created_at, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at
       RETURNING (xmax = 0) AS created`,
      secret.name,
      secret.sealed,
      now,
      now,
    );
    return { created: row?.created === true };
  }

  async listSecrets(): Promise<SecretInfo[]> {
    const rows = await this.db.all<{ name: string; created_at: string; updated_at: string }>("SELECT name, created_at, updated_at FROM secrets ORDER BY name");
    return rows.map((row) => ({ name: row.name, createdAt: row.created_at, updatedAt: row.updated_at }));
  }

  async getSecrets(names?: readonly string[]): Promise<SealedSecret[]> {
    const rows =
      names === undefined
        ? await this.db.all<SealedSecret>("SELECT name, sealed FROM secrets ORDER BY name")
        : await this.db.all<SealedSecret>("SELECT name, sealed FROM secrets WHERE name = ANY(?::text[]) ORDER BY array_position(?::text[], name)", [...names], [...names]);
    return rows.map((row) => ({ name: row.name, sealed: row.sealed }));
  }

  async deleteSecret(name: string): Promise<boolean> {
    return (await this.db.run("DELETE FROM secrets WHERE name = ?", name)) > 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

// Shared by several methods, inside their transactions.

function assertBuildContext(sha256: string, size: number, kept: number | undefined): void {
  if (kept === undefined) throw buildContextNotFound(sha256);
  if (kept !== size) {
    throw new BerthError("BERTH_E_VALIDATION", `build context ${sha256} is ${kept} bytes, not ${size} as the flow says`, {
      details: { issues: [{ in: "body", path: "storage.context.size", message: `is ${kept} bytes` }] },
    });
  }
}

async function assertWritable(db: PgAccess, flowRunId: string, epoch: number | undefined, lock: "FOR SHARE" | "FOR UPDATE" = "FOR SHARE"): Promise<void> {
  // Locked: no claim can change the epoch between this check and the write.
  const current = await db.get<{ epoch: number }>(`SELECT epoch FROM flow_runs WHERE id = ? ${lock}`, flowRunId);
  if (!current) throw new BerthError("BERTH_E_FLOW_RUN_NOT_FOUND", `flow run ${flowRunId} not found`);
  if (epoch !== undefined && isStaleEpoch(epoch, current.epoch)) throw staleLease(flowRunId, current.epoch, epoch);
}

async function insertRunState(db: PgAccess, id: string, state: string, message: string | null, version: number, agentId: string | null, at: string): Promise<void> {
  await db.run("INSERT INTO flow_run_states (flow_run_id, state, message, version, agent_id, at) VALUES (?, ?, ?, ?, ?, ?)", id, state, message, version, agentId, at);
}

async function insertRun(db: PgAccess, input: NewFlowRun & { clock?: string | null }): Promise<FlowRunRow> {
  const now = db.timestamp();
  const row = newRunRow(input, now);
  await db.run(
    `INSERT INTO flow_runs (id, flow_id, flow_name, flow_version, state, state_message, version, labels, parameters,
       idempotency_key, agent_id, created_at, updated_at, started_at, ended_at, last_heartbeat_at, epoch, lease_expires_at,
       scheduled_start, clock)
     VALUES (@id, @flow_id, @flow_name, @flow_version, @state, @state_message, @version, @labels, @parameters,
       @idempotency_key, @agent_id, @created_at, @updated_at, @started_at, @ended_at, @last_heartbeat_at, @epoch,
       @lease_expires_at, @scheduled_start, @clock)`,
    row,
  );
  await insertRunState(db, row.id, "Scheduled", null, 0, null, now);
  return row;
}

async function deleteUnclaimedRun(db: PgAccess, id: string): Promise<boolean> {
  const row = await db.get<{ id: string }>("SELECT id FROM flow_runs WHERE id = ? AND state = 'Scheduled' AND epoch = 0 FOR UPDATE", id);
  if (!row) return false;
  await db.run("DELETE FROM flow_run_states WHERE flow_run_id = ?", id);
  await db.run("DELETE FROM task_runs WHERE flow_run_id = ?", id);
  await db.run("DELETE FROM logs WHERE flow_run_id = ?", id);
  await db.run("DELETE FROM flow_runs WHERE id = ?", id);
  return true;
}

async function dropSlotRuns(db: PgAccess, runIds: readonly string[], outcome: "missed" | "paused"): Promise<string[]> {
  const dropped: string[] = [];
  // In one order everywhere, so that two transactions dropping the same runs cannot deadlock.
  for (const id of [...runIds].sort()) {
    if (!(await deleteUnclaimedRun(db, id))) continue;
    await db.run("UPDATE schedule_ticks SET outcome = ?, flow_run_id = NULL WHERE flow_run_id = ?", outcome, id);
    dropped.push(id);
  }
  return dropped;
}

const RESUME_SLOTS_RECORDED = 1_000;
const UNCLAIMED_FUTURE = `
  SELECT id FROM flow_runs WHERE flow_name = ? AND clock IS NOT NULL AND state = 'Scheduled' AND epoch = 0 AND scheduled_start > ?
  ORDER BY id`;

async function takeOverSchedule(db: PgAccess, flowName: string, schedule: readonly ClockSpec[]): Promise<void> {
  const now = db.timestamp();
  for (const { id } of await db.all<{ id: string }>(UNCLAIMED_FUTURE, flowName, now)) {
    // Its slot is given up only with its run: a run claimed meanwhile keeps the tick that stops a second one.
    if (await deleteUnclaimedRun(db, id)) await db.run("DELETE FROM schedule_ticks WHERE flow_run_id = ?", id);
  }
  const keys = schedule.map(clockKey);
  await db.run("DELETE FROM schedule_clocks WHERE flow_name = ? AND NOT (clock = ANY(?::text[]))", flowName, keys);
  for (const key of keys) {
    await db.run("INSERT INTO schedule_clocks (flow_name, clock, cursor) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", flowName, key, now);
    await db.run("UPDATE schedule_clocks SET cursor = ? WHERE flow_name = ? AND clock = ? AND cursor > ?", now, flowName, key, now);
  }
  if (keys.length > 0) await db.run("INSERT INTO schedules (flow_name, paused, updated_at) VALUES (?, FALSE, ?) ON CONFLICT DO NOTHING", flowName, now);
}

// Claims.

/** Every label of the run is one of the agent's (store/labels.ts), in SQL. */
const LABELLED_RULE = `labels <> '[]' AND NOT EXISTS (
  SELECT 1 FROM jsonb_array_elements_text(flow_runs.labels::jsonb) AS l(value) WHERE NOT (l.value = ANY(@agentLabels::text[])))`;

/**
 * The due runs of one label set, from flow_runs_due_labels. No filter for full limits: as on SQLite
 * (store/sqlite-orchestration.ts), none is full on this path. The set is asked for as a range of one value,
 * ordered as the index is, so that a plan made without knowing the set (PostgreSQL's generic plan of a
 * prepared statement) still seeks there rather than walk every due run in start order (see berth_claim).
 */
const CANDIDATES_OF_SET = `
  SELECT id, seq, scheduled_start, labels, flow_name FROM flow_runs
  WHERE state = 'Scheduled' AND labels >= @labels AND labels <= @labels AND scheduled_start <= @now
    AND (scheduled_start, seq) > (@afterStart, @afterSeq::bigint)
  ORDER BY labels, scheduled_start, seq LIMIT @page
  FOR UPDATE SKIP LOCKED`;
/** The distinct label sets of the Scheduled runs, one index seek each (a loose index scan). */
const LABEL_SETS = `
  WITH RECURSIVE sets(labels) AS (
    (SELECT labels FROM flow_runs WHERE state = 'Scheduled' ORDER BY labels LIMIT 1)
    UNION ALL
    SELECT (SELECT f.labels FROM flow_runs f WHERE f.state = 'Scheduled' AND f.labels > s.labels ORDER BY f.labels LIMIT 1)
    FROM sets s WHERE s.labels IS NOT NULL)
  SELECT labels FROM sets WHERE labels IS NOT NULL`;

/** Takes one run and records its Submitted state: one statement, one round trip. */
const CLAIM_RUN = `
  WITH claimed AS (
    UPDATE flow_runs SET state = 'Submitted', state_message = NULL, agent_id = @agentId, version = version + 1,
      epoch = epoch + 1, lease_expires_at = @leaseExpiresAt, updated_at = @now, phases = json_build_object('claimed', @now::text)::text
    WHERE id = @id AND state = 'Scheduled' RETURNING *
  ), recorded AS (
    INSERT INTO flow_run_states (flow_run_id, state, message, version, agent_id, at)
    SELECT id, 'Submitted', NULL, version, agent_id, updated_at FROM claimed
  )
  SELECT * FROM claimed`;

/** The limits in force and the slots taken, read inside the claim's transaction. */
async function readLimits(db: PgAccess): Promise<LimitCounts> {
  const labelMax = new Map((await db.all<{ label: string; max_runs: number }>("SELECT label, max_runs FROM concurrency_limits")).map((r) => [r.label, r.max_runs]));
  const flowMax = new Map(
    (
      await db.all<{ name: string; max_concurrent_runs: number }>(
        `SELECT name, max_concurrent_runs FROM flows f
         WHERE max_concurrent_runs IS NOT NULL AND version = (SELECT max(version) FROM flows g WHERE g.name = f.name)`,
      )
    ).map((r) => [r.name, r.max_concurrent_runs]),
  );
  const labelActive = new Map<string, number>();
  const flowActive = new Map<string, number>();
  if (labelMax.size > 0) {
    const rows = await db.all<{ key: string; n: number }>(
      `SELECT l.value AS key, count(*) AS n FROM flow_runs r, jsonb_array_elements_text(r.labels::jsonb) AS l(value)
       WHERE r.state IN ${ACTIVE} AND l.value = ANY(?::text[]) GROUP BY l.value`,
      [...labelMax.keys()],
    );
    for (const r of rows) labelActive.set(r.key, r.n);
  }
  if (flowMax.size > 0) {
    const rows = await db.all<{ key: string; n: number }>(
      `SELECT flow_name AS key, count(*) AS n FROM flow_runs WHERE state IN ${ACTIVE} AND flow_name = ANY(?::text[]) GROUP BY flow_name`,
      [...flowMax.keys()],
    );
    for (const r of rows) flowActive.set(r.key, r.n);
  }
  return new LimitCounts(labelMax, flowMax, labelActive, flowActive);
}

async function claimRuns(db: PgAccess, agentId: string, agentLabels: readonly string[], max: number, leaseMs: number): Promise<FlowRun[]> {
  const now = db.timestamp();
  const leaseExpiresAt = db.timestamp(leaseMs);
  const limits = await readLimits(db);
  const claimed: FlowRun[] = [];
  const take = async (candidate: Candidate): Promise<boolean> => {
    const labels = JSON.parse(candidate.labels) as string[];
    if (!limits.allows(labels, candidate.flow_name)) return false;
    const row = await db.get<FlowRunRow>(CLAIM_RUN, { id: candidate.id, agentId, now, leaseExpiresAt });
    if (!row) return false;
    limits.take(labels, candidate.flow_name);
    claimed.push(toFlowRun(row));
    return claimed.length >= max;
  };
  if (limits.anyFull) {
    for (const candidate of await groupHeads(db, agentLabels, limits, now, max)) if (await take(candidate)) break;
    return claimed;
  }
  // The label sets the agent may take: each is read from its own place in the index, never past others'.
  const sets =
    agentLabels.length === 0
      ? ["[]"]
      : (await db.all<{ labels: string }>(LABEL_SETS)).map((row) => row.labels).filter((labels) => labelsMatch(JSON.parse(labels) as string[], agentLabels));
  // Each page's rows are locked until the claim commits: read no more than the claim is likely to need.
  const page = claimPage(max, limits);
  const params = { now, page };
  // A merge of the sets' pages, earliest start first; a set's next page is read when its last one is used up.
  const queues = sets.map((labels) => ({ labels, buffer: [] as Candidate[], after: { start: "", seq: 0 }, more: true }));
  for (;;) {
    for (const queue of queues) {
      if (queue.buffer.length > 0 || !queue.more) continue;
      queue.buffer = await db.all<Candidate>(CANDIDATES_OF_SET, { ...params, labels: queue.labels, afterStart: queue.after.start, afterSeq: queue.after.seq });
      queue.more = queue.buffer.length === page;
      const last = queue.buffer[queue.buffer.length - 1];
      if (last) queue.after = { start: last.scheduled_start, seq: last.seq };
    }
    let next: (typeof queues)[number] | undefined;
    for (const queue of queues) if (queue.buffer[0] && (!next || byStart(queue.buffer[0], next.buffer[0]!) < 0)) next = queue;
    if (!next) return claimed;
    if (await take(next.buffer.shift()!)) return claimed;
  }
}

function byStart(a: Candidate, b: Candidate): number {
  return a.scheduled_start < b.scheduled_start ? -1 : a.scheduled_start > b.scheduled_start ? 1 : a.seq - b.seq;
}

async function groupHeads(db: PgAccess, agentLabels: readonly string[], limits: LimitCounts, now: string, max: number): Promise<Candidate[]> {
  const heads: Candidate[] = [];
  for (let group = { labels: "", flowName: "" }; ; ) {
    const next =
      (await db.get<{ labels: string; flow_name: string }>(
        "SELECT labels, flow_name FROM flow_runs WHERE state = 'Scheduled' AND labels = @labels AND flow_name > @flowName ORDER BY flow_name LIMIT 1",
        group,
      )) ??
      (await db.get<{ labels: string; flow_name: string }>(
        "SELECT labels, flow_name FROM flow_runs WHERE state = 'Scheduled' AND labels > @labels ORDER BY labels, flow_name LIMIT 1",
        { labels: group.labels },
      ));
    if (!next) break;
    group = { labels: next.labels, flowName: next.flow_name };
    const labels = JSON.parse(next.labels) as string[];
    if (!labelsMatch(labels, agentLabels) || !limits.allows(labels, next.flow_name)) continue;
    heads.push(
      ...(await db.all<Candidate>(
        `SELECT id, seq, scheduled_start, labels, flow_name FROM flow_runs
         WHERE state = 'Scheduled' AND labels = @labels AND flow_name = @flowName AND scheduled_start <= @now
         ORDER BY scheduled_start, seq LIMIT @max FOR UPDATE SKIP LOCKED`,
        { ...group, now, max },
      )),
    );
  }
  return heads.sort(byStart);
}

async function activeRuns(db: PgAccess, filter: { label?: string; flowName?: string }, limit: number): Promise<FlowRun[]> {
  if (filter.label !== undefined) {
    const rows = await db.all<FlowRunRow>(
      `SELECT r.* FROM flow_runs r WHERE r.state IN ${ACTIVE}
         AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(r.labels::jsonb) AS l(value) WHERE l.value = ?)
       ORDER BY r.updated_at, r.seq LIMIT ?`,
      filter.label,
      limit,
    );
    return rows.map(toFlowRun);
  }
  if (filter.flowName !== undefined) {
    const rows = await db.all<FlowRunRow>(`SELECT * FROM flow_runs WHERE flow_name = ? AND state IN ${ACTIVE} ORDER BY updated_at, seq LIMIT ?`, filter.flowName, limit);
    return rows.map(toFlowRun);
  }
  return [];
}

/**
 * The embedded StateStore: SQLite through better-sqlite3. WAL lets readers run beside the one writer, and
 * `synchronous = FULL` makes every acknowledged write survive a kill -9 or power loss. better-sqlite3 is
 * synchronous, so each method runs its whole transaction without yielding; `BEGIN IMMEDIATE` takes the write
 * lock up front, so that several connections (or processes) on one file still hand each run out once.
 */
import { randomUUID } from "node:crypto";
import { close as closeFile, fdatasync, mkdirSync, open as openFile } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { BerthError, describeError } from "../wire/errors.js";
import type {
  AgentHealthReport,
  AgentPhases,
  AgentRecord,
  AgentRegister,
  ConcurrencyLimit,
  ScheduleTick,
  FlowRecord,
  FlowCreate,
  FlowRun,
  FlowRunStateEntry,
  FlowRunStateName,
  HeldRun,
  LogLine,
  StoredLog,
  TaskRun,
  TokenRecord,
  TokenRole,
  SecretInfo,
} from "../wire/schema.js";
import { buildContextNotFound } from "./build-contexts.js";
import { isStaleEpoch, staleLease } from "./fencing.js";
import { normalizeLabels } from "./labels.js";
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
import {
  activeRuns,
  applySlots,
  claimRuns,
  deleteConcurrencyLimit,
  dropSlotRuns,
  getScheduleState,
  insertRun,
  listConcurrencyLimits,
  listScheduledFlows,
  listScheduleTicks,
  listUnclaimedSlotRuns,
  nextScheduledStart,
  pruneScheduleTicks,
  recordSchedulerPass,
  setConcurrencyLimit,
  setSchedulePaused,
  takeOverSchedule,
  type SqlAccess,
} from "./sqlite-orchestration.js";
import { migrate } from "./sqlite-migrations.js";
import { LOGS_REMOVED, logBudget } from "./log-limits.js";
import { FLOW_IDS_IN_USE, QUEUE_DEPTHS, RUN_COUNTS, toRunsSnapshot, type QueueDepthRow, type RunCountRow, type RunsSnapshot } from "./run-metrics.js";
import { runListWhere, type RunListDialect } from "./run-list.js";
import * as trust from "./sqlite-trust.js";
import { newFlowRow, toAgent, toFlow, toFlowRun, toStoredLog, toTaskRun } from "./sqlite-rows.js";
import type { AgentRow, FlowRow, FlowRunRow, LogRow, TaskRunRow } from "./sqlite-rows.js";
import { SQL, type SqlName } from "./sqlite-sql.js";

export interface SqliteStoreOptions {
  /** The clock for every stored timestamp; default: the system clock. */
  now?: () => Date;
  /** How long a write waits for another connection's lock before failing, in ms; default 5000. */
  busyTimeoutMs?: number;
  /**
   * Syncs the log (the WAL file, open at `fd`) to disk and calls back; default fs.fdatasync. Tests hold or
   * fail it to see that no write is acknowledged before its sync.
   */
  syncLog?: (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;
}

const MEMORY = ":memory:";

/** A write waiting for its group commit; `committed` hears of it once other transactions can see it. */
interface PendingWrite extends WriteOptions<unknown> {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

interface WriteOptions<T> {
  /** Told at the commit, before the sync that makes the write durable. */
  committed?: (value: T) => void;
  /**
   * True for an outcome that wrote nothing and vouches for nothing unsynced: it is answered at its commit.
   * (A claim that took no run; not an idempotent repeat, which vouches for a run whose sync may be under way.)
   */
  wroteNothing?: (value: T) => boolean;
}

/**
 * Tells a write's listener that it is committed (not yet synced). A listener's failure is not the write's:
 * the write stands and is acknowledged as any other (a creator told of a failure would create the run twice).
 */
function tellCommitted(write: PendingWrite, value: unknown): void {
  try {
    write.committed?.(value);
  } catch {
    // Listeners only wake others (server/routes/flow-runs.ts), which cannot fail; the write stands regardless.
  }
}

/** Opens (creating if needed) the database file at `pathOrMemory`, or a private in-memory one for ":memory:". */
export async function openSqliteStore(pathOrMemory: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
  return new SqliteStore(pathOrMemory, options);
}

/** How runs are listed here: labels are a JSON array, and runs created at one instant are ordered by rowid. */
const RUN_LIST: RunListDialect = { hasLabel: "EXISTS (SELECT 1 FROM json_each(flow_runs.labels) WHERE value = @label)", tieBreak: "rowid" };

export class SqliteStore implements StateStore {
  readonly description: string;
  private readonly db: Database.Database;
  private readonly now: () => Date;
  private readonly statements = new Map<string, Database.Statement>();
  /** The connection as store/sqlite-orchestration.ts uses it. */
  private readonly sql: SqlAccess = {
    get: <T>(text: string, ...params: unknown[]) => this.prepare(text).get(...params) as T | undefined,
    all: <T>(text: string, ...params: unknown[]) => this.prepare(text).all(...params) as T[],
    run: (text: string, ...params: unknown[]) => this.prepare(text).run(...params),
    timestamp: (afterMs?: number) => this.timestamp(afterMs),
  };

  constructor(pathOrMemory: string, options: SqliteStoreOptions = {}) {
    this.now = options.now ?? (() => new Date());
    const memory = pathOrMemory === MEMORY || pathOrMemory === "";
    this.syncFile = options.syncLog ?? fdatasync;
    this.description = memory ? "sqlite::memory:" : `sqlite:${path.resolve(pathOrMemory)}`;
    try {
      if (!memory) mkdirSync(path.dirname(path.resolve(pathOrMemory)), { recursive: true });
      this.db = new Database(memory ? MEMORY : pathOrMemory);
      this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
      const wal = !memory && this.db.pragma("journal_mode = WAL", { simple: true }) === "wal";
      // A commit appends to the log (the WAL) without syncing it; the log is synced afterwards, off the event
      // loop, and the writes it holds are acknowledged only then (afterSync). As durable as synchronous = FULL,
      // which would block every request for each sync. Where the file system refuses WAL, commits sync as
      // they go.
      this.logPath = wal ? `${path.resolve(pathOrMemory)}-wal` : undefined;
      this.db.pragma(wal ? "synchronous = NORMAL" : "synchronous = FULL");
      this.db.pragma("foreign_keys = ON");
      // Statement journals and the transient tables of `IN (SELECT … json_each(…))` live in memory, not in
      // temporary files: each claim would otherwise create, write and delete files (a third of its cost).
      this.db.pragma("temp_store = MEMORY");
    } catch (err) {
      throw new BerthError("BERTH_E_CONFIG", `cannot open the SQLite database at ${pathOrMemory}: ${describeError(err)}`, {
        cause: err,
      });
    }
    try {
      migrate(this.db);
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  async registerFlow(input: FlowCreate): Promise<{ flow: FlowRecord; created: boolean }> {
    return this.immediate(() => {
      // In the same transaction as the insert, so that no removal of unused contexts can slip in between.
      const context = input.storage.type === "docker" ? input.storage.context : undefined;
      if (context) assertBuildContext(context.sha256, context.size, this.get<{ size: number }>("buildContextSize", context.sha256)?.size);
      const newest = this.get<FlowRow>("newestFlow", input.name);
      if (newest && newest.content_hash === input.contentHash) return { flow: toFlow(newest), created: false };
      const row = newFlowRow(input, (newest?.version ?? 0) + 1, this.timestamp());
      this.stmt("insertFlow").run(row);
      takeOverSchedule(this.sql, input.name, input.schedule);
      return { flow: toFlow(row), created: true };
    });
  }

  async getFlow(id: string): Promise<FlowRecord | undefined> {
    const row = this.get<FlowRow>("flowById", id);
    return row && toFlow(row);
  }

  async getFlowByName(name: string, version?: number): Promise<FlowRecord | undefined> {
    const row = version === undefined ? this.get<FlowRow>("newestFlow", name) : this.get<FlowRow>("flowVersion", name, version);
    return row && toFlow(row);
  }

  async listFlows(): Promise<FlowRecord[]> {
    return this.all<FlowRow>("allFlows").map(toFlow);
  }

  async createFlowRun(input: NewFlowRun, onCommitted?: (created: boolean) => void): Promise<{ flowRun: FlowRun; created: boolean }> {
    return this.immediate(
      () => {
        if (input.idempotencyKey !== undefined) {
          const existing = this.get<FlowRunRow>("runByIdempotencyKey", input.idempotencyKey);
          if (existing) return { flowRun: toFlowRun(existing), created: false };
        }
        return { flowRun: toFlowRun(insertRun(this.sql, input)), created: true };
      },
      onCommitted && { committed: (outcome) => onCommitted(outcome.created) },
    );
  }

  async getFlowRun(id: string): Promise<FlowRun | undefined> {
    const row = this.get<FlowRunRow>("runById", id);
    return row && toFlowRun(row);
  }

  async listFlowRuns(filter: FlowRunFilter): Promise<FlowRun[]> {
    const { where, params } = runListWhere(filter, RUN_LIST);
    const sql = `SELECT * FROM flow_runs ${where}
                 ORDER BY created_at DESC, rowid DESC LIMIT @limit`;
    return (this.prepare(sql).all(params) as FlowRunRow[]).map(toFlowRun);
  }

  async setFlowRunState(id: string, write: StateWrite): Promise<FlowRun> {
    return this.immediate(() => {
      const now = this.timestamp();
      const row = this.stmt("setRunState").get({
        id,
        state: write.state,
        message: write.message ?? null,
        agentId: write.agentId ?? null,
        expectedVersion: write.expectedVersion,
        epoch: write.epoch ?? null,
        now,
      }) as FlowRunRow | undefined;
      if (!row) {
        const current = this.get<{ version: number; epoch: number }>("runVersion", id);
        if (!current) throw new BerthError("BERTH_E_FLOW_RUN_NOT_FOUND", `flow run ${id} not found`);
        // The epoch first: a superseded attempt must stop, not re-read and retry.
        if (write.epoch !== undefined && isStaleEpoch(write.epoch, current.epoch)) throw staleLease(id, current.epoch, write.epoch);
        throw new BerthError(
          "BERTH_E_STALE_VERSION",
          `flow run ${id} is at version ${current.version}, not ${write.expectedVersion}: re-read it and try again`,
          { details: { expected: write.expectedVersion, actual: current.version } },
        );
      }
      this.stmt("insertRunState").run(id, row.state, row.state_message, row.version, row.agent_id, now);
      return toFlowRun(row);
    });
  }

  async heartbeatFlowRun(id: string, epoch?: number): Promise<FlowRun | undefined> {
    return this.immediate(() => {
      const row = this.stmt("heartbeatRun").get({ id, epoch: epoch ?? null, now: this.timestamp() }) as FlowRunRow | undefined;
      if (row) return toFlowRun(row);
      const current = this.get<{ epoch: number }>("runEpoch", id);
      if (current && epoch !== undefined) throw staleLease(id, current.epoch, epoch);
      return undefined;
    });
  }

  async recordPhases(id: string, epoch: number, phases: AgentPhases): Promise<FlowRun | undefined> {
    return this.immediate(() => {
      const row = this.sql.get<FlowRunRow>(
        "UPDATE flow_runs SET phases = json_patch(COALESCE(phases, '{}'), @patch) WHERE id = @id AND epoch = @epoch RETURNING *",
        { id, epoch, patch: JSON.stringify(phases) },
      );
      if (row) return toFlowRun(row);
      const current = this.get<{ epoch: number }>("runEpoch", id);
      if (current) throw staleLease(id, current.epoch, epoch);
      return undefined;
    });
  }

  async claimFlowRuns(agentId: string, agentLabels: readonly string[], max: number, leaseMs: number): Promise<FlowRun[]> {
    // A claim that took nothing is answered at once: waiting for a sync would only slow the agents that poll
    // behind a full limit or an empty queue.
    return this.immediate(() => claimRuns(this.sql, agentId, agentLabels, max, leaseMs), { wroteNothing: (runs) => runs.length === 0 });
  }

  async claimForAgent(agentId: string, max: number, leaseMs: number): Promise<{ agent: StoredAgent; runs: FlowRun[] } | undefined> {
    const agent = await this.getAgent(agentId);
    return agent && { agent, runs: await this.claimFlowRuns(agentId, agent.labels, max, leaseMs) };
  }

  async nextScheduledStart(agentLabels: readonly string[]): Promise<string | undefined> {
    return nextScheduledStart(this.sql, agentLabels);
  }

  async flowIdsInUse(createdSince: Date): Promise<string[]> {
    return this.sql.all<{ flow_id: string }>(FLOW_IDS_IN_USE, { since: createdSince.toISOString() }).map((r) => r.flow_id);
  }

  async runsSnapshot(): Promise<RunsSnapshot> {
    // INDEXED BY, as for claims: without statistics the planner would walk the start-time index instead.
    return toRunsSnapshot(
      this.sql.all<RunCountRow>(RUN_COUNTS),
      this.sql.all<QueueDepthRow>(QUEUE_DEPTHS.replace("FROM flow_runs", "FROM flow_runs INDEXED BY flow_runs_state_labels_start"), { now: this.timestamp() }),
    );
  }

  async setConcurrencyLimit(label: string, max: number): Promise<ConcurrencyLimit> {
    return this.immediate(() => setConcurrencyLimit(this.sql, label, max));
  }

  async deleteConcurrencyLimit(label: string): Promise<boolean> {
    return this.immediate(() => deleteConcurrencyLimit(this.sql, label));
  }

  async listConcurrencyLimits(): Promise<ConcurrencyLimit[]> {
    return listConcurrencyLimits(this.sql);
  }

  async listActiveRuns(filter: { label?: string; flowName?: string }, limit: number): Promise<FlowRun[]> {
    return activeRuns(this.sql, filter, limit);
  }

  async listScheduledFlows(): Promise<FlowRecord[]> {
    return listScheduledFlows(this.sql);
  }

  async getScheduleState(flowName: string): Promise<ScheduleState> {
    return getScheduleState(this.sql, flowName);
  }

  async recordSchedulerPass(at: Date): Promise<Date | undefined> {
    return this.immediate(() => recordSchedulerPass(this.sql, at));
  }

  async applySlots(slots: AppliedSlots): Promise<FlowRun[] | undefined> {
    return this.immediate(() => applySlots(this.sql, slots));
  }

  async listUnclaimedSlotRuns(flowName: string, clock: string, from: Date, before: Date): Promise<FlowRun[]> {
    return listUnclaimedSlotRuns(this.sql, flowName, clock, from, before);
  }

  async dropSlotRuns(runIds: readonly string[], outcome: "missed" | "paused"): Promise<string[]> {
    return this.immediate(() => dropSlotRuns(this.sql, runIds, outcome));
  }

  async setSchedulePaused(flowName: string, paused: boolean): Promise<{ dropped: string[] }> {
    return this.immediate(() => setSchedulePaused(this.sql, flowName, paused));
  }

  async listScheduleTicks(flowName: string, limit: number): Promise<ScheduleTick[]> {
    return listScheduleTicks(this.sql, flowName, limit);
  }

  async pruneScheduleTicks(flowName: string, keep: number, before: Date): Promise<number> {
    return this.immediate(() => pruneScheduleTicks(this.sql, flowName, keep, before));
  }

  async renewLeases(agentId: string, runs: readonly HeldRun[], leaseMs: number): Promise<LeaseRenewal> {
    return this.immediate(() => {
      const leaseExpiresAt = this.timestamp(leaseMs);
      const lostRunIds: string[] = [];
      for (const { id, epoch } of runs) {
        const renewed = this.stmt("renewLease").get({ id, epoch, agentId, leaseExpiresAt });
        if (renewed === undefined) lostRunIds.push(id);
      }
      return { lostRunIds };
    });
  }

  async listExpiredLeases(states: readonly FlowRunStateName[], before: Date, limit: number): Promise<FlowRun[]> {
    // One indexed scan per state; ISO timestamps of one clock order as plain strings.
    const rows = states.flatMap((state) => this.all<FlowRunRow>("expiredLeases", { state, before: before.toISOString(), limit }));
    const expiry = (row: FlowRunRow): string => row.lease_expires_at ?? "";
    return rows
      .sort((a, b) => (expiry(a) < expiry(b) ? -1 : expiry(a) > expiry(b) ? 1 : 0))
      .slice(0, limit)
      .map(toFlowRun);
  }

  async listSilentRunningRuns(before: Date, limit: number): Promise<FlowRun[]> {
    return this.all<FlowRunRow>("silentRunning", { before: before.toISOString(), limit }).map(toFlowRun);
  }

  async listRunsUpdatedBefore(state: FlowRunStateName, before: Date, limit: number): Promise<FlowRun[]> {
    return this.all<FlowRunRow>("updatedBefore", { state, before: before.toISOString(), limit }).map(toFlowRun);
  }

  async upsertTaskRuns(flowRunId: string, taskRuns: TaskRun[], epoch?: number): Promise<void> {
    await this.immediate(() => {
      this.assertWritable(flowRunId, epoch);
      const now = this.timestamp();
      for (const t of taskRuns) {
        this.stmt("upsertTaskRun").run({
          flowRunId,
          taskSlug: t.taskSlug,
          taskName: t.taskName,
          state: t.state,
          message: t.message ?? null,
          attempt: t.attempt,
          updatedAt: t.updatedAt ?? now,
        });
      }
    });
  }

  async listFlowRunStates(flowRunId: string): Promise<FlowRunStateEntry[]> {
    return this.all<FlowRunStateEntry>("runStates", flowRunId);
  }

  async listTaskRuns(flowRunId: string): Promise<TaskRun[]> {
    return this.all<TaskRunRow>("taskRuns", flowRunId).map(toTaskRun);
  }

  async appendLogs(flowRunId: string, logs: LogLine[], epoch?: number, limitBytes?: number): Promise<void> {
    await this.immediate(() => {
      this.assertWritable(flowRunId, epoch);
      const attempt = epoch ?? 0;
      const used = this.sql.get<{ log_bytes: number }>("SELECT log_bytes FROM flow_runs WHERE id = ?", flowRunId)?.log_bytes ?? 0;
      const budget = logBudget(used, limitBytes, this.timestamp());
      for (const wanted of logs) {
        const admitted = budget.admit(wanted);
        if (!admitted) break;
        // A line sent again (a lost reply) is already kept: it cannot pass the limit.
        if (admitted.truncates && wanted.seq !== undefined && this.sql.get("SELECT 1 FROM logs WHERE flow_run_id = ? AND attempt = ? AND seq = ?", flowRunId, attempt, wanted.seq)) continue;
        const { line: log, truncates } = admitted;
        const { changes } = this.stmt("insertLog").run(flowRunId, log.at, log.level, log.message, log.task ?? null, log.seq === undefined ? null : attempt, log.seq ?? null, log.stream ?? null);
        if (changes > 0) budget.stored(log, truncates);
        if (truncates) break;
      }
      if (budget.used !== used) this.sql.run("UPDATE flow_runs SET log_bytes = ? WHERE id = ?", budget.used, flowRunId);
    });
  }

  async removeLogsOfRunsEndedBefore(before: Date, limit: number): Promise<number> {
    return this.immediate(() => {
      const runs = this.sql.all<{ id: string }>(
        "SELECT id FROM flow_runs WHERE log_bytes >= 0 AND ended_at IS NOT NULL AND ended_at < ? ORDER BY ended_at LIMIT ?",
        before.toISOString(),
        limit,
      );
      for (const { id } of runs) {
        this.sql.run("DELETE FROM logs WHERE flow_run_id = ?", id);
        this.sql.run("UPDATE flow_runs SET log_bytes = ? WHERE id = ?", LOGS_REMOVED, id);
      }
      return runs.length;
    });
  }

  async listLogs(flowRunId: string, after: number, limit: number): Promise<StoredLog[]> {
    return this.all<LogRow>("logsAfter", flowRunId, after, limit).map(toStoredLog);
  }

  async putBuildContext(sha256: string, data: Buffer): Promise<{ created: boolean }> {
    return this.immediate(() => {
      const now = this.timestamp();
      if (this.get<{ size: number }>("buildContextSize", sha256)) {
        this.stmt("touchBuildContext").run(now, sha256);
        return { created: false };
      }
      this.stmt("insertBuildContext").run(sha256, data.length, data, now);
      return { created: true };
    });
  }

  async buildContextSize(sha256: string): Promise<number | undefined> {
    return this.get<{ size: number }>("buildContextSize", sha256)?.size;
  }

  async getBuildContext(sha256: string): Promise<Buffer | undefined> {
    return this.get<{ data: Buffer }>("buildContextData", sha256)?.data;
  }

  async deleteUnusedBuildContexts(createdBefore: Date): Promise<string[]> {
    return this.immediate(() => {
      const unused = this.all<{ sha256: string }>("unusedBuildContexts", createdBefore.toISOString()).map((row) => row.sha256);
      for (const sha256 of unused) this.stmt("deleteBuildContext").run(sha256);
      return unused;
    });
  }

  async registerAgent(input: AgentRegister): Promise<{ agent: StoredAgent; created: boolean }> {
    return this.immediate(() => {
      const now = this.timestamp();
      const labels = JSON.stringify(normalizeLabels(input.labels));
      const known = this.get<AgentRow>("agentByName", input.name);
      if (known) {
        const row = this.stmt("reregisterAgent").get({ id: known.id, labels, concurrency: input.concurrency, now }) as AgentRow;
        return { agent: toAgent(row), created: false };
      }
      const row: AgentRow = {
        id: randomUUID(),
        name: input.name,
        labels,
        concurrency: input.concurrency,
        status: "online",
        created_at: now,
        last_heartbeat_at: now,
        waiting_until: null,
      };
      this.stmt("insertAgent").run(row);
      return { agent: toAgent(row), created: true };
    });
  }

  async getAgent(id: string): Promise<StoredAgent | undefined> {
    const row = this.get<AgentRow>("agentById", id);
    return row && toAgent(row);
  }

  async heartbeatAgent(id: string, status: AgentRecord["status"], health?: AgentHealthReport): Promise<StoredAgent | undefined> {
    const now = this.timestamp();
    const report = health ? JSON.stringify({ ...health, at: now }) : null;
    const row = await this.immediate(() => this.stmt("heartbeatAgent").get(status, now, report, id) as AgentRow | undefined);
    return row && toAgent(row);
  }

  async listAgents(): Promise<StoredAgent[]> {
    return this.all<AgentRow>("allAgents").map(toAgent);
  }

  async markAgentWaiting(id: string, until: string): Promise<void> {
    await this.immediate(() => this.stmt("markAgentWaiting").run(until, id));
  }

  async clearAgentWaiting(id: string, until: string): Promise<void> {
    await this.immediate(() => this.stmt("clearAgentWaiting").run(id, until));
  }

  async createToken(input: { role: TokenRole; name: string | null; labels: string[] | null; hash: string }): Promise<StoredToken> {
    return this.immediate(() => trust.createToken(this.sql, input));
  }

  async findToken(hash: string): Promise<StoredToken | undefined> {
    return trust.findToken(this.sql, hash);
  }

  async findTokenAndAgent(hash: string, agentId: string): Promise<{ token: StoredToken | undefined; agent: StoredAgent | undefined }> {
    const agent = this.get<AgentRow>("agentById", agentId);
    return { token: trust.findToken(this.sql, hash), agent: agent && toAgent(agent) };
  }

  async listTokens(): Promise<TokenRecord[]> {
    return trust.listTokens(this.sql);
  }

  async revokeToken(id: string): Promise<TokenRecord | undefined> {
    return this.immediate(() => trust.revokeToken(this.sql, id));
  }

  async putSecret(secret: SealedSecret): Promise<{ created: boolean }> {
    return this.immediate(() => trust.putSecret(this.sql, secret));
  }

  async listSecrets(): Promise<SecretInfo[]> {
    return trust.listSecrets(this.sql);
  }

  async getSecrets(names?: readonly string[]): Promise<SealedSecret[]> {
    return trust.getSecrets(this.sql, names);
  }

  async deleteSecret(name: string): Promise<boolean> {
    return this.immediate(() => trust.deleteSecret(this.sql, name));
  }

  async close(): Promise<void> {
    // Writes already asked for are committed (or refused), and synced, before the database closes.
    if (this.db.open) this.commitPending();
    await new Promise<void>((resolve) => this.afterSync(() => resolve()));
    this.statements.clear();
    if (this.db.open) this.db.close();
    const fd = this.logFd;
    this.logFd = undefined;
    if (fd !== undefined) await new Promise<void>((resolve) => closeFile(fd, () => resolve()));
  }

  /**
   * Runs `fn` as a write transaction (BEGIN IMMEDIATE), committed together with every other write asked for in
   * the same turn of the event loop: group commit. Under load, one fsync then serves many writes (a claim from
   * each waiting agent, the logs of many runs) instead of one each; alone, a write waits only for the end of
   * the turn. Each write runs in a savepoint of its own, in the order asked: one that throws is rolled back
   * alone and rejects alone, and a write is acknowledged only once the commit that holds it is done and the
   * log synced to disk (afterSync). Only an outcome that `wroteNothing` says wrote nothing is answered at the
   * commit.
   */
  private immediate<T>(fn: () => T, options: WriteOptions<T> = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ ...(options as WriteOptions<unknown>), fn, resolve: resolve as (value: unknown) => void, reject });
      if (this.pending.length === 1) setImmediate(() => this.commitPending());
    });
  }

  private readonly pending: PendingWrite[] = [];
  private committed = 0;

  /** Write transactions committed so far (each one a sync of the file, unless it wrote nothing): how well writes are grouped. */
  get commits(): number {
    return this.committed;
  }

  private commitPending(): void {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    if (this.syncFailure) {
      for (const write of batch) write.reject(this.syncFailure);
      return;
    }
    const [only] = batch;
    if (batch.length === 1 && only) {
      // Alone in its transaction, a write needs no savepoint: if it throws, the whole transaction is its own.
      let value: unknown;
      try {
        value = this.db.transaction(only.fn).immediate();
        this.committed++;
      } catch (err) {
        return only.reject(err);
      }
      tellCommitted(only, value);
      if (only.wroteNothing?.(value)) return only.resolve(value);
      return this.afterSync((err) => (err ? only.reject(err) : only.resolve(value)));
    }
    const outcomes: Array<{ value: unknown } | { error: unknown }> = [];
    try {
      this.db
        .transaction(() => {
          for (const write of batch) {
            try {
              // Nested in the batch's transaction, better-sqlite3 makes this a savepoint.
              outcomes.push({ value: this.db.transaction(write.fn)() });
            } catch (error) {
              // Some failures (a full disk, an I/O error) roll back the whole transaction, not the savepoint:
              // then nothing of the batch is written, and no later write may run outside it.
              if (!this.db.inTransaction) throw error;
              outcomes.push({ error });
            }
          }
        })
        .immediate();
      this.committed++;
    } catch (err) {
      // The commit itself failed (the disk, a busy database): none of the batch was written.
      for (const write of batch) write.reject(err);
      return;
    }
    const answered = batch.map((write, i) => {
      const outcome = outcomes[i]!;
      if (!("value" in outcome)) return false;
      tellCommitted(write, outcome.value);
      if (!write.wroteNothing?.(outcome.value)) return false;
      write.resolve(outcome.value);
      return true;
    });
    // A batch of claims that all took nothing (parked claims woken together) needs no sync at all.
    if (answered.every(Boolean)) return;
    this.afterSync((err) => {
      batch.forEach((write, i) => {
        const outcome = outcomes[i]!;
        if (answered[i]) return;
        if (err) write.reject(err);
        else if ("error" in outcome) write.reject(outcome.error);
        else write.resolve(outcome.value);
      });
    });
  }

  /** The log to sync after commits; none for a database in memory (or one not in WAL mode). */
  private readonly logPath: string | undefined;
  private readonly syncFile: NonNullable<SqliteStoreOptions["syncLog"]>;
  private logFd: number | undefined;
  private syncing = false;
  private syncWaiters: Array<(err?: Error) => void> = [];
  /** Set once a sync failed: what the log holds is then unknown, and no later write is acknowledged. */
  private syncFailure: Error | undefined;

  /** Calls `done` once everything committed so far is on disk: at once in memory, else after a sync. */
  private afterSync(done: (err?: Error) => void): void {
    if (this.logPath === undefined) return done();
    if (this.syncFailure) return done(this.syncFailure);
    this.syncWaiters.push(done);
    if (!this.syncing) this.syncLog();
  }

  /** One sync at a time, each for every commit made before it began: group commit for the syncs too. */
  private syncLog(): void {
    const waiters = this.syncWaiters.splice(0);
    if (waiters.length === 0) return;
    this.syncing = true;
    const finish = (err: NodeJS.ErrnoException | null) => {
      this.syncing = false;
      // As PostgreSQL does after a failed fsync: what reached the disk is unknown, so nothing more is
      // acknowledged until a restart recovers the database from what is on disk.
      this.syncFailure ??= err
        ? new BerthError("BERTH_E_UNAVAILABLE", `cannot sync the SQLite log ${this.logPath} to disk (${err.message}): the write is not saved; restart the server`, { cause: err })
        : undefined;
      for (const waiter of waiters) waiter(this.syncFailure);
      this.syncLog();
    };
    if (this.logFd !== undefined) return this.syncFile(this.logFd, finish);
    // Opened for writing only because some systems sync no file opened read-only; it exists once a commit did.
    openFile(this.logPath!, "r+", (err, fd) => {
      if (err) return finish(err);
      this.logFd = fd;
      this.syncFile(fd, finish);
    });
  }

  /** Now, or `afterMs` from now, on the store's clock. */
  private timestamp(afterMs = 0): string {
    return new Date(this.now().getTime() + afterMs).toISOString();
  }

  /** Inside the write's transaction, so that no claim can slip in between the check and the write. */
  private assertWritable(flowRunId: string, epoch: number | undefined): void {
    const current = this.get<{ epoch: number }>("runEpoch", flowRunId);
    if (!current) throw new BerthError("BERTH_E_FLOW_RUN_NOT_FOUND", `flow run ${flowRunId} not found`);
    if (epoch !== undefined && isStaleEpoch(epoch, current.epoch)) throw staleLease(flowRunId, current.epoch, epoch);
  }

  private stmt(name: SqlName): Database.Statement {
    return this.prepare(SQL[name]);
  }

  /** Statements are compiled once per connection: parsing SQL would otherwise dominate the claim path. */
  private prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) this.statements.set(sql, (statement = this.db.prepare(sql)));
    return statement;
  }

  private get<T>(name: SqlName, ...params: unknown[]): T | undefined {
    return this.stmt(name).get(...params) as T | undefined;
  }

  private all<T>(name: SqlName, ...params: unknown[]): T[] {
    return this.stmt(name).all(...params) as T[];
  }
}

/** A flow version may name only a build context the store keeps, and only at its real size. */
function assertBuildContext(sha256: string, size: number, kept: number | undefined): void {
  if (kept === undefined) throw buildContextNotFound(sha256);
  if (kept !== size) {
    throw new BerthError("BERTH_E_VALIDATION", `build context ${sha256} is ${kept} bytes, not ${size} as the flow says`, {
      details: { issues: [{ in: "body", path: "storage.context.size", message: `is ${kept} bytes` }] },
    });
  }
}

/** The SQLite store's statements, kept apart from the code that runs them so both stay readable. */
import { FINAL_FLOW_RUN_STATES } from "../wire/schema.js";

const FINAL_STATES = FINAL_FLOW_RUN_STATES.map((s) => `'${s}'`).join(", ");

export const SQL = {
  newestFlow: "SELECT * FROM flows WHERE name = ? ORDER BY version DESC LIMIT 1",
  flowVersion: "SELECT * FROM flows WHERE name = ? AND version = ?",
  flowById: "SELECT * FROM flows WHERE id = ?",
  allFlows: "SELECT * FROM flows ORDER BY name, version DESC",
  insertFlow: `
    INSERT INTO flows (id, name, slug, version, content_hash, labels, storage, environment, parameters, tasks, created_at,
      recovery, run_timeout_ms, context_sha256, schedule, catch_up, max_concurrent_runs, resources, run_as, placement)
    VALUES (@id, @name, @slug, @version, @content_hash, @labels, @storage, @environment, @parameters, @tasks, @created_at,
      @recovery, @run_timeout_ms, @context_sha256, @schedule, @catch_up, @max_concurrent_runs, @resources, @run_as, @placement)`,

  // Build contexts: blobs by sha256. A repeated put of the same content only renews its grace period.
  insertBuildContext: "INSERT INTO build_contexts (sha256, size, data, created_at) VALUES (?, ?, ?, ?)",
  touchBuildContext: "UPDATE build_contexts SET created_at = ? WHERE sha256 = ?",
  buildContextSize: "SELECT size FROM build_contexts WHERE sha256 = ?",
  buildContextData: "SELECT data FROM build_contexts WHERE sha256 = ?",
  // Unused: older than the grace period and named by no flow version (served by flows_context).
  unusedBuildContexts: `
    SELECT sha256 FROM build_contexts c
    WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM flows f WHERE f.context_sha256 = c.sha256)`,
  deleteBuildContext: "DELETE FROM build_contexts WHERE sha256 = ?",

  runById: "SELECT * FROM flow_runs WHERE id = ?",
  runVersion: "SELECT version, epoch FROM flow_runs WHERE id = ?",
  runEpoch: "SELECT epoch FROM flow_runs WHERE id = ?",
  runByIdempotencyKey: "SELECT * FROM flow_runs WHERE idempotency_key = ?",
  /**
   * Compare-and-swap, fenced: matches no row unless the stored version is the one the writer read and, when the
   * writer gave an epoch, the epoch is too. Back to Scheduled forgets the attempt, so that the next one is
   * judged by its own start and heartbeats; a final state drops the lease.
   */
  setRunState: `
    UPDATE flow_runs SET state = @state, state_message = @message, version = version + 1, updated_at = @now,
      agent_id = CASE WHEN @state = 'Scheduled' THEN NULL ELSE COALESCE(@agentId, agent_id) END,
      started_at = CASE WHEN @state = 'Running' THEN COALESCE(started_at, @now)
                        WHEN @state = 'Scheduled' THEN NULL ELSE started_at END,
      last_heartbeat_at = CASE WHEN @state = 'Scheduled' THEN NULL ELSE last_heartbeat_at END,
      lease_expires_at = CASE WHEN @state = 'Scheduled' OR @state IN (${FINAL_STATES}) THEN NULL ELSE lease_expires_at END,
      ended_at = CASE WHEN @state IN (${FINAL_STATES}) THEN @now ELSE ended_at END
    WHERE id = @id AND version = @expectedVersion AND (@epoch IS NULL OR epoch = @epoch) RETURNING *`,
  heartbeatRun: `
    UPDATE flow_runs SET last_heartbeat_at = @now WHERE id = @id AND (@epoch IS NULL OR epoch = @epoch) RETURNING *`,
  insertRunState: `
    INSERT INTO flow_run_states (flow_run_id, state, message, version, agent_id, at) VALUES (?, ?, ?, ?, ?, ?)`,

  runStates: "SELECT state, message, version, agent_id AS agentId, at FROM flow_run_states WHERE flow_run_id = ? ORDER BY id",

  renewLease: `
    UPDATE flow_runs SET lease_expires_at = @leaseExpiresAt
    WHERE id = @id AND agent_id = @agentId AND epoch = @epoch AND state IN ('Submitted', 'Running', 'Cancelling')
    RETURNING id`,

  // The reaper's scans, one per index of migration 2 (the expressions must match the index's exactly).
  expiredLeases: `
    SELECT * FROM flow_runs WHERE state = @state AND lease_expires_at < @before ORDER BY lease_expires_at LIMIT @limit`,
  silentRunning: `
    SELECT * FROM flow_runs WHERE state = 'Running' AND COALESCE(last_heartbeat_at, started_at) < @before
    ORDER BY COALESCE(last_heartbeat_at, started_at) LIMIT @limit`,
  updatedBefore: `
    SELECT * FROM flow_runs WHERE state = @state AND updated_at < @before ORDER BY updated_at LIMIT @limit`,

  upsertTaskRun: `
    INSERT INTO task_runs (flow_run_id, task_slug, task_name, state, message, attempt, updated_at)
    VALUES (@flowRunId, @taskSlug, @taskName, @state, @message, @attempt, @updatedAt)
    ON CONFLICT (flow_run_id, task_slug) DO UPDATE SET task_name = excluded.task_name, state = excluded.state,
      message = excluded.message, attempt = excluded.attempt, updated_at = excluded.updated_at`,
  taskRuns: "SELECT * FROM task_runs WHERE flow_run_id = ? ORDER BY updated_at, task_slug",

  // A numbered line already stored (the same run, attempt and seq) is ignored: appends are idempotent.
  insertLog: "INSERT OR IGNORE INTO logs (flow_run_id, at, level, message, task, attempt, seq, stream) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  logsAfter: "SELECT id, at, level, message, task, stream FROM logs WHERE flow_run_id = ? AND id > ? ORDER BY id LIMIT ?",

  insertAgent: `
    INSERT INTO agents (id, name, labels, concurrency, status, created_at, last_heartbeat_at, waiting_until)
    VALUES (@id, @name, @labels, @concurrency, @status, @created_at, @last_heartbeat_at, @waiting_until)`,
  agentById: "SELECT * FROM agents WHERE id = ?",
  // Older databases may hold several rows per name (one per restart): the liveliest one is the agent.
  agentByName: "SELECT * FROM agents WHERE name = ? ORDER BY last_heartbeat_at DESC, rowid DESC LIMIT 1",
  reregisterAgent: `
    UPDATE agents SET labels = @labels, concurrency = @concurrency, status = 'online', last_heartbeat_at = @now
    WHERE id = @id RETURNING *`,
  heartbeatAgent: "UPDATE agents SET status = ?, last_heartbeat_at = ?, health = COALESCE(?, health) WHERE id = ? RETURNING *",
  allAgents: "SELECT * FROM agents ORDER BY created_at, rowid",
  markAgentWaiting: "UPDATE agents SET waiting_until = ? WHERE id = ?",
  clearAgentWaiting: "UPDATE agents SET waiting_until = NULL WHERE id = ? AND waiting_until = ?",
} as const;

export type SqlName = keyof typeof SQL;

/**
 * The SQLite schema, as an ordered list of migrations tracked in `PRAGMA user_version`. Append a migration;
 * never edit one that has shipped, since databases in the field have already applied it.
 */
import type Database from "better-sqlite3";
import { MAX_JSON_DEPTH, cutDeep, tooDeep } from "../shared/json-limits.js";
import { BerthError } from "../wire/errors.js";

/** A step of the schema: SQL, or code for what SQL cannot express. */
export type Migration = string | ((db: Database.Database) => void);

/** Exported for the upgrade test, which builds a database as an older berth left it. */
export const MIGRATIONS: readonly Migration[] = [
  `
  CREATE TABLE flows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    labels TEXT NOT NULL,
    storage TEXT NOT NULL,
    environment TEXT NOT NULL,
    parameters TEXT NOT NULL,
    tasks TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (name, version)
  );

  CREATE TABLE flow_runs (
    id TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL REFERENCES flows (id),
    flow_name TEXT NOT NULL,
    flow_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    state_message TEXT,
    version INTEGER NOT NULL,
    labels TEXT NOT NULL,
    parameters TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    agent_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    last_heartbeat_at TEXT
  );
  -- The claim scans Scheduled runs oldest first: this index serves it without a sort.
  CREATE INDEX flow_runs_state_created ON flow_runs (state, created_at);
  CREATE INDEX flow_runs_created ON flow_runs (created_at);
  CREATE INDEX flow_runs_flow_created ON flow_runs (flow_id, created_at);
  CREATE INDEX flow_runs_flow_name_created ON flow_runs (flow_name, created_at);
  CREATE INDEX flow_runs_agent_state ON flow_runs (agent_id, state);

  CREATE TABLE flow_run_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs (id),
    state TEXT NOT NULL,
    message TEXT,
    version INTEGER NOT NULL,
    agent_id TEXT,
    at TEXT NOT NULL
  );
  CREATE INDEX flow_run_states_run ON flow_run_states (flow_run_id, id);

  CREATE TABLE task_runs (
    flow_run_id TEXT NOT NULL REFERENCES flow_runs (id),
    task_slug TEXT NOT NULL,
    task_name TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    attempt INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, task_slug)
  ) WITHOUT ROWID;

  CREATE TABLE logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs (id),
    at TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    task TEXT
  );
  CREATE INDEX logs_run_id ON logs (flow_run_id, id);

  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_heartbeat_at TEXT NOT NULL
  );
  `,
  // Leases with fencing, and recovery. A NULL recovery reads as the default policy. Names are not made
  // unique: older databases hold one agent row per restart under the same name.
  `
  ALTER TABLE flow_runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE flow_runs ADD COLUMN lease_expires_at TEXT;
  ALTER TABLE flows ADD COLUMN recovery TEXT;
  ALTER TABLE flows ADD COLUMN run_timeout_ms INTEGER;
  -- The reaper's scans: expired leases, silent Running runs, stuck Submitted and Cancelling runs.
  CREATE INDEX flow_runs_state_lease ON flow_runs (state, lease_expires_at);
  CREATE INDEX flow_runs_state_heard ON flow_runs (state, COALESCE(last_heartbeat_at, started_at));
  CREATE INDEX flow_runs_state_updated ON flow_runs (state, updated_at);
  CREATE INDEX agents_name ON agents (name, last_heartbeat_at);
  `,
  // Free-form JSON is now bounded in depth when it arrives; values stored before that are cut to the bound,
  // so that no read of an old row can exhaust the stack.
  (db) => {
    cutDeepColumn(db, "flows", "environment");
    cutDeepColumn(db, "flows", "parameters");
    cutDeepColumn(db, "flow_runs", "parameters");
  },
  // A log line numbered by its attempt is stored once, however often a container that lost a reply sends it.
  `
  ALTER TABLE logs ADD COLUMN attempt INTEGER;
  ALTER TABLE logs ADD COLUMN seq INTEGER;
  CREATE UNIQUE INDEX logs_attempt_seq ON logs (flow_run_id, attempt, seq) WHERE seq IS NOT NULL;
  `,
  // Build contexts, kept by sha256 for agents that build storage images; a flow version names the one it
  // needs, and a context no version names is removed after a grace period.
  `
  CREATE TABLE build_contexts (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at TEXT NOT NULL
  );
  CREATE INDEX build_contexts_created ON build_contexts (created_at);
  ALTER TABLE flows ADD COLUMN context_sha256 TEXT;
  UPDATE flows SET context_sha256 = json_extract(storage, '$.context.sha256');
  CREATE INDEX flows_context ON flows (context_sha256) WHERE context_sha256 IS NOT NULL;
  `,
  // Orchestration: start times, schedules with their slot history, and concurrency limits. A run is claimable
  // from its scheduled_start on; runs from before start times existed start when they were created.
  `
  ALTER TABLE flows ADD COLUMN schedule TEXT;
  ALTER TABLE flows ADD COLUMN catch_up TEXT;
  ALTER TABLE flows ADD COLUMN max_concurrent_runs INTEGER;

  ALTER TABLE flow_runs ADD COLUMN scheduled_start TEXT;
  UPDATE flow_runs SET scheduled_start = created_at;
  ALTER TABLE flow_runs ADD COLUMN clock TEXT;
  -- The claim scans Scheduled runs by start time; a run's limit counts are by flow name and state.
  CREATE INDEX flow_runs_state_start ON flow_runs (state, scheduled_start);
  CREATE INDEX flow_runs_name_state ON flow_runs (flow_name, state);
  -- While a limit is full, the claim skips its runs by (labels, flow) group instead of walking past them.
  CREATE INDEX flow_runs_state_group ON flow_runs (state, labels, flow_name, scheduled_start);
  -- The scheduler's own unstarted runs of a flow (to replace on re-registration, drop on pause).
  CREATE INDEX flow_runs_clock ON flow_runs (flow_name, clock, scheduled_start) WHERE clock IS NOT NULL;

  CREATE TABLE concurrency_limits (
    label TEXT PRIMARY KEY,
    max_runs INTEGER NOT NULL,
    updated_at TEXT NOT NULL
  );

  -- One row per flow that has (or had) a schedule: paused or not.
  CREATE TABLE schedules (
    flow_name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
  );
  -- How far each clock's slots have been handled: only slots after the cursor are looked at.
  CREATE TABLE schedule_clocks (
    flow_name TEXT NOT NULL,
    clock TEXT NOT NULL,
    cursor TEXT NOT NULL,
    PRIMARY KEY (flow_name, clock)
  );
  -- Every slot handled, once: the unique key is what makes a slot yield one run, whoever schedules.
  CREATE TABLE schedule_ticks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_name TEXT NOT NULL,
    clock TEXT NOT NULL,
    slot TEXT NOT NULL,
    outcome TEXT NOT NULL,
    flow_run_id TEXT,
    at TEXT NOT NULL,
    UNIQUE (flow_name, clock, slot)
  );
  CREATE INDEX schedule_ticks_flow ON schedule_ticks (flow_name, slot);
  `,
  // When a scheduler pass last ran, on whichever server: only a longer gap than a few passes is downtime, whose
  // slots the flows' catchUp decides. And a dropped run's slot is found by its run.
  `
  CREATE TABLE scheduler_passes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    passed_at TEXT NOT NULL
  );
  CREATE INDEX schedule_ticks_run ON schedule_ticks (flow_run_id) WHERE flow_run_id IS NOT NULL;
  `,
  // What a flow's run container may use, and whether it runs as root; NULL (older versions): the agent's
  // limits, an unprivileged user.
  `
  ALTER TABLE flows ADD COLUMN resources TEXT;
  ALTER TABLE flows ADD COLUMN run_as TEXT;
  `,
  // Tokens an operator created (only their sha256 is kept) and secrets, sealed with the server's key.
  `
  CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    name TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
  );
  CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  `,
  // The labels an agent token's agent may register with (JSON array); NULL for any.
  `
  ALTER TABLE api_tokens ADD COLUMN labels TEXT;
  `,
  // Until when one of the agent's claims is parked at a server: alive and waiting, seen by every server.
  `
  ALTER TABLE agents ADD COLUMN waiting_until TEXT;
  `,
  // Where a swarm may place the flow's runs (JSON array of constraints); NULL for anywhere.
  `
  ALTER TABLE flows ADD COLUMN placement TEXT;
  `,
  // A claim reads the due runs of each label set it may take from here, not past the runs of other labels.
  `
  CREATE INDEX flow_runs_state_labels_start ON flow_runs (state, labels, scheduled_start);
  `,
  // Where the current attempt's time went: claimed, and the agent's steps (JSON); NULL before the first claim.
  `
  ALTER TABLE flow_runs ADD COLUMN phases TEXT;
  `,
  // The stream of a line the agent collected from the container's output (stdout, stderr); NULL otherwise.
  `
  ALTER TABLE logs ADD COLUMN stream TEXT;
  `,
  // What the agent last said of its health (JSON: slots used, free disk, reasons, when).
  `
  ALTER TABLE agents ADD COLUMN health TEXT;
  `,
  // Bytes of log text kept for the run (bounded by server.runLogLimit); -1 once retention removed its logs.
  `
  ALTER TABLE flow_runs ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX flow_runs_logs_kept ON flow_runs (ended_at) WHERE log_bytes >= 0 AND ended_at IS NOT NULL;
  `,
  // The indexes only queued runs are looked up by hold queued runs only: a claim then removes a run from
  // them and adds it to none, which is fewer pages to write and sync per claim. Every query they serve says
  // state = 'Scheduled', which is what lets SQLite use a partial index.
  `
  DROP INDEX flow_runs_state_start;
  CREATE INDEX flow_runs_state_start ON flow_runs (state, scheduled_start) WHERE state = 'Scheduled';
  DROP INDEX flow_runs_state_group;
  CREATE INDEX flow_runs_state_group ON flow_runs (state, labels, flow_name, scheduled_start) WHERE state = 'Scheduled';
  DROP INDEX flow_runs_state_labels_start;
  CREATE INDEX flow_runs_state_labels_start ON flow_runs (state, labels, scheduled_start) WHERE state = 'Scheduled';
  `,
];

function cutDeepColumn(db: Database.Database, table: "flows" | "flow_runs", column: "environment" | "parameters"): void {
  const deep: { id: string; value: string }[] = [];
  // Nesting past the bound takes at least two characters a level: shorter values cannot be too deep.
  const rows = db.prepare(`SELECT id, ${column} AS value FROM ${table} WHERE length(${column}) > ?`).iterate(2 * MAX_JSON_DEPTH);
  for (const row of rows as Iterable<{ id: string; value: string }>) if (tooDeep(row.value) !== undefined) deep.push(row);
  const update = db.prepare(`UPDATE ${table} SET ${column} = ? WHERE id = ?`);
  for (const row of deep) {
    let cut: unknown;
    try {
      cut = cutDeep(JSON.parse(row.value));
    } catch {
      cut = column === "parameters" ? {} : { type: "custom", className: "unknown", labels: [], metadata: {} };
    }
    update.run(JSON.stringify(cut), row.id);
  }
}

/** Brings the database to the newest schema. Safe when several connections open the same file at once. */
export function migrate(db: Database.Database): void {
  // IMMEDIATE takes the write lock first, so two openers cannot both see an old version and both apply.
  db.transaction(() => {
    const current = db.pragma("user_version", { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new BerthError(
        "BERTH_E_CONFIG",
        `the database schema (version ${current}) is newer than this berth understands (${MIGRATIONS.length}): upgrade berth`,
      );
    }
    for (let version = current; version < MIGRATIONS.length; version++) {
      const step = MIGRATIONS[version] ?? "";
      if (typeof step === "string") db.exec(step);
      else step(db);
    }
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

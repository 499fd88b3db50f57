/**
 * The PostgreSQL schema, as an ordered list of migrations whose count is kept in `berth_schema`. The first is
 * the whole schema the SQLite store reached through its own migrations 1 to 10 (no PostgreSQL database
 * predates it); append a migration to change it, never edit one that has shipped. Timestamps are ISO-8601
 * text, as in SQLite, so both stores order and compare them the same way.
 *
 * Migrating takes a transaction-level advisory lock first: several server replicas starting at once on one
 * database apply each migration once, and the others find it done.
 */
import type pg from "pg";
import { BerthError } from "../wire/errors.js";

export const POSTGRES_MIGRATIONS: readonly string[] = [
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
    recovery TEXT,
    run_timeout_ms BIGINT,
    context_sha256 TEXT,
    schedule TEXT,
    catch_up TEXT,
    max_concurrent_runs INTEGER,
    resources TEXT,
    run_as TEXT,
    UNIQUE (name, version)
  );
  CREATE INDEX flows_context ON flows (context_sha256) WHERE context_sha256 IS NOT NULL;

  CREATE TABLE flow_runs (
    id TEXT PRIMARY KEY,
    -- Insertion order, for ties between equal timestamps (SQLite's rowid).
    seq BIGSERIAL NOT NULL,
    flow_id TEXT NOT NULL REFERENCES flows (id),
    flow_name TEXT NOT NULL,
    flow_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    state_message TEXT,
    version BIGINT NOT NULL,
    labels TEXT NOT NULL,
    parameters TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    agent_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    last_heartbeat_at TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires_at TEXT,
    scheduled_start TEXT NOT NULL,
    clock TEXT
  );
  CREATE INDEX flow_runs_created ON flow_runs (created_at);
  CREATE INDEX flow_runs_flow_created ON flow_runs (flow_id, created_at);
  CREATE INDEX flow_runs_flow_name_created ON flow_runs (flow_name, created_at);
  CREATE INDEX flow_runs_agent_state ON flow_runs (agent_id, state);
  CREATE INDEX flow_runs_state_lease ON flow_runs (state, lease_expires_at);
  CREATE INDEX flow_runs_state_heard ON flow_runs (state, (COALESCE(last_heartbeat_at, started_at)));
  CREATE INDEX flow_runs_state_updated ON flow_runs (state, updated_at);
  CREATE INDEX flow_runs_state_start ON flow_runs (state, scheduled_start, seq);
  CREATE INDEX flow_runs_name_state ON flow_runs (flow_name, state);
  CREATE INDEX flow_runs_state_group ON flow_runs (state, labels, flow_name, scheduled_start);
  CREATE INDEX flow_runs_clock ON flow_runs (flow_name, clock, scheduled_start) WHERE clock IS NOT NULL;

  CREATE TABLE flow_run_states (
    id BIGSERIAL PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs (id),
    state TEXT NOT NULL,
    message TEXT,
    version BIGINT NOT NULL,
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
    attempt BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, task_slug)
  );

  CREATE TABLE logs (
    id BIGSERIAL PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs (id),
    at TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    task TEXT,
    attempt BIGINT,
    seq BIGINT
  );
  CREATE INDEX logs_run_id ON logs (flow_run_id, id);
  CREATE UNIQUE INDEX logs_attempt_seq ON logs (flow_run_id, attempt, seq) WHERE seq IS NOT NULL;

  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
    name TEXT NOT NULL UNIQUE,
    labels TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_heartbeat_at TEXT NOT NULL
  );

  CREATE TABLE build_contexts (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    created_at TEXT NOT NULL
  );
  CREATE INDEX build_contexts_created ON build_contexts (created_at);

  CREATE TABLE concurrency_limits (
    label TEXT PRIMARY KEY,
    max_runs INTEGER NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE TABLE schedules (
    flow_name TEXT PRIMARY KEY,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TEXT NOT NULL
  );
  CREATE TABLE schedule_clocks (
    flow_name TEXT NOT NULL,
    clock TEXT NOT NULL,
    cursor TEXT NOT NULL,
    PRIMARY KEY (flow_name, clock)
  );
  CREATE TABLE schedule_ticks (
    id BIGSERIAL PRIMARY KEY,
    flow_name TEXT NOT NULL,
    clock TEXT NOT NULL,
    slot TEXT NOT NULL,
    outcome TEXT NOT NULL,
    flow_run_id TEXT,
    at TEXT NOT NULL,
    UNIQUE (flow_name, clock, slot)
  );
  CREATE INDEX schedule_ticks_flow ON schedule_ticks (flow_name, slot);
  CREATE INDEX schedule_ticks_run ON schedule_ticks (flow_run_id) WHERE flow_run_id IS NOT NULL;
  CREATE TABLE scheduler_passes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    passed_at TEXT NOT NULL
  );

  CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    name TEXT,
    labels TEXT,
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
  // Until when one of the agent's claims is parked at a replica: alive and waiting, seen by every replica.
  `
  ALTER TABLE agents ADD COLUMN waiting_until TEXT;
  `,
  // Where a swarm may place the flow's runs (JSON array of constraints); NULL for anywhere.
  `
  ALTER TABLE flows ADD COLUMN placement TEXT;
  `,
  // A claim reads the due runs of each label set it may take from here, not past the runs of other labels.
  `
  CREATE INDEX flow_runs_state_labels_start ON flow_runs (state, labels, scheduled_start, seq);
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
  ALTER TABLE flow_runs ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0;
  CREATE INDEX flow_runs_logs_kept ON flow_runs (ended_at) WHERE log_bytes >= 0 AND ended_at IS NOT NULL;
  `,
  // The indexes only queued runs are looked up by hold queued runs only: a claim's new row version then adds
  // an entry to none of them. Every query they serve says state = 'Scheduled'. Building them on a large table
  // may take longer than the connection's statement timeout allows one statement.
  `
  SET LOCAL statement_timeout = 0;
  DROP INDEX flow_runs_state_start;
  CREATE INDEX flow_runs_state_start ON flow_runs (state, scheduled_start, seq) WHERE state = 'Scheduled';
  DROP INDEX flow_runs_state_group;
  CREATE INDEX flow_runs_state_group ON flow_runs (state, labels, flow_name, scheduled_start) WHERE state = 'Scheduled';
  DROP INDEX flow_runs_state_labels_start;
  CREATE INDEX flow_runs_state_labels_start ON flow_runs (state, labels, scheduled_start, seq) WHERE state = 'Scheduled';
  `,
  // A claim where no concurrency limit is set, in one round trip (store/postgres.ts, claimFlowRuns): it holds
  // the claim lock (p_lock) shared, refuses with SQLSTATE BL001 if a limit is set (checked after the lock, in a
  // statement of its own, so with a snapshot that holds any limit set before it), then takes up to p_max due
  // runs of the label sets the agent satisfies (the rule of store/labels.ts), earliest start first, and records
  // their Submitted states. Rows it reads are locked until it returns; others' locked rows are skipped.
  `
  CREATE FUNCTION berth_claim(p_lock TEXT, p_agent TEXT, p_labels TEXT[], p_max INTEGER, p_now TEXT, p_lease TEXT)
  RETURNS SETOF flow_runs LANGUAGE plpgsql VOLATILE
  -- Its statements are planned once per connection: the plan each would get for its values is the same one
  -- (the index's), and planning them anew at each call cost more than running them.
  SET plan_cache_mode = force_generic_plan
  AS $claim$
  DECLARE
    sets TEXT[] := ARRAY['[]'];
    one_set TEXT;
    ids TEXT[] := '{}';
  BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_lock, 0));
    IF EXISTS (SELECT 1 FROM concurrency_limits) OR EXISTS (SELECT 1 FROM flows WHERE max_concurrent_runs IS NOT NULL) THEN
      RAISE EXCEPTION 'a concurrency limit is set: claim under the claim lock' USING ERRCODE = 'BL001';
    END IF;
    IF cardinality(p_labels) > 0 THEN
      -- The distinct label sets queued, one index seek each (a loose index scan), kept where the agent has
      -- every label of the set.
      WITH RECURSIVE queued(labels) AS (
        (SELECT f.labels FROM flow_runs f WHERE f.state = 'Scheduled' ORDER BY f.labels LIMIT 1)
        UNION ALL
        SELECT (SELECT f.labels FROM flow_runs f WHERE f.state = 'Scheduled' AND f.labels > q.labels ORDER BY f.labels LIMIT 1)
        FROM queued q WHERE q.labels IS NOT NULL)
      SELECT coalesce(array_agg(q.labels), '{}') INTO sets FROM queued q
      WHERE q.labels IS NOT NULL AND q.labels <> '[]' AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements_text(q.labels::jsonb) AS l(value) WHERE NOT (l.value = ANY(p_labels)));
    END IF;
    -- Each set's earliest due runs, from its own place in flow_runs_due_labels; then the earliest of them all.
    -- The set is asked for as a range of one value, ordered as that index is: the plan kept for every set (one
    -- made without knowing the set) must seek there. With labels = one_set the order by labels would go, and
    -- that plan walked flow_runs_due, every due run of every set in start order, to find the set's first.
    FOREACH one_set IN ARRAY sets LOOP
      ids := ids || ARRAY(
        SELECT f.id FROM flow_runs f
        WHERE f.state = 'Scheduled' AND f.labels >= one_set AND f.labels <= one_set AND f.scheduled_start <= p_now
        ORDER BY f.labels, f.scheduled_start, f.seq LIMIT p_max FOR UPDATE SKIP LOCKED);
    END LOOP;
    IF cardinality(ids) = 0 THEN
      RETURN;
    END IF;
    RETURN QUERY
    WITH chosen AS (
      SELECT f.id FROM flow_runs f WHERE f.id = ANY(ids) ORDER BY f.scheduled_start, f.seq LIMIT p_max
    ), claimed AS (
      UPDATE flow_runs f SET state = 'Submitted', state_message = NULL, agent_id = p_agent, version = f.version + 1,
        epoch = f.epoch + 1, lease_expires_at = p_lease, updated_at = p_now, phases = json_build_object('claimed', p_now)::text
      FROM chosen c WHERE f.id = c.id AND f.state = 'Scheduled' RETURNING f.*
    ), recorded AS (
      INSERT INTO flow_run_states (flow_run_id, state, message, version, agent_id, at)
      SELECT c.id, 'Submitted', NULL, c.version, c.agent_id, c.updated_at FROM claimed c
    )
    SELECT * FROM claimed c ORDER BY c.scheduled_start, c.seq;
  END
  $claim$;
  `,
  // The indexes of queued runs without their leading state column: their predicate says state = 'Scheduled',
  // so PostgreSQL drops that condition from an index scan, and a seek on the next column (labels > x, a start
  // after now) then scanned the whole index from its first entry instead, a cost that grew with the queue.
  `
  SET LOCAL statement_timeout = 0;
  DROP INDEX flow_runs_state_start;
  CREATE INDEX flow_runs_due ON flow_runs (scheduled_start, seq) WHERE state = 'Scheduled';
  DROP INDEX flow_runs_state_group;
  CREATE INDEX flow_runs_due_group ON flow_runs (labels, flow_name, scheduled_start) WHERE state = 'Scheduled';
  DROP INDEX flow_runs_state_labels_start;
  CREATE INDEX flow_runs_due_labels ON flow_runs (labels, scheduled_start, seq) WHERE state = 'Scheduled';
  `,
  // A claim that reads its agent too (store/postgres.ts, claimForAgent): the agent's row, and the runs
  // berth_claim takes for it with the labels stored there, as one JSON value; NULL, claiming nothing, for an
  // agent that is not registered. It fails with BL001 where berth_claim does.
  `
  CREATE FUNCTION berth_claim_for(p_lock TEXT, p_agent TEXT, p_max INTEGER, p_now TEXT, p_lease TEXT)
  RETURNS json LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan
  AS $claim$
  DECLARE
    agent agents;
    runs json;
  BEGIN
    SELECT * INTO agent FROM agents WHERE id = p_agent;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    SELECT coalesce(json_agg(r ORDER BY r.scheduled_start, r.seq), '[]') INTO runs
    FROM berth_claim(p_lock, p_agent, ARRAY(SELECT jsonb_array_elements_text(agent.labels::jsonb)), p_max, p_now, p_lease) r;
    RETURN json_build_object('agent', row_to_json(agent), 'runs', runs);
  END
  $claim$;
  `,
  // The claim functions' plans, made once per connection, were made with what the table held then, and a
  // plan that suited one queue did not suit another: a connection that planned on a small queue wrote each
  // claim by walking every queued run (0.4 ms became 3 ms per claim at 6,000 queued), and one that planned on
  // a large, never analyzed one read its candidates from another index and sorted them all. Now nothing in
  // them may scan a whole table or sort what an index gives in order, so the one plan each statement gets is
  // the index's whatever the statistics: the candidates come in index order, several label sets' are merged
  // in memory, and the write finds its runs by primary key (the candidates' read locked them, re-checking
  // that they are still queued; a state condition in the write would let the planner walk an index of
  // queued runs again). A statement whose only way is one of those (the few rows of the limit
  // tables, the claimed runs' order) then looks so costly that JIT would compile it, which takes longer than
  // any claim: jit is off for them.
  `
  CREATE OR REPLACE FUNCTION berth_claim(p_lock TEXT, p_agent TEXT, p_labels TEXT[], p_max INTEGER, p_now TEXT, p_lease TEXT)
  RETURNS SETOF flow_runs LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan
  SET enable_seqscan = off
  SET enable_sort = off
  SET jit = off
  AS $claim$
  DECLARE
    sets TEXT[] := ARRAY['[]'];
    one_set TEXT;
    candidate RECORD;
    ids TEXT[] := '{}';
    starts TEXT[] := '{}';
    seqs BIGINT[] := '{}';
  BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended(p_lock, 0));
    IF EXISTS (SELECT 1 FROM concurrency_limits) OR EXISTS (SELECT 1 FROM flows WHERE max_concurrent_runs IS NOT NULL) THEN
      RAISE EXCEPTION 'a concurrency limit is set: claim under the claim lock' USING ERRCODE = 'BL001';
    END IF;
    IF cardinality(p_labels) > 0 THEN
      WITH RECURSIVE queued(labels) AS (
        (SELECT f.labels FROM flow_runs f WHERE f.state = 'Scheduled' ORDER BY f.labels LIMIT 1)
        UNION ALL
        SELECT (SELECT f.labels FROM flow_runs f WHERE f.state = 'Scheduled' AND f.labels > q.labels ORDER BY f.labels LIMIT 1)
        FROM queued q WHERE q.labels IS NOT NULL)
      SELECT coalesce(array_agg(q.labels), '{}') INTO sets FROM queued q
      WHERE q.labels IS NOT NULL AND q.labels <> '[]' AND NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements_text(q.labels::jsonb) AS l(value) WHERE NOT (l.value = ANY(p_labels)));
    END IF;
    FOREACH one_set IN ARRAY sets LOOP
      FOR candidate IN
        SELECT f.id, f.scheduled_start, f.seq FROM flow_runs f
        WHERE f.state = 'Scheduled' AND f.labels >= one_set AND f.labels <= one_set AND f.scheduled_start <= p_now
        ORDER BY f.labels, f.scheduled_start, f.seq LIMIT p_max FOR UPDATE SKIP LOCKED
      LOOP
        ids := ids || candidate.id;
        starts := starts || candidate.scheduled_start;
        seqs := seqs || candidate.seq;
      END LOOP;
    END LOOP;
    IF cardinality(ids) = 0 THEN
      RETURN;
    END IF;
    IF cardinality(sets) > 1 THEN
      ids := ARRAY(SELECT c.id FROM unnest(ids, starts, seqs) AS c(id, start, seq) ORDER BY c.start, c.seq LIMIT p_max);
    END IF;
    RETURN QUERY
    WITH claimed AS (
      UPDATE flow_runs f SET state = 'Submitted', state_message = NULL, agent_id = p_agent, version = f.version + 1,
        epoch = f.epoch + 1, lease_expires_at = p_lease, updated_at = p_now, phases = json_build_object('claimed', p_now)::text
      WHERE f.id = ANY(ids) RETURNING f.*
    ), recorded AS (
      INSERT INTO flow_run_states (flow_run_id, state, message, version, agent_id, at)
      SELECT c.id, 'Submitted', NULL, c.version, c.agent_id, c.updated_at FROM claimed c
    )
    SELECT * FROM claimed c ORDER BY c.scheduled_start, c.seq;
  END
  $claim$;
  ALTER FUNCTION berth_claim_for(TEXT, TEXT, INTEGER, TEXT, TEXT) SET enable_seqscan = off;
  ALTER FUNCTION berth_claim_for(TEXT, TEXT, INTEGER, TEXT, TEXT) SET jit = off;
  `,
  // Claims that arrive together, as one statement and one transaction (store/postgres-claims.ts): each
  // entry is an agent, the labels it claims with (a JSON array; NULL: the ones stored on its row, as
  // berth_claim_for reads them), how many runs it takes and its lease. The result is a JSON array with one
  // element per entry, in order: berth_claim_for's value (NULL for an unknown agent), or {runs} for an
  // entry with labels. Each entry's claim sees what the ones before it took, so none takes a run twice.
  `
  CREATE FUNCTION berth_claim_batch(p_lock TEXT, p_agents TEXT[], p_labels TEXT[], p_max INTEGER[], p_now TEXT, p_leases TEXT[])
  RETURNS json LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan
  SET enable_seqscan = off
  SET jit = off
  AS $claim$
  DECLARE
    results json[] := '{}';
    one json;
  BEGIN
    FOR i IN 1 .. cardinality(p_agents) LOOP
      IF p_labels[i] IS NULL THEN
        one := berth_claim_for(p_lock, p_agents[i], p_max[i], p_now, p_leases[i]);
      ELSE
        SELECT json_build_object('runs', coalesce(json_agg(r ORDER BY r.scheduled_start, r.seq), '[]')) INTO one
        FROM berth_claim(p_lock, p_agents[i], ARRAY(SELECT jsonb_array_elements_text(p_labels[i]::jsonb)), p_max[i], p_now, p_leases[i]) r;
      END IF;
      results := array_append(results, one);
    END LOOP;
    RETURN array_to_json(results);
  END
  $claim$;
  `,
];

/** A key for pg_advisory_xact_lock that no other user of the database is likely to take. */
const MIGRATION_LOCK = 0x62657274; // "bert"

/** Brings the database to the newest schema; returns the version it is at. */
export async function migratePostgres(client: pg.ClientBase): Promise<number> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await client.query("CREATE TABLE IF NOT EXISTS berth_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)");
    const { rows } = await client.query<{ version: number }>("SELECT version FROM berth_schema WHERE id = 1");
    const current = rows[0]?.version ?? 0;
    if (current > POSTGRES_MIGRATIONS.length) {
      throw new BerthError(
        "BERTH_E_CONFIG",
        `the database schema (version ${current}) is newer than this berth understands (${POSTGRES_MIGRATIONS.length}): upgrade berth`,
      );
    }
    for (let version = current; version < POSTGRES_MIGRATIONS.length; version++) await client.query(POSTGRES_MIGRATIONS[version] ?? "");
    await client.query(
      "INSERT INTO berth_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
      [POSTGRES_MIGRATIONS.length],
    );
    await client.query("COMMIT");
    return POSTGRES_MIGRATIONS.length;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

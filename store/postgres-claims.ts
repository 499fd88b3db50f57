/**
 * Claims made while no concurrency limit is set, sent to PostgreSQL a few at a time. A claim is one round
 * trip whatever it takes (store/postgres-migrations.ts: berth_claim, berth_claim_for), and most of what a
 * lone claim costs the database is that trip's: the statement's start, its transaction and commit (about
 * 300 µs of the backend's CPU alone, about 110 µs each in threes). So while one claim statement is under
 * way, the claims that arrive wait, and go together as one statement (berth_claim_batch) when it answers:
 * under load a trip serves several claims, and a claim alone goes at once, as before. Claims in one
 * statement share its transaction. Where the database refuses them all (unreachable, a concurrency limit set
 * meanwhile), each fails with that error, as it would have alone; any other failure sends each again alone.
 */
import type { FlowRun } from "../wire/schema.js";
import type { StoredAgent } from "./port.js";
import type { PgAccess } from "./postgres-sql.js";
import { toAgent, toFlowRun, type AgentRow, type FlowRunRow } from "./sqlite-rows.js";

/** A claim where no limit is set (the function of that name); it refuses with LIMIT_SET if one is. */
const CLAIM_UNLIMITED = "SELECT * FROM berth_claim(@lock, @agentId, @agentLabels::text[], @max::integer, @now, @lease)";
/** The agent's row (JSON) and the runs claimed for it with its stored labels; NULL for an unknown agent. */
const CLAIM_FOR_AGENT = "SELECT berth_claim_for(@lock, @agentId, @max::integer, @now, @lease) AS claim";
/** Several claims at once: one JSON element per claim, in order. */
const CLAIM_BATCH = "SELECT berth_claim_batch(@lock, @agents::text[], @labels::text[], @max::integer[], @now, @leases::text[]) AS claims";

/** The most claims one statement carries: a statement's transaction holds its runs' locks until it ends. */
const MAX_BATCH = 32;

/** What a claim found: the agent (read with the claim where no labels were given; unknown: undefined) and its runs. */
export type ClaimResult = { agent: StoredAgent | undefined; runs: FlowRun[] };

interface Waiting {
  agentId: string;
  /** The labels to claim with; undefined: the agent's, read with the claim. */
  labels: readonly string[] | undefined;
  max: number;
  leaseMs: number;
  resolve(result: ClaimResult): void;
  reject(err: unknown): void;
}

type Answer = { agent?: AgentRow; runs: FlowRunRow[] } | null;

/**
 * One claim statement under way at a time, per store: claims that arrive meanwhile wait for it and go
 * together next. Measured with 8 claimers on two cores (bench:scale), a second statement under way made the
 * batches smaller, and cost the database more per claim than the overlap gained.
 */
export class ClaimBatcher {
  private readonly waiting: Waiting[] = [];
  private busy = false;

  constructor(
    private readonly db: PgAccess,
    private readonly lock: string,
    /** Whether an error is the database's refusal or absence, which a claim alone would have met too. */
    private readonly shared: (err: unknown) => boolean,
  ) {}

  /** Claims up to `max` runs for the agent, with `labels` or (undefined) the ones stored on its row. */
  claim(agentId: string, labels: readonly string[] | undefined, max: number, leaseMs: number): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ agentId, labels, max, leaseMs, resolve, reject });
      if (!this.busy) this.next();
    });
  }

  private next(): void {
    const batch = this.waiting.splice(0, MAX_BATCH);
    this.busy = batch.length > 0;
    if (this.busy) void this.send(batch);
  }

  /**
   * Sends one batch and answers its claims. The next batch goes before these are answered: answering them
   * (their HTTP replies) takes this process a while, which the database can spend on the next.
   */
  private async send(batch: Waiting[]): Promise<void> {
    let answers: Answer[] | undefined;
    let failure: unknown;
    try {
      answers = batch.length === 1 ? [await this.one(batch[0]!)] : await this.many(batch);
    } catch (err) {
      failure = err;
    }
    this.next();
    if (answers) {
      batch.forEach((claim, i) => settle(claim, answers[i] ?? null));
    } else if (batch.length > 1 && !this.shared(failure)) {
      // Nothing of the batch was written (its transaction rolled back). A claim that failed it must not fail
      // the others: each goes again alone, and fails, if it does, by itself.
      for (const claim of batch) this.one(claim).then((answer) => settle(claim, answer), claim.reject);
    } else {
      for (const claim of batch) claim.reject(failure);
    }
  }

  private async one(claim: Waiting): Promise<Answer> {
    const { db } = this;
    const params = { lock: this.lock, agentId: claim.agentId, max: claim.max, now: db.timestamp(), lease: db.timestamp(claim.leaseMs) };
    if (claim.labels === undefined) return (await db.get<{ claim: Answer }>(CLAIM_FOR_AGENT, params))?.claim ?? null;
    return { runs: await db.all<FlowRunRow>(CLAIM_UNLIMITED, { ...params, agentLabels: [...claim.labels] }) };
  }

  private async many(batch: readonly Waiting[]): Promise<Answer[]> {
    const { db } = this;
    const row = await db.get<{ claims: Answer[] }>(CLAIM_BATCH, {
      lock: this.lock,
      agents: batch.map((c) => c.agentId),
      labels: batch.map((c) => (c.labels === undefined ? null : JSON.stringify(c.labels))),
      max: batch.map((c) => c.max),
      now: db.timestamp(),
      leases: batch.map((c) => db.timestamp(c.leaseMs)),
    });
    return row?.claims ?? [];
  }
}

function settle(claim: Waiting, answer: Answer): void {
  try {
    claim.resolve({ agent: answer?.agent ? toAgent(answer.agent) : undefined, runs: answer ? answer.runs.map(toFlowRun) : [] });
  } catch (err) {
    claim.reject(err);
  }
}

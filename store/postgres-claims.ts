/**
 * Claims made while no concurrency limit is set, sent to PostgreSQL a few at a time. A claim is one round
 * trip whatever it takes (store/postgres-migrations.ts: berth_claim, berth_claim_for), and most of what a
 * lone claim costs the database is that trip's: the statement's start, its transaction and commit (about
 * 300 µs of the backend's CPU alone, about 110 µs each in threes). So while one claim statement is under
 * way, the claims that arrive wait, and go together as one statement (berth_claim_batch) when it answers:
 * under load a trip serves several claims, and a claim alone goes at once, as before. Claims in one
 * statement share its transaction. Where the database refused that statement alone, each of its claims
 * goes again by itself; any other failure fails them all (refusedStatement).
 */
import pg from "pg";
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

/** The most claims one statement carries, and the most runs they may ask for between them (a claim asking for more goes alone). */
const MAX_BATCH = 32;
const MAX_BATCH_RUNS = 100;
/**
 * How long the statement under way may hold the next back. A claim statement normally answers in a few ms;
 * one that waits (on the claim lock while a limit is set, on a connection whose link died) must not stall
 * every claim of the server behind it: after this long, the next goes on another connection.
 */
const SLOW_BATCH_MS = 250;

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

/** What berth_claim raises where a concurrency limit is set. */
export const LIMIT_SET = "BL001";

/**
 * Whether a batch's failure was the database's refusal of that statement (a statement that failed is rolled
 * back), so that each of its claims may go again by itself. Any other failure (the database unreachable, a
 * concurrency limit set meanwhile, an answer that could not be read after the commit) fails every claim of
 * the batch with it: each would have met it alone, or might have been claimed already.
 */
export function refusedStatement(err: unknown): boolean {
  return err instanceof pg.DatabaseError && err.code !== LIMIT_SET;
}

export interface ClaimBatcherOptions {
  /** Default SLOW_BATCH_MS. */
  slowBatchMs?: number;
}

/**
 * One claim statement under way at a time, per store: claims that arrive meanwhile wait for it and go
 * together next. Measured with 8 claimers on two cores (bench:scale), a second statement under way made the
 * batches smaller, and cost the database more per claim than the overlap gained.
 */
export class ClaimBatcher {
  private readonly waiting: Waiting[] = [];
  /** The batch whose answer (or slowness) sends the next one; undefined when none is under way. */
  private leader: object | undefined;

  constructor(
    private readonly db: PgAccess,
    private readonly lock: string,
    private readonly options: ClaimBatcherOptions = {},
  ) {}

  /** Claims up to `max` runs for the agent, with `labels` or (undefined) the ones stored on its row. */
  claim(agentId: string, labels: readonly string[] | undefined, max: number, leaseMs: number): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ agentId, labels, max, leaseMs, resolve, reject });
      if (this.leader === undefined) this.next();
    });
  }

  private next(): void {
    const batch = this.take();
    if (batch.length === 0) {
      this.leader = undefined;
      return;
    }
    const leader = {};
    this.leader = leader;
    const handOver = () => {
      if (this.leader === leader) this.next();
    };
    const slow = setTimeout(handOver, this.options.slowBatchMs ?? SLOW_BATCH_MS);
    void this.send(batch, () => {
      clearTimeout(slow);
      handOver();
    });
  }

  /** The next batch: the oldest claims waiting, as many as fit. */
  private take(): Waiting[] {
    let runs = 0;
    let n = 0;
    while (n < this.waiting.length && n < MAX_BATCH && (n === 0 || runs + this.waiting[n]!.max <= MAX_BATCH_RUNS)) runs += this.waiting[n++]!.max;
    return this.waiting.splice(0, n);
  }

  /**
   * Sends one batch and answers its claims. The next batch goes (`answered`) before these are answered:
   * answering them (their HTTP replies) takes this process a while, which the database can spend on the next.
   */
  private async send(batch: Waiting[], answered: () => void): Promise<void> {
    let answers: Answer[] | undefined;
    let failure: unknown;
    try {
      answers = batch.length === 1 ? [await this.one(batch[0]!)] : await this.many(batch);
    } catch (err) {
      failure = err;
    }
    answered();
    if (answers) {
      batch.forEach((claim, i) => settle(claim, answers[i]!));
    } else if (batch.length > 1 && refusedStatement(failure)) {
      // Nothing of the batch was written. A claim that made it fail must not fail the others: each goes
      // again alone, and fails, if it does, by itself.
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
    const row = await db.get<{ claims: Answer[] | null }>(CLAIM_BATCH, {
      lock: this.lock,
      agents: batch.map((c) => c.agentId),
      labels: batch.map((c) => (c.labels === undefined ? null : JSON.stringify(c.labels))),
      max: batch.map((c) => c.max),
      now: db.timestamp(),
      leases: batch.map((c) => db.timestamp(c.leaseMs)),
    });
    // Committed, but not what was asked: no claim may be answered from it, nor claim again.
    if (!Array.isArray(row?.claims) || row.claims.length !== batch.length) {
      throw new Error(`berth_claim_batch answered ${Array.isArray(row?.claims) ? row.claims.length : "no"} claims for ${batch.length}`);
    }
    return row.claims;
  }
}

function settle(claim: Waiting, answer: Answer): void {
  try {
    claim.resolve({ agent: answer?.agent ? toAgent(answer.agent) : undefined, runs: answer ? answer.runs.map(toFlowRun) : [] });
  } catch (err) {
    claim.reject(err);
  }
}

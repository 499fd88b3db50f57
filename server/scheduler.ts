/**
 * The scheduler: makes the runs of every registered schedule ahead of time, so that an idle agent starts a
 * run the moment its slot comes (the claim long-poll knows the next start, see routes/claim.ts).
 *
 * For each flow whose newest version has a schedule, and each of its clocks, a pass looks only at slots after
 * the clock's cursor (store: schedule_clocks), and records each slot's outcome once (store: schedule_ticks,
 * unique per flow, clock and slot: a slot never yields two runs, whichever server replica decides it):
 *
 * - **created**: a Scheduled run of the newest version, starting at the slot, with the clock's parameters
 *   over the flow's defaults and the clock's labels (or the flow's). Runs are made up to AHEAD_MS ahead (at
 *   most SLOTS_PER_PASS per clock and pass), and the next slot is always made, however far off.
 * - **missed**: the slot's time came while no scheduler ran. That is downtime: no pass on any server for
 *   three scheduler intervals, and at least MIN_DOWN_MS, told by the store's record of the last pass; a shorter gap
 *   (a quick restart, a replica joining) misses nothing. A slot after the cursor and before this server
 *   started was never decided; a run made ahead whose slot fell in the downtime, still unclaimed, was never
 *   started on time. For both, the flow's `catchUp` decides: "none" runs none of them, "latest" (the
 *   default) the newest only, "all" every one (at most CATCH_UP_MAX, the newest). Runs that came due while
 *   a scheduler ran and wait for an agent or a concurrency slot are never touched.
 * - **paused**: the slot's time came while the schedule was paused; pausing also drops the runs made ahead.
 *
 * Passes never overlap, run every `schedulerIntervalMs` and whenever something changes a schedule
 * (`wake()`), and `tickOnce(now)` runs one with a test's clock. The slot history keeps the newest TICKS_KEPT
 * slots per flow that have come, and every slot to come. A pass writes a clock's decisions only if the
 * schedule is still as the pass read it (store.applySlots): a pause or a new version on another server wins.
 */
import type { FastifyBaseLogger } from "fastify";
import { clockKey, nextSlot, slotsAfter } from "../flows/schedules.js";
import type { SlotDecision, StateStore } from "../store/port.js";
import { describeError } from "../wire/errors.js";
import type { ClockSpec, FlowRecord, FlowRun } from "../wire/schema.js";
import type { ServerMetrics } from "./metrics.js";
import { RUNS_TOPIC, type Notifier } from "./notifier.js";

/** How far ahead of its slot a run exists. */
export const AHEAD_MS = 10 * 60_000;
/** Slots made per clock and pass; a fast clock tops up over the next passes. */
export const SLOTS_PER_PASS = 100;
/** With catchUp "all": at most this many missed slots of a clock run, the newest. */
export const CATCH_UP_MAX = 100;
/** Slot history kept per flow (slots that have come; those to come are all kept). */
export const TICKS_KEPT = 1_000;
/** The shortest gap between scheduler passes that counts as downtime. */
export const MIN_DOWN_MS = 30_000;

export interface SchedulerOptions {
  store: StateStore;
  notifier: Notifier;
  logger: FastifyBaseLogger;
  /** 0: no timer (tests call tickOnce). */
  intervalMs: number;
  /** Milliseconds since the epoch; the same clock as the store's timestamps. */
  now: () => number;
  /** When this server started (ms): a slot before it, not handled, was missed. */
  startedAt: number;
  /** Counts slots and runs made; absent where a scheduler runs outside a server (tests). */
  metrics?: ServerMetrics;
}

export interface SchedulerReport {
  created: FlowRun[];
  /** Slots recorded missed or paused, and runs made ahead dropped as missed, by flow name. */
  skipped: Record<string, number>;
}

export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<SchedulerReport> | undefined;
  private again = false;
  private stopped = false;
  /** Clocks (flow and key) whose runs made before this server started were already looked at. */
  private readonly caughtUp = new Set<string>();
  /** The downtime before this server started (no pass on any server), once the first pass has read it. */
  private downtime: { from: Date; until: Date } | null | undefined;

  constructor(private readonly options: SchedulerOptions) {}

  start(): void {
    if (this.stopped || this.timer !== undefined || this.options.intervalMs <= 0) return;
    this.timer = setInterval(() => this.wake(), this.options.intervalMs);
    this.timer.unref();
    this.wake();
  }

  /** Runs a pass soon: at once, or right after the one under way. */
  wake(): void {
    if (this.stopped || this.options.intervalMs <= 0) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    this.tickOnce().catch((err: unknown) => {
      this.options.logger.error({ err }, `scheduler pass failed, next in ${this.options.intervalMs}ms: ${describeError(err)}`);
    });
  }

  /** One pass as of `now` (default: the clock); waits for a pass already under way first. */
  async tickOnce(now: number = this.options.now()): Promise<SchedulerReport> {
    while (this.pass) await this.pass.catch(() => undefined);
    const pass = this.run(now);
    this.pass = pass;
    try {
      return await pass;
    } finally {
      if (this.pass === pass) this.pass = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.wake();
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.pass?.catch(() => undefined);
  }

  private async run(now: number): Promise<SchedulerReport> {
    const report: SchedulerReport = { created: [], skipped: {} };
    const previous = await this.options.store.recordSchedulerPass(new Date(now));
    if (this.downtime === undefined) {
      const { startedAt, intervalMs } = this.options;
      const downAfterMs = Math.max(3 * intervalMs, MIN_DOWN_MS);
      this.downtime = previous && startedAt - previous.getTime() > downAfterMs ? { from: previous, until: new Date(startedAt) } : null;
      if (this.downtime) this.options.logger.info({ since: previous }, `no scheduler ran from ${previous!.toISOString()} to this server's start: catching up`);
    }
    for (const flow of await this.options.store.listScheduledFlows()) {
      try {
        await this.schedule(flow, now, report);
      } catch (err) {
        // One flow's trouble must not stop the others' runs.
        this.options.logger.error({ err, flow: flow.name }, `could not schedule flow "${flow.name}": ${describeError(err)}`);
      }
    }
    if (report.created.length > 0) this.options.notifier.notify(RUNS_TOPIC);
    return report;
  }

  private async schedule(flow: FlowRecord, now: number, report: SchedulerReport): Promise<void> {
    const { store } = this.options;
    const state = await store.getScheduleState(flow.name);
    let wrote = false;
    for (const clock of flow.schedule) {
      const key = clockKey(clock);
      const cursor = new Date(state.cursors[key] ?? flow.createdAt);
      const decisions: SlotDecision[] = [];
      const skip = (n: number) => {
        if (n > 0) report.skipped[flow.name] = (report.skipped[flow.name] ?? 0) + n;
      };
      const run = this.runOf(flow, clock);
      let from = cursor;
      let to: Date;

      if (state.paused) {
        const passed = slotsAfter(clock, from, { until: new Date(now), limit: SLOTS_PER_PASS });
        decisions.push(...passed.map((slot) => ({ slot, outcome: "paused" as const })));
        skip(passed.length);
        to = passed.length === SLOTS_PER_PASS ? passed[passed.length - 1]! : new Date(now);
      } else {
        // Slots whose time came while no scheduler ran: the flow's catchUp decides. Without downtime, a slot the
        // cursor has not passed is simply made (and is due at once).
        const downUntil = this.downtime ? new Date(Math.min(now, this.options.startedAt - 1)) : undefined;
        const { newest: missed, total: missedTotal } =
          downUntil && from < downUntil ? newestSlots(clock, from, downUntil, TICKS_KEPT) : { newest: [], total: 0 };
        if (missedTotal > missed.length) {
          this.options.logger.warn({ flow: flow.name, clock: key }, `${missedTotal} slots of flow "${flow.name}" passed while the server was down; the newest ${missed.length} are recorded`);
          skip(missedTotal - missed.length);
        }
        const madeAhead =
          this.caughtUp.has(`${flow.name}\0${key}`) || !this.downtime
            ? []
            : await store.listUnclaimedSlotRuns(flow.name, key, this.downtime.from, this.downtime.until);
        this.caughtUp.add(`${flow.name}\0${key}`);
        const keep = catchUpKeeps(flow.catchUp, [...missed.map((slot) => slot.getTime()), ...madeAhead.map((r) => Date.parse(r.scheduledStart))]);
        for (const slot of missed) decisions.push(keep.has(slot.getTime()) ? { slot, outcome: "created", run } : { slot, outcome: "missed" });
        const dropped = madeAhead.filter((r) => !keep.has(Date.parse(r.scheduledStart))).map((r) => r.id);
        if (dropped.length > 0) {
          skip((await store.dropSlotRuns(dropped, "missed")).length);
          wrote = true;
        }
        skip(missed.length - missed.filter((slot) => keep.has(slot.getTime())).length);
        if (missed.length > 0) from = missed[missed.length - 1]!;

        // What is to come: up to AHEAD_MS ahead, and at least the next slot.
        const until = new Date(Math.max(now + AHEAD_MS, from.getTime()));
        const upcoming = slotsAfter(clock, from, { until, limit: SLOTS_PER_PASS });
        // Nothing made ahead (the cursor has not passed now) and nothing in the window: a far clock.
        if (upcoming.length === 0 && from.getTime() <= now) {
          const next = nextSlot(clock, until);
          if (next) upcoming.push(next);
        }
        decisions.push(...upcoming.map((slot) => ({ slot, outcome: "created" as const, run })));
        const last = upcoming[upcoming.length - 1];
        to = upcoming.length === SLOTS_PER_PASS || (last && last > until) ? last! : until;
      }
      if (decisions.length === 0 && to <= cursor) continue;
      const made = await store.applySlots({ flow, clock: key, paused: state.paused, decisions, cursor: to });
      if (!made) {
        // Paused, resumed or registered again by another server since this pass read it: its next pass decides.
        this.options.logger.debug({ flow: flow.name, clock: key }, "schedule changed during the pass; left to the next one");
        continue;
      }
      report.created.push(...made);
      for (const decision of decisions) this.options.metrics?.schedulerSlots.inc({ outcome: decision.outcome });
      for (const run of made) this.options.metrics?.runsCreated.inc({ flow: run.flowName, source: "scheduler" });
      wrote ||= decisions.length > 0;
    }
    if (wrote) await store.pruneScheduleTicks(flow.name, TICKS_KEPT, new Date(now));
  }

  /** The run a clock's slot makes: the flow's parameter defaults under the clock's, the clock's labels or the flow's. */
  private runOf(flow: FlowRecord, clock: ClockSpec): NonNullable<SlotDecision["run"]> {
    return { flow, parameters: { ...clock.parameters }, labels: clock.labels ?? flow.labels };
  }
}

/** The newest `keep` slots in (after, until], and how many there are in all, without holding them all. */
function newestSlots(clock: ClockSpec, after: Date, until: Date, keep: number): { newest: Date[]; total: number } {
  const chunk = 10_000;
  let newest: Date[] = [];
  let total = 0;
  for (let from = after; ; ) {
    const slots = slotsAfter(clock, from, { until, limit: chunk });
    total += slots.length;
    newest = [...newest, ...slots].slice(-keep);
    if (slots.length < chunk) return { newest, total };
    from = slots[slots.length - 1]!;
  }
}

/** Which missed slots (ms) run: none, the newest, or all (at most CATCH_UP_MAX, the newest). */
function catchUpKeeps(catchUp: FlowRecord["catchUp"], slots: readonly number[]): Set<number> {
  if (slots.length === 0 || catchUp === "none") return new Set();
  const newestFirst = [...slots].sort((a, b) => b - a);
  return new Set(catchUp === "latest" ? newestFirst.slice(0, 1) : newestFirst.slice(0, CATCH_UP_MAX));
}

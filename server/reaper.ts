/**
 * The reaper: recovery inside the server, so that no run is lost and none runs twice. Every
 * `reaperIntervalMs` it runs one pass of the rules in server/reaper-pass.ts over runs whose attempt is lost
 * (an agent that stopped renewing a lease, a container gone silent, a cancellation nobody confirms).
 *
 * Passes never overlap: a tick that finds one under way is skipped, and `reapOnce` (what tests call, with
 * their own clock) waits for it. `stop()` clears the timer and waits for the pass under way, so the store can
 * be closed right after.
 *
 * A pass that fails (the store unreachable: a database restarting) means the server could not hear anyone
 * either: heartbeats and lease renewals were refused meanwhile. So silence is counted afresh from the first
 * pass that succeeds after it, as after the server's own start: an outage never makes a container or an
 * agent look lost.
 */
import { describeError } from "../wire/errors.js";
import { ReaperPass, type ReaperOptions, type ReapReport } from "./reaper-pass.js";

export type { ReaperOptions, ReapReport } from "./reaper-pass.js";

export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<ReapReport> | undefined;
  private stopped = false;
  /** Since when the server has heard everyone (its start, or the store's return after an outage). */
  private hearingSince: number;
  /** Set when a pass failed: the next pass counts silence from its own time. */
  private outage = false;

  constructor(private readonly options: ReaperOptions) {
    this.hearingSince = options.startedAt;
  }

  /** Arms the interval; a no-op when reaperIntervalMs is 0 or after stop(). */
  start(): void {
    const intervalMs = this.options.timings.reaperIntervalMs;
    if (this.stopped || this.timer !== undefined || intervalMs <= 0) return;
    this.timer = setInterval(() => this.tick(intervalMs), intervalMs);
    this.timer.unref();
  }

  /** One pass of every rule as of `now` (default: the clock); waits for a pass already under way first. */
  async reapOnce(now: number = this.options.now()): Promise<ReapReport> {
    // Only waiting for it to end: its failure belongs to whoever started it.
    while (this.pass) await this.pass.catch(() => undefined);
    const outage = this.outage;
    // After a failed pass, the store must answer before the outage counts as over (a pass that acts on
    // nothing, as the next one does, would not ask it).
    const pass = outage
      ? this.options.store.listAgents().then(() => new ReaperPass({ ...this.options, startedAt: now }, now).run())
      : new ReaperPass({ ...this.options, startedAt: this.hearingSince }, now).run();
    this.pass = pass;
    try {
      const report = await pass;
      if (outage) {
        this.outage = false;
        this.hearingSince = now;
        this.options.logger.info("the store answers again: silence is counted from now, as heartbeats could not be recorded meanwhile");
      }
      return report;
    } catch (err) {
      this.outage = true;
      throw err;
    } finally {
      if (this.pass === pass) this.pass = undefined;
    }
  }

  /** Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    // Its failure was logged by the tick, or goes to the reapOnce caller.
    await this.pass?.catch(() => undefined);
  }

  private tick(intervalMs: number): void {
    if (this.pass || this.stopped) return;
    this.reapOnce().catch((err: unknown) => {
      this.options.logger.error({ err }, `reaper pass failed, next in ${intervalMs}ms: ${describeError(err)}`);
    });
  }
}

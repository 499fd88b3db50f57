/**
 * The agent's watch on its Docker engine. While the engine does not answer, the agent claims nothing and
 * reports itself unhealthy; the first caller of `whenBack()` starts probing with backoff and every caller
 * waits for the same recovery (single flight).
 */
import type { Logger } from "pino";
import type { ContainerEngine } from "../engine/port.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError, isBerthError } from "../wire/errors.js";

/** How long one engine check answers for every caller: enough for the checks of one heartbeat to share it. */
const CHECK_REUSE_MS = 250;

export class EngineWatch {
  private recovery: Promise<void> | undefined;

  constructor(
    private readonly engine: ContainerEngine,
    private readonly log: () => Logger,
    /** Aborted when the agent stops: probing ends with it. */
    private readonly stopping: AbortSignal,
    /** Called when the engine is lost and when it is back, so the agent can tell the server at once. */
    private readonly onChange: () => void,
  ) {}

  /** False from the moment the engine failed a call until it answers a ping again. */
  get healthy(): boolean {
    return this.recovery === undefined;
  }

  /**
   * Pings the engine (when it is thought healthy); a failure starts recovery. Callers within CHECK_REUSE_MS of
   * a check share it: a heartbeat checks the engine, then its health report would check it again.
   */
  check(): Promise<void> {
    if (!this.healthy) return Promise.resolve();
    const last = this.lastCheck;
    // A check still under way answers for everyone; a finished one for CHECK_REUSE_MS after its answer.
    if (last && (last.answeredAt === undefined || Date.now() - last.answeredAt < CHECK_REUSE_MS)) return last.done;
    const check: { answeredAt?: number; done: Promise<void> } = { done: Promise.resolve() };
    check.done = this.ping().finally(() => (check.answeredAt = Date.now()));
    this.lastCheck = check;
    return check.done;
  }

  private lastCheck: { answeredAt?: number; done: Promise<void> } | undefined;

  private async ping(): Promise<void> {
    try {
      await this.engine.ping(this.stopping);
    } catch (err) {
      if (isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")) void this.whenBack();
      else if (!isBerthError(err, "BERTH_E_ABORTED")) this.log().warn({ err }, "Docker engine check failed");
    }
  }

  /** Resolves when the engine answers again (or the agent stops). */
  whenBack(): Promise<void> {
    this.recovery ??= this.probe().finally(() => {
      this.recovery = undefined;
      this.onChange();
    });
    return this.recovery;
  }

  private async probe(): Promise<void> {
    this.log().warn("the Docker engine is not answering: claiming nothing until it does");
    this.onChange();
    for (let attempt = 0; !this.stopping.aborted; attempt++) {
      try {
        await this.engine.ping(this.stopping);
        this.log().info("the Docker engine answers again: claiming");
        return;
      } catch (err) {
        const delay = backoffMs(attempt, { maxMs: 5_000 });
        this.log().debug(`still no Docker engine (${describeError(err)}); probing again in ${delay} ms`);
        await sleep(delay, this.stopping);
      }
    }
  }
}

/**
 * The agent's watch on its Docker engine. While the engine does not answer, the agent claims nothing and
 * reports itself unhealthy; the first caller of `whenBack()` starts probing with backoff and every caller
 * waits for the same recovery (single flight).
 */
import type { Logger } from "pino";
import type { ContainerEngine } from "../engine/port.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError, isBerthError } from "../wire/errors.js";

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

  /** Pings the engine (when it is thought healthy); a failure starts recovery. */
  async check(): Promise<void> {
    if (!this.healthy) return;
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

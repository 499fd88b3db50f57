/**
 * Records the engine's start, die and destroy events of every container berth manages, for as long as a
 * suite runs, so that tests can check when each attempt of a run was alive.
 */
import { OWNER_LABEL, type ContainerEngine, type ContainerEvent } from "../../engine/port.js";

export class ContainerTimeline {
  /** In the order they arrived. */
  readonly events: ContainerEvent[] = [];
  /** Why the stream ended before `stop()`; the timeline then has a gap and proves nothing after it. */
  failure: unknown;
  private readonly controller = new AbortController();
  private readonly reading: Promise<void>;

  constructor(engine: ContainerEngine) {
    const stream = engine.followContainerEvents({ labels: { [OWNER_LABEL]: "true" }, signal: this.controller.signal });
    this.reading = (async () => {
      for await (const event of stream) this.events.push(event);
    })().catch((err: unknown) => {
      this.failure = err;
    });
  }

  /** Ends the recording once the events read so far are in. Idempotent. */
  async stop(): Promise<void> {
    this.controller.abort();
    await this.reading;
  }
}

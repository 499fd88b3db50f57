/**
 * The ids of the images this agent's runs name, remembered while the engine says nothing changed. Every
 * run asks which image its reference names (images.ts: is it here? warm-pool.ts: which warm containers run
 * it?), and asking the engine costs a round trip on the run's clock. So the answers are kept while the
 * agent follows the engine's image events: every image event (a tag moved or removed, an image pulled,
 * loaded, imported or deleted) forgets them all, so does the agent's own pull or build (whose event may
 * come after the pull's answer), and none is kept longer than IMAGE_ID_TTL_MS (some engines send no event
 * for some tag moves: BuildKit builds on several Docker versions). While the event stream is not subscribed
 * (starting, broken, the engine away) nothing is remembered and every lookup asks the engine.
 *
 * `berth register` tags a flow's image (a fixed `imageTag` moves) before it registers the new version, and
 * the engine publishes the tag event before it answers the tag: a run of that version, created after its
 * registration, meets the new id once that event has reached the agent, milliseconds later.
 */
import type { Logger } from "pino";
import type { ContainerEngine } from "../engine/port.js";
import { backoffMs, sleep } from "../shared/backoff.js";
import { describeError } from "../wire/errors.js";

/** References remembered at most; past it, all are forgotten (an agent's runs name a few images, not thousands). */
const MAX_REMEMBERED = 1_000;

/** How long an id is remembered at most, events or not. */
export const IMAGE_ID_TTL_MS = 5_000;

export class ImageIds {
  private readonly ids = new Map<string, { id: string; at: number }>();
  /** Bumped by every event: a lookup that started before one must not remember what it read. */
  private generation = 0;
  private subscribed = false;

  constructor(
    private readonly engine: ContainerEngine,
    /** Where a broken event stream is told (debug); follow() is the only writer. */
    private readonly log?: () => Logger,
    /** Milliseconds since the epoch; a test's clock. */
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the engine's image events are followed now (answers are remembered only then). */
  get following(): boolean {
    return this.subscribed;
  }

  /**
   * The id of the image `ref` names on the engine, or undefined when there is none (or the engine does not
   * tell image ids: it only answers whether an image exists).
   */
  async lookup(ref: string): Promise<string | undefined> {
    if (!this.engine.imageId) return undefined;
    if (this.subscribed) {
      const known = this.ids.get(ref);
      if (known !== undefined && this.now() - known.at < IMAGE_ID_TTL_MS) return known.id;
    }
    const generation = this.generation;
    const asked = this.now();
    const id = await this.engine.imageId(ref);
    if (id !== undefined && this.subscribed && generation === this.generation) {
      if (this.ids.size >= MAX_REMEMBERED) this.ids.clear();
      this.ids.set(ref, { id, at: asked });
    }
    return id;
  }

  /** The agent pulled or built an image itself: what it remembered may be out of date before the event says so. */
  changed(): void {
    this.forget();
  }

  /**
   * Follows the engine's image events until `signal` aborts, subscribing again (with backoff) whenever the
   * stream breaks. Never rejects. Does nothing on an engine that has no image events or image ids.
   */
  async follow(signal: AbortSignal): Promise<void> {
    const { engine } = this;
    if (!engine.followImageEvents || !engine.imageId) return;
    for (let failures = 0; !signal.aborted; ) {
      try {
        const events = engine.followImageEvents({
          signal,
          onSubscribed: () => {
            this.forget();
            this.subscribed = true;
            failures = 0;
          },
        });
        for await (const _event of events) this.forget();
      } catch (err) {
        this.log?.().debug(`image events: ${describeError(err)}; image ids are asked for each run until they follow again`);
      }
      this.subscribed = false;
      this.forget();
      if (!signal.aborted) await sleep(backoffMs(failures++), signal);
    }
  }

  private forget(): void {
    this.generation++;
    this.ids.clear();
  }
}

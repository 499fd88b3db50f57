/**
 * The agent's image ids (agent/image-ids.ts): remembered only while the engine's image events are followed,
 * forgotten by any of them, and never from a lookup that an event overtook.
 */
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { IMAGE_ID_TTL_MS, ImageIds } from "../agent/image-ids.js";
import type { ContainerEngine, ImageEvent, ImageEventsOptions } from "../engine/port.js";
import { BerthError } from "../wire/errors.js";
import { until } from "./support/wait.js";

/** An engine whose image ids and image events the test sets; it counts the lookups that reach it. */
class FakeEngine {
  readonly ids = new Map<string, string>();
  asked = 0;
  /** Resolves the lookup in flight, when the test holds lookups (`hold`). */
  release: (() => void) | undefined;
  hold = false;
  private push: ((event: ImageEvent | Error) => void) | undefined;
  subscriptions = 0;
  /** Events the follower has read (and acted on: it asks for the next one only after). */
  consumed = 0;

  imageId = async (ref: string): Promise<string | undefined> => {
    this.asked++;
    const answer = this.ids.get(ref);
    if (this.hold) await new Promise<void>((resolve) => (this.release = resolve));
    return answer;
  };

  followImageEvents = ({ signal, onSubscribed }: ImageEventsOptions): AsyncIterable<ImageEvent> => {
    const queue: Array<ImageEvent | Error> = [];
    let wake: (() => void) | undefined;
    this.push = (event) => {
      queue.push(event);
      wake?.();
    };
    const self = this;
    return (async function* () {
      self.subscriptions++;
      onSubscribed?.();
      while (!signal.aborted) {
        const next = queue.shift();
        if (next instanceof Error) throw next;
        if (next) {
          yield next;
          self.consumed++;
        } else await new Promise<void>((resolve) => (wake = resolve));
      }
    })();
  };

  /** An image event, as the engine would send it. */
  event(action = "tag"): void {
    this.push!({ action, id: "sha256:any" });
  }

  /** The event stream breaks (the engine restarted). */
  breakStream(): void {
    this.push!(new BerthError("BERTH_E_DOCKER_UNAVAILABLE", "the engine ended the event stream"));
  }
}

describe("ImageIds", () => {
  const stops: AbortController[] = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop.abort();
  });

  const following = async (engine: FakeEngine, now: () => number = Date.now) => {
    const ids = new ImageIds(engine as unknown as ContainerEngine, () => pino({ level: "silent" }), now);
    const stop = new AbortController();
    stops.push(stop);
    void ids.follow(stop.signal);
    await until("the image events to be followed", () => ids.following);
    return ids;
  };

  it("asks the engine every time while it does not follow image events", async () => {
    const engine = new FakeEngine();
    engine.ids.set("flow:1", "sha256:a");
    const ids = new ImageIds(engine as unknown as ContainerEngine, () => pino({ level: "silent" }));
    expect(await ids.lookup("flow:1")).toBe("sha256:a");
    expect(await ids.lookup("flow:1")).toBe("sha256:a");
    expect(engine.asked).toBe(2);
  });

  it("remembers an id while nothing changes, and forgets every id at any image event", async () => {
    const engine = new FakeEngine();
    engine.ids.set("flow:1", "sha256:a");
    const ids = await following(engine);
    expect(await ids.lookup("flow:1")).toBe("sha256:a");
    expect(await ids.lookup("flow:1")).toBe("sha256:a");
    expect(engine.asked).toBe(1);

    // The tag moves: the engine says so, and the next lookup asks again.
    engine.ids.set("flow:1", "sha256:b");
    engine.event("tag");
    await until("the event to be read", async () => (await ids.lookup("flow:1")) === "sha256:b");
    const asked = engine.asked;
    expect(await ids.lookup("flow:1")).toBe("sha256:b");
    expect(engine.asked).toBe(asked);
  });

  it("remembers an id for a few seconds at most, events or not (some engines send none for some tag moves)", async () => {
    const engine = new FakeEngine();
    engine.ids.set("flow:1", "sha256:a");
    let now = 1_000_000;
    const ids = await following(engine, () => now);
    await ids.lookup("flow:1");
    now += IMAGE_ID_TTL_MS - 1;
    await ids.lookup("flow:1");
    expect(engine.asked).toBe(1);
    now += 1;
    await ids.lookup("flow:1");
    expect(engine.asked).toBe(2);
  });

  it("forgets what it remembered when the agent pulled or built an image itself", async () => {
    const engine = new FakeEngine();
    engine.ids.set("flow:1", "sha256:a");
    const ids = await following(engine);
    await ids.lookup("flow:1");
    engine.ids.set("flow:1", "sha256:b");
    ids.changed();
    expect(await ids.lookup("flow:1")).toBe("sha256:b");
  });

  it("does not remember what a lookup read before an event that came while it waited", async () => {
    const engine = new FakeEngine();
    engine.ids.set("flow:1", "sha256:a");
    const ids = await following(engine);
    engine.hold = true;
    const reading = ids.lookup("flow:1");
    await until("the lookup to reach the engine", () => engine.release !== undefined);
    // The tag moves while the engine's answer (the old id) is on its way.
    engine.ids.set("flow:1", "sha256:b");
    engine.event("tag");
    await until("the event to be read", () => engine.consumed === 1);
    engine.release!();
    expect(await reading).toBe("sha256:a");
    engine.hold = false;
    expect(await ids.lookup("flow:1")).toBe("sha256:b");
  });

  it("forgets and asks the engine while the event stream is broken, then follows it again", async () => {
    const engine = new FakeEngine();
    engine.ids.set("flow:1", "sha256:a");
    const ids = await following(engine);
    await ids.lookup("flow:1");
    engine.breakStream();
    await until("the stream to be dropped", () => !ids.following);
    const asked = engine.asked;
    await ids.lookup("flow:1");
    expect(engine.asked).toBe(asked + 1);
    await until("the stream to be followed again", () => ids.following, { timeoutMs: 5_000 });
    expect(engine.subscriptions).toBe(2);
  });

  it("has nothing to remember on an engine without image ids", async () => {
    const ids = new ImageIds({ imageExists: async () => true } as unknown as ContainerEngine, () => pino({ level: "silent" }));
    const stop = new AbortController();
    await ids.follow(stop.signal);
    expect(ids.following).toBe(false);
    expect(await ids.lookup("flow:1")).toBeUndefined();
  });
});

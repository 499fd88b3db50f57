import { describe, expect, it } from "vitest";
import { longPoll } from "../server/long-poll.js";
import { LocalNotifier } from "../server/notifier.js";

describe("LocalNotifier", () => {
  it("resolves true on the next notify and removes its listener", async () => {
    const notifier = new LocalNotifier();
    const woke = notifier.next("t", new AbortController().signal);
    expect(notifier.waiting("t")).toBe(1);
    notifier.notify("other");
    notifier.notify("t");
    expect(await woke).toBe(true);
    expect(notifier.waiting("t")).toBe(0);
  });

  it("resolves false on abort and on close", async () => {
    const notifier = new LocalNotifier();
    const controller = new AbortController();
    const aborted = notifier.next("t", controller.signal);
    const closed = notifier.next("t", new AbortController().signal);
    controller.abort();
    expect(await aborted).toBe(false);
    await notifier.close();
    await notifier.close();
    expect(await closed).toBe(false);
    expect(await notifier.next("t", new AbortController().signal)).toBe(false);
    expect(notifier.waiting("t")).toBe(0);
  });
});

describe("longPoll", () => {
  it("retries on each notify until the attempt yields", async () => {
    const notifier = new LocalNotifier();
    let attempts = 0;
    const result = longPoll({
      notifier,
      topic: "t",
      waitMs: 30_000,
      signals: [],
      attempt: async () => (++attempts >= 3 ? "done" : undefined),
    });
    for (let i = 0; i < 2; i++) {
      while (notifier.waiting("t") === 0) await new Promise((resolve) => setImmediate(resolve));
      notifier.notify("t");
    }
    expect(await result).toBe("done");
    expect(attempts).toBe(3);
  });

  it("stops, without another attempt, when the notifier closes", async () => {
    const notifier = new LocalNotifier();
    let attempts = 0;
    const result = longPoll({ notifier, topic: "t", waitMs: 30_000, signals: [], attempt: async () => void attempts++ });
    while (notifier.waiting("t") === 0) await new Promise((resolve) => setImmediate(resolve));
    await notifier.close();
    expect(await result).toBeUndefined();
    expect(attempts).toBe(1);
  });

  it("makes one attempt and no wait when waitMs is 0", async () => {
    const notifier = new LocalNotifier();
    expect(await longPoll({ notifier, topic: "t", waitMs: 0, signals: [], attempt: async () => undefined })).toBeUndefined();
    expect(notifier.waiting("t")).toBe(0);
  });
});

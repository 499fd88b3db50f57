/**
 * The agent's watch on its engine, on a fake engine: checks close together share one ping (a heartbeat and
 * the health report it carries used to ping twice), and a failed ping starts recovery.
 */
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { EngineWatch } from "../agent/engine-watch.js";
import type { ContainerEngine } from "../engine/port.js";
import { BerthError } from "../wire/errors.js";

function watch(ping: () => Promise<void>) {
  const engine = { ping } as unknown as ContainerEngine;
  return new EngineWatch(engine, () => pino({ level: "silent" }), new AbortController().signal, () => {});
}

describe("EngineWatch", () => {
  afterEach(() => vi.useRealTimers());

  it("answers checks close together with one ping, and pings again once that one is a quarter of a second old", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    let pings = 0;
    const w = watch(async () => void pings++);
    await Promise.all([w.check(), w.check()]);
    await w.check();
    expect(pings).toBe(1);
    vi.setSystemTime(Date.now() + 251);
    await w.check();
    expect(pings).toBe(2);
    expect(w.healthy).toBe(true);
  });

  it("shares a slow ping with every check made while it is under way, and counts the quarter second from its answer", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    let pings = 0;
    let answer = () => {};
    const w = watch(() => {
      pings++;
      return new Promise<void>((resolve) => (answer = resolve));
    });
    const first = w.check();
    vi.setSystemTime(Date.now() + 2_000);
    const second = w.check();
    answer();
    await Promise.all([first, second]);
    await w.check();
    expect(pings).toBe(1);
  });

  it("starts recovery when the engine does not answer, and is healthy again once it does", async () => {
    let down = true;
    const w = watch(async () => {
      if (down) throw new BerthError("BERTH_E_DOCKER_UNAVAILABLE", "no engine");
    });
    await w.check();
    expect(w.healthy).toBe(false);
    down = false;
    await w.whenBack();
    expect(w.healthy).toBe(true);
  });
});

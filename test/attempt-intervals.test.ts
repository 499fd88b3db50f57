import { describe, expect, it } from "vitest";
import { EPOCH_LABEL, FLOW_RUN_LABEL, OWNER_LABEL, type ContainerAction, type ContainerEvent } from "../engine/port.js";
import { attemptIntervals, describeInterval, overlappingAttempts } from "./support/attempt-intervals.js";

const SECOND = 1_000_000_000n;
const T0 = 1_796_140_916n * SECOND;

/** An event of container `id`, of run `run` at lease epoch `epoch`, `at` ns after T0. */
function event(action: ContainerAction, id: string, run: string, epoch: number | undefined, at: bigint): ContainerEvent {
  const labels: Record<string, string> = { [OWNER_LABEL]: "true", [FLOW_RUN_LABEL]: run };
  if (epoch !== undefined) labels[EPOCH_LABEL] = String(epoch);
  return { action, id, name: `berth-run-${run}`, labels, timeNano: T0 + at };
}

/** A container's whole life: start, die, destroy. */
function life(id: string, run: string, epoch: number, from: bigint, to: bigint): ContainerEvent[] {
  return [event("start", id, run, epoch, from), event("die", id, run, epoch, to), event("destroy", id, run, epoch, to + 1n)];
}

describe("attemptIntervals", () => {
  it("makes one interval per start, from the start to the die", () => {
    const intervals = attemptIntervals([...life("c1", "r1", 1, 0n, SECOND), event("start", "c2", "r1", 2, 2n * SECOND)]);
    expect(intervals).toEqual([
      { flowRunId: "r1", epoch: 1, containerId: "c1", start: T0, end: T0 + SECOND },
      { flowRunId: "r1", epoch: 2, containerId: "c2", start: T0 + 2n * SECOND, end: undefined },
    ]);
  });

  it("ignores containers that are not a flow run's, and a container removed without ever starting", () => {
    const other: ContainerEvent = { action: "start", id: "x", name: "x", labels: { [OWNER_LABEL]: "true" }, timeNano: T0 };
    expect(attemptIntervals([other, event("destroy", "c1", "r1", 1, 0n)])).toEqual([]);
  });

  it("closes an interval at the destroy when the die is missing", () => {
    const [interval] = attemptIntervals([event("start", "c1", "r1", 1, 0n), event("destroy", "c1", "r1", 1, 5n)]);
    expect(interval?.end).toBe(T0 + 5n);
  });
});

describe("overlappingAttempts", () => {
  it("finds none when each epoch dies before the next starts, even by a nanosecond or at the same one", () => {
    const events = [...life("c1", "r1", 1, 0n, SECOND), ...life("c2", "r1", 2, SECOND, 2n * SECOND), ...life("c3", "r1", 3, 2n * SECOND + 1n, 3n * SECOND)];
    expect(overlappingAttempts(attemptIntervals(events))).toEqual([]);
  });

  it("reports two epochs of one run alive together, however briefly", () => {
    const events = [...life("c1", "r1", 1, 0n, SECOND), ...life("c2", "r1", 2, SECOND - 1n, 2n * SECOND)];
    const overlaps = overlappingAttempts(attemptIntervals(events));
    expect(overlaps).toHaveLength(1);
    expect(overlaps[0]).toMatchObject({ flowRunId: "r1", earlier: { epoch: 1, containerId: "c1" }, later: { epoch: 2, containerId: "c2" } });
  });

  it("reports an older epoch started while a newer one ran, whatever the order the events arrived in", () => {
    const events = [...life("c2", "r1", 2, 0n, 3n * SECOND), ...life("c1", "r1", 1, SECOND, 2n * SECOND)];
    expect(overlappingAttempts(attemptIntervals(events)).map((o) => [o.earlier.epoch, o.later.epoch])).toEqual([[2, 1]]);
  });

  it("counts a container never seen to die as alive from then on", () => {
    const events = [event("start", "c1", "r1", 1, 0n), ...life("c2", "r1", 2, 10n * SECOND, 11n * SECOND)];
    expect(overlappingAttempts(attemptIntervals(events))).toHaveLength(1);
  });

  it("counts a container seen to die but not to start as alive since before the events began", () => {
    const events = [...life("c2", "r1", 2, 0n, SECOND), event("die", "c1", "r1", 1, 2n * SECOND)];
    expect(overlappingAttempts(attemptIntervals(events))).toHaveLength(1);
  });

  it("counts a container without an epoch label as a different attempt from any other", () => {
    const events = [...life("c1", "r1", 1, 0n, 2n * SECOND), event("start", "c2", "r1", undefined, SECOND)];
    expect(overlappingAttempts(attemptIntervals(events))).toHaveLength(1);
  });

  it("compares only containers of the same run and of different epochs", () => {
    const events = [...life("c1", "r1", 1, 0n, 2n * SECOND), ...life("c2", "r2", 2, SECOND, 3n * SECOND), ...life("c3", "r1", 1, SECOND, 3n * SECOND)];
    expect(overlappingAttempts(attemptIntervals(events))).toEqual([]);
  });
});

describe("describeInterval", () => {
  it("shows the engine's clock to the nanosecond", () => {
    const [interval] = attemptIntervals([event("start", "0123456789abcdef", "r1", 2, 123_456_789n)]);
    expect(describeInterval(interval!)).toMatch(/^epoch 2 \(0123456789ab\) \d\d:\d\d:\d\d\.123456789 → still alive$/);
  });
});

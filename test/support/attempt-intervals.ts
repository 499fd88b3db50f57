/**
 * When each attempt of a flow run was alive, from the engine's container events rather than from what the
 * server accepted (the server refuses a superseded attempt's writes, so it cannot show an overlap). An
 * attempt is a container carrying the run's id and its lease epoch in labels; it is alive from its start
 * event to its die event.
 */
import { EPOCH_LABEL, FLOW_RUN_LABEL, type ContainerEvent } from "../../engine/port.js";

export interface AttemptInterval {
  flowRunId: string;
  /** NaN when the container has no readable epoch label: such a container overlaps with every other. */
  epoch: number;
  containerId: string;
  /** The engine's stamp of the start event, in ns; 0n when the die was seen but not the start. */
  start: bigint;
  /** The engine's stamp of the die event, in ns; undefined while the container was alive at the last event read. */
  end: bigint | undefined;
}

export interface Overlap {
  flowRunId: string;
  earlier: AttemptInterval;
  later: AttemptInterval;
}

/**
 * One interval per start of a flow-run container. Events are taken in the order they arrived, which for one
 * container is the order the engine logged them. A die without a seen start counts as alive since forever,
 * so that a gap in the events can only add overlaps, never hide one.
 */
export function attemptIntervals(events: readonly ContainerEvent[]): AttemptInterval[] {
  const intervals: AttemptInterval[] = [];
  const alive = new Map<string, AttemptInterval>();
  const started = new Set<string>();
  for (const event of events) {
    const flowRunId = event.labels[FLOW_RUN_LABEL];
    if (flowRunId === undefined) continue;
    const open = alive.get(event.id);
    if (event.action === "start") {
      if (open) continue;
      const interval: AttemptInterval = { flowRunId, epoch: epochOf(event), containerId: event.id, start: event.timeNano, end: undefined };
      intervals.push(interval);
      alive.set(event.id, interval);
      started.add(event.id);
    } else if (open) {
      // A destroy closes a container whose die went missing; after a die it finds nothing open.
      open.end = event.timeNano;
      alive.delete(event.id);
    } else if (event.action === "die" && !started.has(event.id)) {
      intervals.push({ flowRunId, epoch: epochOf(event), containerId: event.id, start: 0n, end: event.timeNano });
    }
  }
  return intervals;
}

/** Pairs of containers of one run, of different epochs, that were alive at the same time. */
export function overlappingAttempts(intervals: readonly AttemptInterval[]): Overlap[] {
  const overlaps: Overlap[] = [];
  for (const [flowRunId, run] of byRun(intervals)) {
    for (let i = 0; i < run.length; i++) {
      for (let j = i + 1; j < run.length; j++) {
        const [earlier, later] = [run[i]!, run[j]!];
        if (earlier.epoch === later.epoch) continue;
        // Touching ends do not overlap: a die and a start stamped in the same nanosecond are not two lives.
        if (earlier.start < endOf(later) && later.start < endOf(earlier)) overlaps.push({ flowRunId, earlier, later });
      }
    }
  }
  return overlaps;
}

/** Intervals grouped by run, each group ordered by start. */
export function byRun(intervals: readonly AttemptInterval[]): Map<string, AttemptInterval[]> {
  const runs = new Map<string, AttemptInterval[]>();
  for (const interval of intervals) runs.set(interval.flowRunId, [...(runs.get(interval.flowRunId) ?? []), interval]);
  for (const run of runs.values()) run.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  return runs;
}

/** "epoch 2 (3f2a9c1b04de) 16:04:28.123456789 → 16:04:29.000000001", for failure messages and the report. */
export function describeInterval(interval: AttemptInterval): string {
  const end = interval.end === undefined ? "still alive" : clock(interval.end);
  const start = interval.start === 0n ? "before the events began" : clock(interval.start);
  return `epoch ${interval.epoch} (${interval.containerId.slice(0, 12)}) ${start} → ${end}`;
}

function endOf(interval: AttemptInterval): bigint {
  return interval.end ?? BigInt(Number.MAX_SAFE_INTEGER) * 1_000_000_000n;
}

function epochOf(event: ContainerEvent): number {
  const label = event.labels[EPOCH_LABEL];
  return label !== undefined && /^\d+$/.test(label) ? Number(label) : Number.NaN;
}

function clock(ns: bigint): string {
  const iso = new Date(Number(ns / 1_000_000n)).toISOString();
  return `${iso.slice(11, 23)}${String(ns % 1_000_000n).padStart(6, "0")}`;
}

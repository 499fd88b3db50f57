/**
 * What the chaos suites share: the shortened timings, and the checks that every run ended exactly once and
 * that no two attempts of one run were alive at the same time, as the Docker engine's own events show.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect } from "vitest";
import type { ApiClient } from "../../client/api-client.js";
import { FINAL_FLOW_RUN_STATES } from "../../wire/schema.js";
import { FLOW_RUN_LABEL, type ContainerEvent } from "../../engine/port.js";
import type { ContainerTimeline } from "./container-timeline.js";
import { attemptIntervals, byRun, describeInterval, overlappingAttempts, type AttemptInterval } from "./attempt-intervals.js";

/** Server timings shortened so that a lost agent or container is detected in seconds. */
export const SERVER_ENV = {
  BERTH_SERVER_LEASE: "3s",
  BERTH_SERVER_START_TIMEOUT: "15s",
  BERTH_SERVER_RUN_HEARTBEAT_TIMEOUT: "6s",
  BERTH_SERVER_CANCEL_TIMEOUT: "2s",
  BERTH_SERVER_REAPER_INTERVAL: "250ms",
  BERTH_AGENT_LOST_AFTER: "3s",
};
/** Agents heartbeat often, and so do their containers: a container is silent long before 6 s only if it is gone. */
export const AGENT_ENV = {
  BERTH_AGENT_HEARTBEAT_INTERVAL: "500ms",
  BERTH_AGENT_RUN_HEARTBEAT_INTERVAL: "1s",
  BERTH_AGENT_LEASE_TIMEOUT: "3s",
  BERTH_AGENT_STOP_GRACE: "2s",
};

export interface AttemptLine {
  epoch: number;
  at: number;
}

export function attemptLines(messages: string[]): AttemptLine[] {
  return messages.flatMap((m) => {
    const match = /^attempt epoch=(\d+) task=\S+ (?:start|end)=(\d+)$/.exec(m);
    return match ? [{ epoch: Number(match[1]), at: Number(match[2]) }] : [];
  });
}

export async function allLogs(client: ApiClient, id: string): Promise<string[]> {
  return (await client.getLogs(id, { after: 0, limit: 1000 })).logs.map((l) => l.message);
}

/**
 * Exactly one final state in each run's history. A run that succeeded must also have been seen in the
 * engine's events in a container of its final epoch: a timeline that misses containers would make the
 * overlap check pass for nothing.
 */
export async function assertEndedOnce(client: ApiClient, timeline: ContainerTimeline, ids: string[]): Promise<void> {
  const seen = attemptIntervals(timeline.events);
  for (const id of ids) {
    const history = await client.listFlowRunStates(id);
    const finals = history.filter((h) => FINAL_FLOW_RUN_STATES.includes(h.state));
    expect(finals.length, `${id}: ${history.map((h) => h.state).join(" → ")}`).toBe(1);
    const run = await client.getFlowRun(id);
    if (run.state !== "Success") continue;
    const epochs = seen.filter((i) => i.flowRunId === id).map((i) => i.epoch);
    expect(epochs, `${id}: succeeded at epoch ${run.epoch}, but the engine's events show no container of it`).toContain(run.epoch);
  }
}

/**
 * No two attempts of one run alive together, as the engine saw it: the [start, die] intervals of the
 * containers of different epochs of a run never overlap. The report lists every run that had more than
 * one attempt, with when each was alive.
 *
 * On one engine this is a guarantee, and the check guards what provides it. Every attempt's container is
 * named berth-run-<flowRunId>, and a name belongs to one container at a time: a new attempt's create
 * fails while an older container of the run exists, whatever its state, and the agent then force-removes
 * it. The engine removes a running container by killing it, logging its die, and only then destroying it
 * and freeing the name; so the older container's die is stamped before the newer one is even created,
 * let alone started. The check therefore fails if an attempt stops going through that name and that
 * removal (a name per attempt, or a create that leaves the older container running) in a scenario where
 * two attempts meet on the engine, as when a frozen agent wakes during the next attempt; and it reads the
 * engine, so a server that wrongly accepted a stale attempt cannot hide anything. What it cannot see is
 * agents on different engines: each engine holds its own berth-run-<flowRunId>, and there only the agent's
 * lease timeout and the server's fencing bound how long two attempts overlap. The exclusion also works
 * backwards: a stale attempt that arrives late removes the current attempt's container; the report shows
 * that as an older epoch started after a newer one.
 */
export function checkAttempts(timeline: ContainerTimeline, scenario: string, scenarioEvents: readonly ContainerEvent[], note: (line: string) => void): void {
  const all = attemptIntervals(timeline.events);
  // Runs with a container started here; a container of an earlier scenario may die during this one.
  const runsHere = new Set(scenarioEvents.filter((e) => e.action === "start").map((e) => e.labels[FLOW_RUN_LABEL]));
  const runs = byRun(all.filter((i) => runsHere.has(i.flowRunId)));
  const retried = [...runs].filter(([, intervals]) => new Set(intervals.map((i) => i.epoch)).size > 1);
  const gaps = retried.flatMap(([, intervals]) => handovers(intervals));
  const closest = gaps.length === 0 ? "" : `, closest handover ${formatMs(gaps.reduce((a, b) => (a < b ? a : b)))} from one epoch's die to the next's start`;
  note(`attempts (engine events), ${scenario}: ${[...runs.values()].flat().length} containers of ${runs.size} runs, ${retried.length} runs with more than one epoch${closest}`);
  for (const [id, intervals] of retried) {
    const late = intervals.some((i, n) => n > 0 && i.epoch < intervals[n - 1]!.epoch) ? " (an older epoch started after a newer one)" : "";
    note(`  run ${id}${late}: ${intervals.map(describeInterval).join("; ")}`);
  }
  const overlaps = overlappingAttempts(all).map((o) => `run ${o.flowRunId}: ${describeInterval(o.earlier)} overlaps ${describeInterval(o.later)}`);
  for (const overlap of overlaps) note(`  OVERLAP ${overlap}`);
  expect(timeline.failure, "the engine's event stream broke, so the timeline has a gap").toBeUndefined();
  expect(overlaps, "attempts of one run alive at the same time").toEqual([]);
}

/** For consecutive attempts of one run, ns from the die of one to the start of the next (negative: overlap). */
function handovers(intervals: AttemptInterval[]): bigint[] {
  return intervals.slice(1).flatMap((next, n) => {
    const previous = intervals[n]!;
    return previous.end === undefined || previous.epoch === next.epoch ? [] : [next.start - previous.end];
  });
}

function formatMs(ns: bigint): string {
  return `${(Number(ns) / 1e6).toFixed(3)} ms`;
}

/** Polls `check` (an API read, no side effects) until it holds, bounded. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Docker CLI for what the engine port does not offer (pause/unpause), used only to stage failures. */
export async function docker(...args: string[]): Promise<void> {
  await promisify(execFile)("docker", args, { timeout: 30_000 });
}

export function countBy(values: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}


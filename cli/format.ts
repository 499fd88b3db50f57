import type { RunPhases } from "../wire/schema.js";
import { BerthError } from "../wire/errors.js";

/** Renders rows as an aligned text table. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** `k=v` pairs; values that parse as JSON are taken as JSON (numbers, booleans, objects), else as strings. */
export function parseParams(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new BerthError("BERTH_E_USAGE", `--param "${pair}" is not of the form name=value`);
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // Not JSON: keep the text.
    }
    out[pair.slice(0, eq)] = value;
  }
  return out;
}

/** `K=V` pairs for environment variables. */
export function parseEnvPairs(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new BerthError("BERTH_E_USAGE", `--env "${pair}" is not of the form NAME=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function shortTime(iso: string | null | undefined): string {
  if (!iso) return "-";
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** One step of a run's timeline between two of its phases, as the summary line names it. */
export const PHASE_STEPS: [label: string, from: keyof RunPhases, to: keyof RunPhases][] = [
  ["queued", "queued", "claimed"],
  ["image", "claimed", "imageReady"],
  ["create", "imageReady", "containerCreated"],
  ["start", "containerCreated", "containerStarted"],
  ["runtime", "containerStarted", "runtimeUp"],
  ["flow", "runtimeUp", "flowFinished"],
  ["cleanup", "flowFinished", "cleanedUp"],
];

/** "queued 4 ms · image 2 ms (present) · create 35 ms · …": the steps whose both ends are known; undefined for none. */
export function formatPhases(phases: RunPhases): string | undefined {
  const parts: string[] = [];
  for (const [label, from, to] of PHASE_STEPS) {
    const start = phases[from];
    const end = phases[to];
    if (!start || !end) continue;
    const ms = Math.max(0, Date.parse(end) - Date.parse(start));
    const took = ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
    parts.push(`${label} ${took}${label === "image" && phases.imageSource ? ` (${phases.imageSource})` : ""}`);
  }
  return parts.length === 0 ? undefined : parts.join(" · ");
}

/** How long after a run ends a follower waits for its agent to finish sending the container's output. */
export const OUTPUT_SETTLE_MS = 10_000;

/**
 * Whether a final run's logs are complete: its agent ships the last of the container's output before it
 * cleans up (phases.cleanedUp), so a follower waits for that, or OUTPUT_SETTLE_MS after it saw the run end
 * (an agent that says nothing of its phases, or one that lost the run). A run that never had a container
 * has nothing more to come.
 */
export function outputSettled(run: { phases?: RunPhases | undefined }, finalSeenAt: number, now = Date.now()): boolean {
  const phases = run.phases;
  if (!phases || phases.containerStarted === null || phases.cleanedUp !== null) return true;
  return now - finalSeenAt >= OUTPUT_SETTLE_MS;
}

/**
 * The engine's event stream (GET /events): one JSON object per line. A container event's actor attributes
 * hold the container's labels mixed with a few keys of the engine's own, which are taken out here.
 */
import type { ContainerAction, ContainerEvent, ImageEvent } from "./port.js";

export const CONTAINER_ACTIONS: readonly ContainerAction[] = ["start", "die", "destroy"];

/** Attributes the engine adds next to the labels. A label with one of these keys cannot be told apart. */
const ENGINE_ATTRIBUTES = new Set(["name", "image", "exitCode", "signal", "execDuration"]);

interface EngineEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
}

/**
 * The container event on one line, or undefined for anything else (other types and actions, blank lines).
 * `timeNano` is read from the text: as a JSON number it would lose its last digits.
 */
export function parseContainerEvent(line: string): ContainerEvent | undefined {
  const text = line.trim();
  if (text === "") return undefined;
  const event = JSON.parse(text) as EngineEvent;
  const action = event.Action as ContainerAction | undefined;
  if (event.Type !== "container" || action === undefined || !CONTAINER_ACTIONS.includes(action)) return undefined;
  const attributes = event.Actor?.Attributes ?? {};
  const labels = Object.fromEntries(Object.entries(attributes).filter(([key]) => !ENGINE_ATTRIBUTES.has(key)));
  const nanos = /"timeNano":\s*(\d+)/.exec(text)?.[1];
  const exitCode = attributes.exitCode === undefined ? undefined : Number(attributes.exitCode);
  return {
    action,
    id: event.Actor?.ID ?? "",
    name: attributes.name ?? "",
    labels,
    timeNano: nanos === undefined ? BigInt(event.time ?? 0) * 1_000_000_000n : BigInt(nanos),
    ...(exitCode === undefined ? {} : { exitCode }),
  };
}

/** The image event on one line, or undefined for anything else. Every action counts: each may move a reference. */
export function parseImageEvent(line: string): ImageEvent | undefined {
  const text = line.trim();
  if (text === "") return undefined;
  const event = JSON.parse(text) as EngineEvent;
  if (event.Type !== "image" || event.Action === undefined) return undefined;
  return { action: event.Action, id: event.Actor?.ID ?? "" };
}

/** Docker's `since` parameter: seconds and nanoseconds since the Unix epoch. */
export function sinceParameter(epochMs: number): string {
  const seconds = Math.floor(epochMs / 1000);
  const nanos = Math.round((epochMs - seconds * 1000) * 1_000_000);
  return `${seconds}.${String(nanos).padStart(9, "0")}`;
}

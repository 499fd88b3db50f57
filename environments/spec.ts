/**
 * The serialized form of an environment: all the server ever learns of it. Metadata must survive JSON
 * unchanged, so it is checked here rather than silently mangled by JSON.stringify.
 */
import { BerthError } from "../wire/errors.js";
import type { EnvironmentSpec } from "../wire/schema.js";

export function environmentSpec(
  env: { labels: readonly string[]; metadata: Record<string, unknown> },
  type: EnvironmentSpec["type"],
  className: string,
): EnvironmentSpec {
  return { type, className, labels: [...env.labels], metadata: jsonMetadata(env.metadata) };
}

/** A deep copy of `metadata`, or BERTH_E_FLOW_DEFINITION naming the first value JSON cannot carry. */
export function jsonMetadata(metadata: Record<string, unknown>): Record<string, unknown> {
  const problem = findNonJson(metadata, "metadata", new Set());
  if (problem) throw new BerthError("BERTH_E_FLOW_DEFINITION", `environment metadata must be JSON-serializable: ${problem}`);
  return JSON.parse(JSON.stringify(metadata)) as Record<string, unknown>;
}

function findNonJson(value: unknown, path: string, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${path} is ${value}`;
    case "object": {
      if (value === null) return undefined;
      if (seen.has(value)) return `${path} refers back to itself`;
      const proto = Object.getPrototypeOf(value) as unknown;
      if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) {
        return `${path} is a ${(value as object).constructor?.name ?? "non-plain object"}, not a plain object`;
      }
      seen.add(value);
      for (const [key, item] of Object.entries(value)) {
        const problem = findNonJson(item, Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`, seen);
        if (problem) return problem;
      }
      seen.delete(value);
      return undefined;
    }
    default:
      return `${path} is ${typeof value === "undefined" ? "undefined" : `a ${typeof value}`}`;
  }
}

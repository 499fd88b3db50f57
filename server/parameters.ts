/**
 * A run's parameters checked against its flow's declared ones, at creation, so a typo fails in `berth run`
 * rather than minutes later inside a container. Defaults are left to the runner: the stored parameters are
 * exactly what the user gave.
 */
import { BerthError } from "../wire/errors.js";
import type { FlowRecord } from "../wire/schema.js";

/** `where` names what gave the parameters, for the message; default: the flow's version. */
export function checkParameters(flow: Pick<FlowRecord, "name" | "parameters"> & { version?: number }, given: Record<string, unknown>, where?: string): void {
  const declared = new Map(flow.parameters.map((p) => [p.name, p]));
  const unknown = Object.keys(given).filter((name) => !declared.has(name));
  const missing = flow.parameters
    .filter((p) => p.required && p.default === undefined && !Object.hasOwn(given, p.name))
    .map((p) => p.name);
  if (unknown.length === 0 && missing.length === 0) return;
  const problems: string[] = [];
  if (unknown.length > 0) {
    const known = flow.parameters.length === 0 ? "it declares none" : `it declares ${[...declared.keys()].join(", ")}`;
    problems.push(`unknown parameter${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (${known})`);
  }
  if (missing.length > 0) problems.push(`missing required parameter${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`);
  throw new BerthError("BERTH_E_PARAMETERS", `flow "${flow.name}" ${where ?? `version ${flow.version ?? "?"}`}: ${problems.join("; ")}`, {
    details: { unknown, missing },
  });
}

/**
 * The build-time healthcheck, run inside a storage image (`berth healthcheck LOCATION...`): it loads each
 * flow the way a flow run will and reports every failing check by name with its cause, instead of one
 * generic "image failed to build".
 */
import { createRequire } from "node:module";
import { describeError } from "../wire/errors.js";
import { EnvironmentSpec } from "../wire/schema.js";
import { Environment, isEnvironment } from "../environments/environment.js";
import { serializeEnvironment } from "../environments/serialize.js";
import type { Flow } from "../flows/flow.js";
import { pickFlow } from "./storage.js";
import { pathToFileURL } from "node:url";
import { HEALTHCHECK_FAILED_MARKER } from "./healthcheck-marker.js";

export interface CheckResult {
  location: string;
  check: string;
  ok: boolean;
  cause?: string;
}

export async function healthcheck(locations: readonly string[]): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const location of locations) results.push(...(await checkFlow(location)));
  return results;
}

async function checkFlow(location: string): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const record = (check: string, fn: () => void): boolean => {
    try {
      fn();
      results.push({ location, check, ok: true });
      return true;
    } catch (err) {
      results.push({ location, check, ok: false, cause: describeError(err) });
      return false;
    }
  };

  let module: Record<string, unknown> | undefined;
  try {
    module = (await import(pathToFileURL(location).href)) as Record<string, unknown>;
    results.push({ location, check: "load flow module", ok: true });
  } catch (err) {
    results.push({ location, check: "load flow module", ok: false, cause: describeError(err) });
    return results;
  }
  let flow: Flow | undefined;
  if (!record("flow export", () => void (flow = pickFlow(module!, location)))) return results;
  const f = flow!;
  record("flow graph", () => f.validate());
  if (!record("environment class", () => assertEnvironment(f.environment))) return results;
  const resolve = createRequire(location);
  for (const dep of f.environment.dependencies) {
    record(`environment dependency "${dep}"`, () => resolveDependency(resolve, dep));
  }
  // What registration sends the server (serializeEnvironment: by class identity), round-tripped through JSON.
  record("environment serialization", () => void EnvironmentSpec.parse(JSON.parse(JSON.stringify(serializeEnvironment(f.environment)))));
  return results;
}

function assertEnvironment(env: unknown): void {
  const name = (env as { constructor?: { name?: string } } | undefined)?.constructor?.name ?? typeof env;
  if (!isEnvironment(env)) throw new Error(`the flow's environment (${name}) does not extend berth's Environment`);
  if (!(env instanceof Environment)) {
    throw new Error(`the flow's environment (${name}) extends another copy of berth's Environment, not the one in this image: leave "berth" out of the bundle`);
  }
}

function resolveDependency(resolve: NodeJS.Require, dep: string): void {
  try {
    resolve.resolve(dep);
  } catch (err) {
    // An ESM-only package without a "require" export still exists; only a missing module fails.
    if ((err as { code?: string }).code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return;
    throw new Error(`cannot resolve "${dep}" from the flows directory: add it to DockerStorage({ dependencies })`, { cause: err });
  }
}

/** Prints results; returns the process exit code. */
export function reportHealthcheck(results: CheckResult[], write: (line: string) => void): number {
  for (const r of results) {
    if (r.ok) write(`berth healthcheck: ok ${r.check} (${r.location})`);
    // The builder reads this report line by line: a cause spanning lines would reach the user cut at its first.
    else write(`${HEALTHCHECK_FAILED_MARKER} ${r.check} (${r.location}): ${(r.cause ?? "failed").replace(/\s*\n\s*/g, " ")}`);
  }
  return results.some((r) => !r.ok) ? 1 : 0;
}

/**
 * Serialization by class identity, never by name: only the built-in LocalEnvironment class serializes as
 * type "LocalEnvironment". Any other class, even one a user named `LocalEnvironment` (the seed's naming
 * warning), is "custom" and gets a warning, so a name clash cannot change what runs.
 */
import type { EnvironmentSpec } from "../wire/schema.js";
import { Environment } from "./environment.js";
import { LocalEnvironment } from "./local.js";
import { environmentSpec } from "./spec.js";

const BUILT_IN_NAMES: ReadonlySet<string> = new Set(["LocalEnvironment", "Environment"]);

/** The environment's spec for the server, decided by class identity whatever `serialize()` says. */
export function serializeEnvironment(env: Environment): EnvironmentSpec {
  const ctor = classOf(env);
  if (ctor === LocalEnvironment) return environmentSpec(env, "LocalEnvironment", "LocalEnvironment");
  return environmentSpec(env, "custom", ctor?.name || "AnonymousEnvironment");
}

/** Warnings for the user about how `env` will be treated; empty when there is nothing to say. */
export function environmentWarnings(env: Environment): string[] {
  const ctor = classOf(env);
  const name = ctor?.name ?? "";
  if (ctor === Environment) {
    return ["the flow uses the base Environment class, which cannot execute a flow: use LocalEnvironment or a subclass that implements execute()"];
  }
  if (ctor !== LocalEnvironment && BUILT_IN_NAMES.has(name)) {
    return [
      `the custom environment class "${name}" shadows berth's built-in ${name}; it is treated as a custom environment (type "custom"), not the built-in. Rename it to avoid confusion.`,
    ];
  }
  return [];
}

function classOf(env: Environment): Function | undefined {
  return (Object.getPrototypeOf(env) as { constructor?: Function } | null)?.constructor;
}

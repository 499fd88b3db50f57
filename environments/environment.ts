/**
 * Environment: the object that, inside a flow run's container, sets up and executes the flow loaded from
 * storage. Subclass it for custom behaviour; the subclass lives only in the flow's storage, and the
 * server sees nothing of it but its serialized form (type, class name, labels, metadata).
 */
import { brand, hasBrand } from "../shared/brand.js";
import { BerthError } from "../wire/errors.js";
import type { EnvironmentSpec } from "../wire/schema.js";
import { createLogger, type Logger } from "../shared/logging.js";
import type { Storage } from "../storage/storage.js";
import { environmentSpec, jsonMetadata } from "./spec.js";

export interface EnvironmentOptions {
  /** Labels an agent needs to run flows with this environment (default none). */
  labels?: string[];
  /** Called before the flow runs (default none). */
  onStart?: () => unknown;
  /** Called after the flow ran, even when it threw (default none). */
  onExit?: () => unknown;
  /** JSON-serializable data sent to the server with the environment (default {}). */
  metadata?: Record<string, unknown>;
}

export interface EnvironmentExecuteOptions {
  /** Passed to the flow run (default none). */
  parameters?: Record<string, unknown>;
  /** Aborting it cancels the flow run. */
  signal?: AbortSignal;
}

export class Environment {
  labels: string[];
  metadata: Record<string, unknown>;
  onStart?: (() => unknown) | undefined;
  onExit?: (() => unknown) | undefined;
  private ownLogger: Logger | undefined;

  constructor(options: EnvironmentOptions = {}) {
    this.labels = [...new Set(options.labels ?? [])];
    // Checked now so a bad value fails where the flow is defined, not at registration.
    this.metadata = options.metadata === undefined ? {} : jsonMetadata(options.metadata);
    this.onStart = options.onStart;
    this.onExit = options.onExit;
  }

  /** npm modules the build-time healthcheck must be able to resolve in the storage image. */
  get dependencies(): string[] {
    return [];
  }

  get logger(): Logger {
    this.ownLogger ??= createLogger({ environment: this.constructor.name || "AnonymousEnvironment" });
    return this.ownLogger;
  }

  /** Prepares any infrastructure the flow needs; the default does nothing. */
  async setup(_storage: Storage): Promise<void> {}

  /** Runs the flow stored at `flowLocation`. */
  async execute(_storage: Storage, _flowLocation: string, _opts?: EnvironmentExecuteOptions): Promise<unknown> {
    throw new BerthError(
      "BERTH_E_FLOW_DEFINITION",
      `${this.constructor.name || "AnonymousEnvironment"}: subclass must implement execute(storage, flowLocation)`,
    );
  }

  /** The form sent to the server: any subclass is "custom". See environments/serialize.ts. */
  serialize(): EnvironmentSpec {
    return environmentSpec(this, "custom", this.constructor.name || "AnonymousEnvironment");
  }
}

brand(Environment, "Environment");

/** Whether `value` is an Environment, made by this copy of berth or another. */
export function isEnvironment(value: unknown): value is Environment {
  return hasBrand(value, "Environment");
}

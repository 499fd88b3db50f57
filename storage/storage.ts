/**
 * Storage: where flow *code* lives (a Docker image, a local directory). The server only ever receives a
 * storage's serialized form; the code itself stays in storage.
 */
import { pathToFileURL } from "node:url";
import { BerthError, describeError } from "../wire/errors.js";
import type { StorageSpec } from "../wire/schema.js";
import { Flow, isFlow } from "../flows/flow.js";
import { brand, hasBrand } from "../shared/brand.js";

export interface BuildContext {
  /** Log a line of progress for the user. */
  log?: (line: string) => void;
  /** Push to the registry after building, when the storage has one (default true). */
  push?: boolean;
  signal?: AbortSignal;
}

export interface BuildOutcome {
  /** Where the flows now live: an image reference or a directory. */
  location: string;
  /** False when an identical build already existed and nothing was rebuilt. */
  built: boolean;
  pushed: boolean;
}

export abstract class Storage {
  /** Flow name → location inside this storage. */
  readonly flows: Record<string, string> = {};
  /** Labels every flow in this storage requires of an agent. */
  readonly labels: string[];
  /** Bundled source of each flow, by name: what build() puts into storage. */
  protected readonly sources = new Map<string, string>();

  constructor(labels: string[] = []) {
    this.labels = [...labels];
  }

  /** Where a flow with this slug lives inside the storage. */
  protected abstract locationFor(slug: string): string;

  /** Adds a flow and returns its location. `source` is its bundled module (see storage/bundle.ts). */
  addFlow(flow: Flow, source?: string): string {
    const existing = this.flows[flow.name];
    const location = existing ?? this.locationFor(flow.slug);
    if (!existing && Object.values(this.flows).includes(location)) {
      throw new BerthError("BERTH_E_FLOW_DEFINITION", `two flows in one storage share the location ${location}`);
    }
    this.flows[flow.name] = location;
    if (source !== undefined) this.sources.set(flow.name, source);
    return location;
  }

  /** Loads the flow stored at `location`: the module's default export, or its only exported Flow. */
  async getFlow(location: string): Promise<Flow> {
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(location).href)) as Record<string, unknown>;
    } catch (err) {
      throw new BerthError("BERTH_E_FLOW_FILE", `cannot load the flow at ${location}: ${describeError(err)}`, { cause: err });
    }
    return pickFlow(module, location);
  }

  abstract build(context?: BuildContext): Promise<BuildOutcome>;
  abstract serialize(): StorageSpec;
}

brand(Storage, "Storage");

/** Whether `value` is a Storage, made by this copy of berth or another. */
export function isStorage(value: unknown): value is Storage {
  return hasBrand(value, "Storage");
}

/** The Flow a module exports: `default`, else the single exported Flow. */
export function pickFlow(module: Record<string, unknown>, where: string): Flow {
  const [name, flow] = exportedFlow(module, where);
  // Another copy of berth has its own default runner, which a flow-run container cannot swap for the one
  // that reports to the server: such a flow would run unobserved.
  if (!(flow instanceof Flow)) {
    throw new BerthError(
      "BERTH_E_FLOW_FILE",
      `${where} exports a flow built with another copy of berth ("${name}"): import Flow from "berth" and let the berth image provide it`,
    );
  }
  return flow;
}

function exportedFlow(module: Record<string, unknown>, where: string): [string, Flow] {
  if (isFlow(module.default)) return ["default", module.default];
  const flows = Object.entries(module).filter((entry): entry is [string, Flow] => isFlow(entry[1]));
  if (flows.length === 1) return flows[0]!;
  if (flows.length > 1) {
    throw new BerthError(
      "BERTH_E_FLOW_FILE",
      `${where} exports several flows (${flows.map(([k]) => k).join(", ")}): export the one to register as default`,
    );
  }
  throw new BerthError("BERTH_E_FLOW_FILE", `${where} exports no Flow: add \`export default flow\``);
}

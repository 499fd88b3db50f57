import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { BerthError } from "../wire/errors.js";
import type { StorageSpec } from "../wire/schema.js";
import { Storage, type BuildContext, type BuildOutcome } from "./storage.js";

export interface LocalStorageOptions {
  /** Directory on the agent's host where bundled flows are written; an agent mounts it read-only. */
  directory: string;
  /** Labels an agent must carry to run flows from this storage (default none). */
  labels?: string[];
}

/**
 * Flows kept as files in a directory of the agent's host. An agent runs them in the berth image
 * with the directory mounted at /opt/berth/flows, so `import "berth"` resolves to the berth image's copy.
 */
export class LocalStorage extends Storage {
  readonly directory: string;

  constructor(options: LocalStorageOptions) {
    super(options.labels);
    if (!options?.directory) throw new BerthError("BERTH_E_FLOW_DEFINITION", "LocalStorage needs a directory");
    this.directory = path.resolve(options.directory);
  }

  protected locationFor(slug: string): string {
    return path.join(this.directory, `${slug}.mjs`);
  }

  async build(context: BuildContext = {}): Promise<BuildOutcome> {
    await mkdir(this.directory, { recursive: true });
    for (const [name, location] of Object.entries(this.flows)) {
      const source = this.sources.get(name);
      if (source === undefined) {
        throw new BerthError("BERTH_E_FLOW_DEFINITION", `no bundled source for flow "${name}": register it with \`berth register FILE\``);
      }
      await writeFile(location, source);
      context.log?.(`wrote ${location}`);
    }
    return { location: this.directory, built: true, pushed: false };
  }

  serialize(): StorageSpec {
    return { type: "local", directory: this.directory, flows: { ...this.flows } };
  }
}

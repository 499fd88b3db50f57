import { IMAGE_FLOWS_DIR } from "../wire/constants.js";
import type { StorageSpec } from "../wire/schema.js";
import { DockerStorage } from "./docker-storage.js";
import { LocalStorage } from "./local-storage.js";
import type { Storage } from "./storage.js";

/**
 * Rebuilds a storage object from its serialized form, as seen from inside a flow-run container: local
 * storage directories are mounted at the image's flows directory there.
 */
export function storageFromSpec(spec: StorageSpec, options: { inContainer: boolean }): { storage: Storage; locate: (name: string) => string | undefined } {
  if (spec.type === "docker") {
    const storage = new DockerStorage({});
    Object.assign(storage.flows, spec.flows);
    return { storage, locate: (name) => spec.flows[name] };
  }
  const directory = options.inContainer ? IMAGE_FLOWS_DIR : spec.directory;
  const storage = new LocalStorage({ directory });
  const flows = Object.fromEntries(
    Object.entries(spec.flows).map(([name, loc]) => [name, options.inContainer ? `${IMAGE_FLOWS_DIR}/${loc.split("/").pop()}` : loc]),
  );
  Object.assign(storage.flows, flows);
  return { storage, locate: (name) => flows[name] };
}

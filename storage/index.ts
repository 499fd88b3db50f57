export { Storage, type BuildContext, type BuildOutcome } from "./storage.js";
export { DockerStorage, IMAGE_FLOWS_DIR, type DockerStorageOptions } from "./docker-storage.js";
export { LocalStorage, type LocalStorageOptions } from "./local-storage.js";

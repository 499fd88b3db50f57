export { Storage, isStorage, type BuildContext, type BuildOutcome } from "./storage.js";
export { DockerStorage, isDockerStorage, type DockerStorageOptions } from "./docker-storage.js";
export { IMAGE_FLOWS_DIR } from "../wire/constants.js";
export { LocalStorage, type LocalStorageOptions } from "./local-storage.js";

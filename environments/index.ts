/** `berth/environments`: how a flow runs inside its container. */
export { Environment, isEnvironment, type EnvironmentOptions, type EnvironmentExecuteOptions } from "./environment.js";
export { LocalEnvironment } from "./local.js";
export { serializeEnvironment, environmentWarnings } from "./serialize.js";

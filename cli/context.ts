/** Turns global options, command flags and the environment into one Config, once per command. */
import { ApiClient } from "../client/api-client.js";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
}

export function resolveConfig(global: GlobalOptions, flags: Record<string, unknown> = {}): Config {
  return loadConfig({
    env: process.env,
    cwd: process.cwd(),
    file: global.config,
    flags: { ...(global.logLevel ? { logLevel: global.logLevel } : {}), ...flags },
  });
}

export function clientFor(config: Pick<Config, "apiUrl" | "apiToken">): ApiClient {
  return new ApiClient({ baseUrl: config.apiUrl, ...(config.apiToken ? { token: config.apiToken } : {}) });
}

/** Drops undefined values so flags only override what was given. */
export function defined<T extends Record<string, unknown>>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

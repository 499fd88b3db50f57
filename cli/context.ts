/** Turns global options, command flags and the environment into one Config, once per command. */
import { ApiClient } from "../client/api-client.js";
import { loadConfig } from "../config/load.js";
import { clientToken } from "../config/tokens.js";
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

/** A client of the configured server, sending the token clientToken finds (config/tokens.ts). */
export function clientFor(config: Pick<Config, "apiUrl" | "apiToken" | "apiTokenFile" | "home">): ApiClient {
  const token = clientToken(config);
  return new ApiClient({ baseUrl: config.apiUrl, ...(token ? { token } : {}) });
}

/** Drops undefined values so flags only override what was given. */
export function defined<T extends Record<string, unknown>>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The options of a command that talks to the API: `--api URL`, and `--json` for machine-readable output. */
export type ApiOpts = { api?: string; json?: boolean };

/** The API client for a command, from the global options and its `--api`. */
export function apiClient(global: GlobalOptions, opts: ApiOpts): ApiClient {
  return clientFor(resolveConfig(global, defined({ apiUrl: opts.api })));
}

/** A command's output: text as it is, anything else as indented JSON. */
export function print(value: unknown): void {
  process.stdout.write(`${typeof value === "string" ? value : JSON.stringify(value, null, 2)}\n`);
}

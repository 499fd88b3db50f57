/**
 * Where the engine is: a unix socket by default, or a DOCKER_HOST-style address that the caller passes in
 * (berth reads DOCKER_HOST in its config layer, never here).
 */
import { BerthError } from "../wire/errors.js";

export const DEFAULT_SOCKET = "/var/run/docker.sock";

export interface EngineAddress {
  /** Unix socket of the engine; default "/var/run/docker.sock". */
  socketPath?: string;
  /** A DOCKER_HOST-style address ("unix:///path", "tcp://host:2375"). */
  host?: string;
}

/**
 * Connection options for dockerode. Every field docker-modem would otherwise default from DOCKER_HOST,
 * DOCKER_TLS_VERIFY or DOCKER_CERT_PATH is present (possibly undefined), so the environment never overrides
 * what the caller chose.
 */
export interface ConnectOptions {
  socketPath: string | undefined;
  host: string | undefined;
  port: string | undefined;
  protocol: "http" | "https";
  pathPrefix: string | undefined;
  ca: undefined;
  cert: undefined;
  key: undefined;
  timeout: undefined;
}

const NO_ENV = { ca: undefined, cert: undefined, key: undefined, timeout: undefined } as const;

function socket(socketPath: string): { where: string; options: ConnectOptions } {
  return { where: socketPath, options: { socketPath, host: undefined, port: undefined, protocol: "http", pathPrefix: undefined, ...NO_ENV } };
}

/** dockerode's connection options, and the address as users write it, for error messages. */
export function engineTarget(options: EngineAddress): { where: string; options: ConnectOptions } {
  if (options.socketPath !== undefined) return socket(options.socketPath);
  const host = options.host;
  if (host === undefined || host === "") return socket(DEFAULT_SOCKET);
  if (host.startsWith("unix://")) return socket(host.slice("unix://".length) || DEFAULT_SOCKET);
  let url: URL;
  try {
    url = new URL(host.includes("://") ? host : `tcp://${host}`);
  } catch (err) {
    throw new BerthError("BERTH_E_CONFIG", `DOCKER_HOST "${host}" is not an address like tcp://host:2375 or unix:///var/run/docker.sock`, { cause: err });
  }
  if (!["tcp:", "http:", "https:"].includes(url.protocol)) {
    throw new BerthError("BERTH_E_CONFIG", `DOCKER_HOST "${host}": only unix://, tcp:// and http(s):// engines are supported`);
  }
  const protocol = url.protocol === "https:" ? "https" : "http";
  const port = url.port || (protocol === "https" ? "2376" : "2375");
  return {
    where: `${url.protocol}//${url.hostname}:${port}`,
    options: { socketPath: undefined, host: url.hostname, port, protocol, pathPrefix: "/", ...NO_ENV },
  };
}

/**
 * Where the tokens and the key come from when they are not given: files the server creates on first start
 * (readable by their owner only) and clients on the same machine read. Creation is atomic (a temporary file
 * linked into place), so two processes starting at once agree on one token.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { BerthError, describeError } from "../wire/errors.js";
import { allLoopback } from "../shared/api-urls.js";
import { homeTokenFile, type ServerOptions } from "./compile.js";
import type { Config } from "./schema.js";

/** Hosts only this machine reaches. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  return bare === "localhost" || bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/** Every server of the setting is on loopback (a token for this machine's server is sent to no other). */
function isLoopbackUrl(url: string): boolean {
  return allLoopback(url, isLoopbackHost);
}

/**
 * The token a client sends: apiToken; else the one in apiTokenFile (which must exist); else, for a loopback
 * API URL only, the admin token a local server generated into the home, when there is one. A remote server is
 * never sent the local one.
 */
export function clientToken(config: Pick<Config, "apiUrl" | "apiToken" | "apiTokenFile" | "home">): string | undefined {
  if (config.apiToken) return config.apiToken;
  if (config.apiTokenFile) {
    const token = readTokenFile(config.apiTokenFile);
    if (token === undefined) {
      throw new BerthError("BERTH_E_CONFIG", `the API token file ${config.apiTokenFile} (apiTokenFile, BERTH_API_TOKEN_FILE) does not exist: the server creates it on its first start`);
    }
    return token;
  }
  return isLoopbackUrl(config.apiUrl) ? readTokenFile(homeTokenFile(config.home)) : undefined;
}

export interface ServerSecrets {
  /** The admin token the server requires; undefined for an insecure server. */
  apiToken: string | undefined;
  /** Where it came from, for the start-up log; undefined when it was given directly. */
  tokenFile: string | undefined;
  serverKey: Buffer;
}

/**
 * The admin token and the key a server runs with. A server given no token makes one in its token file, but
 * only on loopback or with a token file named explicitly: bound to another address with neither, it refuses
 * to start unless insecure.
 */
export function serverSecrets(options: ServerOptions): ServerSecrets {
  const serverKey = serverKeyOf(options);
  if (options.insecure) return { apiToken: options.apiToken, tokenFile: undefined, serverKey };
  if (options.apiToken) return { apiToken: options.apiToken, tokenFile: undefined, serverKey };
  const file = options.apiTokenFile ?? (isLoopbackHost(options.host) ? options.homeTokenFile : undefined);
  if (file === undefined) {
    throw new BerthError(
      "BERTH_E_CONFIG",
      `berth server on ${options.host} is reachable from other machines, and it has no admin token: set BERTH_API_TOKEN (or apiToken), or BERTH_API_TOKEN_FILE (or apiTokenFile: a token is generated there on first start); --insecure serves without tokens`,
    );
  }
  return { apiToken: readOrCreate(file, () => `berth_admin_${randomBytes(32).toString("base64url")}`), tokenFile: file, serverKey };
}

function serverKeyOf(options: ServerOptions): Buffer {
  if (options.key !== undefined) {
    const key = Buffer.from(options.key, "base64");
    if (key.length < 32) throw new BerthError("BERTH_E_CONFIG", "server.key (BERTH_SERVER_KEY) must be base64 of at least 32 bytes: make one with `openssl rand -base64 32`");
    return key;
  }
  const text = readOrCreate(options.keyFile, () => randomBytes(32).toString("base64"));
  const key = Buffer.from(text, "base64");
  if (key.length < 32) throw new BerthError("BERTH_E_CONFIG", `the server key file ${options.keyFile} does not hold base64 of at least 32 bytes: remove it to have a new one made (secrets set with the old key are then lost)`);
  return key;
}

function readTokenFile(file: string): string | undefined {
  try {
    const text = readFileSync(file, "utf8").trim();
    return text === "" ? undefined : text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new BerthError("BERTH_E_CONFIG", `cannot read the token file ${file}: ${describeError(err)}`, { cause: err });
  }
}

/**
 * The file's content, trimmed; made with `make()` (mode 0600) when it does not exist. One that others may
 * read is refused, as ssh refuses a private key anyone can read: whoever reads it is an admin.
 */
function readOrCreate(file: string, make: () => string): string {
  const existing = readTokenFile(file);
  if (existing !== undefined) {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new BerthError("BERTH_E_CONFIG", `${file} may be read by other users (mode ${mode.toString(8).padStart(4, "0")}): make it private with \`chmod 600 ${file}\``);
    }
    return existing;
  }
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const temporary = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    writeFileSync(temporary, `${make()}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(temporary, 0o600);
    try {
      linkSync(temporary, file);
    } catch (err) {
      // Another process made it first: theirs is the one.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      unlinkSync(temporary);
    }
  } catch (err) {
    throw new BerthError("BERTH_E_CONFIG", `cannot create ${file}: ${describeError(err)}`, { cause: err });
  }
  const made = readTokenFile(file);
  if (made === undefined) throw new BerthError("BERTH_E_CONFIG", `${file} is empty: remove it to have it made again`);
  return made;
}

/**
 * What the offline images take from this host: executables and the shared libraries `ldd` says they load.
 * Every failure names the host file and the Debian package that provides it.
 */
import { execFile } from "node:child_process";
import { access, constants, realpath } from "node:fs/promises";
import { BerthError, describeError } from "../wire/errors.js";
import type { TarTree } from "../shared/tar-tree.js";

const COMMAND_TIMEOUT_MS = 15_000;

export interface HostCommandOptions {
  signal?: AbortSignal;
  /** Exit codes that still count as an answer (ldd exits 1 for a static binary). */
  okCodes?: number[];
  /** Kills the command after this long; default 15 s, for quick queries. */
  timeoutMs?: number;
}

/** Runs a host command and returns its stdout; bounded in time and abortable. */
export function runHostCommand(file: string, args: string[], options: HostCommandOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024, encoding: "utf8", ...(options.signal ? { signal: options.signal } : {}) },
      (err, stdout, stderr) => {
        const code = err && typeof err.code === "number" ? err.code : undefined;
        if (!err || (code !== undefined && options.okCodes?.includes(code))) return resolve(`${stdout}${err ? stderr : ""}`);
        if (options.signal?.aborted) return reject(new BerthError("BERTH_E_ABORTED", `${file} was aborted`, { cause: err }));
        const why = stderr.trim() || describeError(err);
        reject(new BerthError("BERTH_E_IMAGE_BUILD", `\`${[file, ...args].join(" ")}\` failed: ${why}`, { cause: err }));
      },
    );
  });
}

/** Throws a message that says which package to install when a host file berth needs is absent. */
export async function requireHostFile(file: string, hint: string): Promise<string> {
  try {
    await access(file, constants.R_OK);
    return await realpath(file);
  } catch (err) {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `${file} is missing on this host: ${hint}`, { cause: err });
  }
}

/** First of `candidates` that exists, or a message naming all of them and what to install. */
export async function findHostFile(candidates: string[], hint: string): Promise<string> {
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.R_OK);
      return candidate;
    } catch {
      // Not this one; the error below names every place looked at.
    }
  }
  throw new BerthError("BERTH_E_IMAGE_BUILD", `none of ${candidates.join(", ")} exists on this host: ${hint}`);
}

/**
 * The shared libraries (and the dynamic loader) a binary loads, as absolute paths, from `ldd`. Empty for a
 * static binary.
 */
export async function sharedLibraries(binary: string, signal?: AbortSignal): Promise<string[]> {
  await requireHostFile("/usr/bin/ldd", "install Debian's libc-bin");
  const out = await runHostCommand("/usr/bin/ldd", [binary], { okCodes: [1], ...(signal ? { signal } : {}) });
  if (/not a dynamic executable|statically linked/.test(out)) return [];
  const libraries: string[] = [];
  for (const line of out.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const match = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1]) libraries.push(match[1]);
    else if (/=>\s*not found/.test(line)) {
      throw new BerthError("BERTH_E_IMAGE_BUILD", `${binary} needs a library this host lacks: ${line.trim()}`);
    }
  }
  return libraries;
}

/** Puts a host executable at `imagePath` and every library it loads at the path the loader will look for it. */
export async function addExecutable(tree: TarTree, source: string, imagePath: string, signal?: AbortSignal): Promise<void> {
  const real = await realpath(source);
  await tree.hostFile(imagePath, real);
  for (const library of await sharedLibraries(real, signal)) {
    if (!tree.has(library)) await tree.hostFile(library, await realpath(library));
  }
}

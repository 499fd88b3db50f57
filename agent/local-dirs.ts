/**
 * Which host directories an agent mounts into run containers. Anyone who can register a flow names its
 * LocalStorage directory; mounted as it was, `/var/run` would hand the container the Docker socket. So the
 * agent mounts only directories under the roots its operator allowed (`<home>/flows` and `--allow-local-dir`),
 * judged on the real path, after symlinks, and mounts that real path.
 */
import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import { BerthError } from "../wire/errors.js";

/** The real path of `directory` when it lies under one of `roots`; BERTH_E_NOT_ALLOWED otherwise. */
export async function allowedLocalDir(directory: string, roots: readonly string[]): Promise<string> {
  const allowed = `the agent mounts only directories under ${roots.length === 0 ? "none" : roots.join(", ")} (<home>/flows and --allow-local-dir)`;
  if (!path.isAbsolute(directory)) {
    throw new BerthError("BERTH_E_NOT_ALLOWED", `the flow's LocalStorage directory ${JSON.stringify(directory)} is not an absolute path; ${allowed}`);
  }
  let real: string;
  try {
    real = await realpath(directory);
  } catch (err) {
    // Docker would create a missing directory, as root, rather than fail: refuse before it can.
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist on this agent's host" : `cannot be read here (${(err as Error).message})`;
    throw new BerthError("BERTH_E_NOT_ALLOWED", `the flow's LocalStorage directory ${directory} ${why}: register the flow where this agent runs, or give it DockerStorage`);
  }
  if (!(await stat(real)).isDirectory()) {
    throw new BerthError("BERTH_E_NOT_ALLOWED", `the flow's LocalStorage directory ${directory} is not a directory`);
  }
  for (const root of roots) {
    const realRoot = await realpath(root).catch(() => undefined);
    if (realRoot === undefined) continue;
    const relative = path.relative(realRoot, real);
    const outside = relative === ".." || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative);
    if (!outside) return real;
  }
  const via = real === path.resolve(directory) ? "" : ` (${real}, after symlinks)`;
  throw new BerthError("BERTH_E_NOT_ALLOWED", `the flow's LocalStorage directory ${directory}${via} is not allowed: ${allowed}`);
}

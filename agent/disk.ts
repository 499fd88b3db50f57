/** Free space where the agent's images and containers go (agent.diskPath). */
import { statfs } from "node:fs/promises";
import path from "node:path";

/** Bytes available to unprivileged writers on the filesystem of `dir`, or of its nearest existing parent. */
export async function freeBytes(dir: string): Promise<number> {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    try {
      const stats = await statfs(current);
      return stats.bavail * stats.bsize;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || current === path.dirname(current)) throw err;
    }
  }
}

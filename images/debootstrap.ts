/**
 * A Debian root filesystem made on this host with debootstrap, in a directory of its own that is removed
 * afterwards. debootstrap runs as root (it chroots and makes device nodes) and mounts /proc and /sys in the
 * target while it works; removal first makes sure nothing is still mounted there, so that it can never
 * delete through a mount into the host.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { BerthError, describeError } from "../wire/errors.js";
import { findHostFile, runHostCommand } from "./host-files.js";
import type { ImageLogOptions } from "./options.js";

export const DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian";

const DEBOOTSTRAP_CANDIDATES = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"];
const DEBOOTSTRAP_HINT = "install Debian's debootstrap (apt-get install -y debootstrap)";
/** A minbase with a compiler takes one to two minutes on a good connection; a slow mirror gets much longer. */
const DEBOOTSTRAP_TIMEOUT_MS = 30 * 60_000;
const LOG_TAIL_LINES = 15;

export interface DebootstrapOptions extends ImageLogOptions {
  /** Debian release, e.g. "bookworm". */
  suite: string;
  /** Packages on top of the minbase variant. */
  include: string[];
  /** Mirror to download from; default http://deb.debian.org/debian. */
  mirror?: string;
  /** Directory to make the root filesystem under; default: the OS temp dir (it must allow exec and device nodes). */
  workDir?: string;
}

/** Fails with what to do when this host cannot run debootstrap; returns its path (the first of `candidates`). */
export async function checkDebootstrap(candidates: string[] = DEBOOTSTRAP_CANDIDATES): Promise<string> {
  if (process.platform !== "linux") {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `debootstrap needs a Linux host (this is ${process.platform}): pull the official image instead`);
  }
  const debootstrap = await findHostFile(candidates, DEBOOTSTRAP_HINT);
  if (process.getuid?.() !== 0) {
    throw new BerthError("BERTH_E_IMAGE_BUILD", "debootstrap needs root (it chroots and creates device nodes): run this berth command as root, for example with sudo");
  }
  return debootstrap;
}

/**
 * Runs `work` on a fresh minbase root filesystem (its path), then removes it whether `work` succeeded or not.
 */
export async function withDebianRootfs<T>(options: DebootstrapOptions, work: (rootfs: string) => Promise<T>): Promise<T> {
  const debootstrap = await checkDebootstrap();
  const dir = await mkdtemp(path.join(options.workDir ?? os.tmpdir(), "berth-debootstrap-"));
  let failed = false;
  try {
    const rootfs = path.join(dir, "rootfs");
    await runDebootstrap(debootstrap, rootfs, options);
    return await work(rootfs);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await removeTree(dir).catch((err: unknown) => {
      // A failed build reports its own error; a leftover directory must not hide it.
      if (!failed) throw err;
      options.log?.(describeError(err));
    });
  }
}

async function runDebootstrap(debootstrap: string, rootfs: string, options: DebootstrapOptions): Promise<void> {
  const mirror = options.mirror ?? DEFAULT_DEBIAN_MIRROR;
  const args = ["--variant=minbase", `--include=${options.include.join(",")}`, options.suite, rootfs, mirror];
  try {
    await runHostCommand(debootstrap, args, { timeoutMs: DEBOOTSTRAP_TIMEOUT_MS, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    const log = await readFile(path.join(rootfs, "debootstrap/debootstrap.log"), "utf8").catch(() => "");
    const tail = log.trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
    throw new BerthError(
      "BERTH_E_IMAGE_BUILD",
      `debootstrap could not make a Debian ${options.suite} root filesystem from ${mirror}: ${describeError(err)}${tail ? `\nits log ends with:\n${tail}` : ""}`,
      { cause: err },
    );
  }
}

/** Removes `dir` after unmounting whatever is still mounted below it; refuses while something stays mounted. */
async function removeTree(dir: string): Promise<void> {
  for (const mountPoint of (await mountsUnder(dir)).reverse()) {
    await runHostCommand("umount", [mountPoint]).catch(() => undefined); // Checked just below.
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `left ${dir} in place: ${left.join(", ")} is still mounted there (unmount it, then remove the directory)`);
  }
  await rm(dir, { recursive: true, force: true });
}

/** Mount points at or below `dir`, outermost first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile("/proc/self/mounts", "utf8");
  const points = table
    .split("\n")
    .map((line) => line.split(" ")[1])
    .filter((point): point is string => point !== undefined)
    .map((point) => point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  return points.filter((point) => point === dir || point.startsWith(`${dir}/`)).sort((a, b) => a.length - b.length);
}

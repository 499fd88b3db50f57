/**
 * A file tree described in memory and written out as a tar stream: the root filesystems berth imports and
 * the build contexts it sends. The output is deterministic (sorted paths, fixed times and owners, modes from
 * the host), so the same inputs give a byte-identical archive and the engine reuses what it already has.
 *
 * Paths are resolved through the tree's own symlinks before they are added, so that with "/lib -> usr/lib"
 * in the tree, adding "/lib/x86_64-linux-gnu/libc.so.6" puts the file in "/usr/lib/...", where an extracting
 * engine would expect it, instead of producing an archive that writes through a symlink.
 */
import { createReadStream, type Stats } from "node:fs";
import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { pack as tarPack, type Header } from "tar-stream";
import { BerthError, describeError, isBerthError } from "../wire/errors.js";

interface Owner {
  uid: number;
  gid: number;
}
type Node =
  | ({ kind: "dir"; mode: number } & Owner)
  | ({ kind: "file"; mode: number; source: string; size: number } & Owner)
  | ({ kind: "data"; mode: number; data: Buffer } & Owner)
  | { kind: "symlink"; target: string };

export interface HostTreeOptions {
  /** Leaves out each path (relative to the source, "/"-separated) it returns true for, and all below it; default: nothing. */
  skip?: (relative: string) => boolean;
  /** Keeps the host's owners, as a root filesystem made on this host needs; default false: all owned by root, as in a build context. */
  keepOwners?: boolean;
}

export interface EntryOptions {
  mode?: number;
  uid?: number;
  gid?: number;
}

/** Fixed modification time of every entry: 2000-01-01, so archives do not change with the clock. */
const MTIME = new Date(Date.UTC(2000, 0, 1));
const MAX_SYMLINK_HOPS = 40;
const SMALL_FILE = 1024 * 1024;
const READ_AHEAD = 32;
const CHUNK = 256 * 1024;

export class TarTree {
  private readonly nodes = new Map<string, Node>();

  has(imagePath: string): boolean {
    return this.nodes.has(this.resolve(imagePath));
  }

  get size(): number {
    return this.nodes.size;
  }

  dir(imagePath: string, options: EntryOptions = {}): this {
    const key = this.prepare(imagePath);
    this.nodes.set(key, { kind: "dir", mode: options.mode ?? 0o755, uid: options.uid ?? 0, gid: options.gid ?? 0 });
    return this;
  }

  data(imagePath: string, content: string | Buffer, options: EntryOptions = {}): this {
    const key = this.prepare(imagePath);
    const data = typeof content === "string" ? Buffer.from(content) : content;
    this.nodes.set(key, { kind: "data", data, mode: options.mode ?? 0o644, uid: options.uid ?? 0, gid: options.gid ?? 0 });
    return this;
  }

  symlink(imagePath: string, target: string): this {
    const key = this.prepare(imagePath);
    this.nodes.set(key, { kind: "symlink", target });
    return this;
  }

  /** A host file's content (symlinks followed) at `imagePath`, with the host file's permission bits. */
  async hostFile(imagePath: string, source: string, options: EntryOptions = {}): Promise<this> {
    const info = await statHost(source);
    if (!info.isFile()) throw new BerthError("BERTH_E_IMAGE_BUILD", `${source} is not a regular file`);
    const key = this.prepare(imagePath);
    const mode = options.mode ?? info.mode & 0o777;
    this.nodes.set(key, { kind: "file", source, size: info.size, mode, uid: options.uid ?? 0, gid: options.gid ?? 0 });
    return this;
  }

  /**
   * A host directory, recursively, at `imagePath` ("/" for a whole root filesystem). Symlinks inside it are
   * kept as symlinks, and every file and directory keeps its host permission bits, setuid, setgid and sticky
   * included (a root filesystem needs them: /tmp, su, passwd).
   */
  async hostTree(imagePath: string, source: string, options: HostTreeOptions = {}): Promise<this> {
    const { skip = () => false, keepOwners = false } = options;
    const info = await statHost(source);
    if (!info.isDirectory()) throw new BerthError("BERTH_E_IMAGE_BUILD", `${source} is not a directory`);
    const owner = (entry: Stats): Owner => (keepOwners ? { uid: entry.uid, gid: entry.gid } : { uid: 0, gid: 0 });
    if (!isRoot(imagePath)) this.dir(imagePath, { mode: info.mode & 0o7777, ...owner(info) });
    const walk = async (relative: string): Promise<void> => {
      for (const name of (await readdir(path.join(source, relative))).sort()) {
        const rel = relative === "" ? name : `${relative}/${name}`;
        if (skip(rel)) continue;
        const hostPath = path.join(source, rel);
        const target = `${imagePath}/${rel}`;
        const entry = await lstat(hostPath);
        if (entry.isSymbolicLink()) this.symlink(target, await readlink(hostPath));
        else if (entry.isDirectory()) {
          this.dir(target, { mode: entry.mode & 0o7777, ...owner(entry) });
          await walk(rel);
        } else if (entry.isFile()) {
          this.nodes.set(this.prepare(target), { kind: "file", source: hostPath, size: entry.size, mode: entry.mode & 0o7777, ...owner(entry) });
        }
        // Sockets, fifos and devices have no place in an image or a build context (the engine provides /dev).
      }
    };
    await walk("");
    return this;
  }

  /** The archive, produced as it is read; a failure (a host file that changed or vanished) destroys the stream. */
  pack(signal?: AbortSignal): Readable {
    const archive = tarPack();
    const entries = [...this.nodes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    // Small files are read ahead, several at a time: one read per file instead of a stream per file is what
    // makes a context of thousands of node_modules files quick to produce.
    const reads = new Map<number, Promise<Buffer>>();
    const readAhead = (from: number): void => {
      for (let i = from; i < Math.min(entries.length, from + READ_AHEAD); i++) {
        const node = entries[i]?.[1];
        if (node?.kind === "file" && node.size <= SMALL_FILE && !reads.has(i)) {
          const read = readFile(node.source);
          read.catch(() => undefined); // Awaited (and reported) when its turn comes.
          reads.set(i, read);
        }
      }
    };
    const write = async (): Promise<void> => {
      for (let i = 0; i < entries.length; i++) {
        if (signal?.aborted) throw new BerthError("BERTH_E_ABORTED", "writing the image archive was aborted", { cause: signal.reason });
        readAhead(i);
        const [name, node] = entries[i] as [string, Node];
        const content = reads.get(i);
        reads.delete(i);
        await writeEntry(archive, name, node, content === undefined ? undefined : await content);
      }
      archive.finalize();
    };
    // The failure reaches the reader through the stream returned below; once that reader has gone (an aborted
    // upload), there is nobody left to tell, and an unhandled 'error' would crash the process instead.
    archive.on("error", () => undefined);
    write().catch((err: unknown) => {
      archive.destroy(
        isBerthError(err) ? err : new BerthError("BERTH_E_IMAGE_BUILD", `cannot write the image archive: ${describeError(err)}`, { cause: err }),
      );
    });
    // tar-stream's streams are streamx streams; callers (dockerode, pipeline) get a Node stream. Its chunks
    // are as small as one 512-byte header; sending each as its own HTTP chunk makes uploads several times slower.
    const out = Readable.from(coalesce(archive as unknown as AsyncIterable<Buffer>), { objectMode: false });
    // A reader that stops early (abort, engine error) stops the writer too, so no file read is left pending.
    out.once("close", () => archive.destroy());
    return out;
  }

  /** Resolves `imagePath` through the tree's symlinks and creates missing parent directories. */
  private prepare(imagePath: string): string {
    const key = this.resolve(imagePath);
    const parts = key.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const node = this.nodes.get(parent);
      if (node === undefined) this.nodes.set(parent, { kind: "dir", mode: 0o755, uid: 0, gid: 0 });
      else if (node.kind !== "dir") {
        throw new BerthError("BERTH_E_IMAGE_BUILD", `cannot put /${key} in the image: /${parent} is not a directory`);
      }
    }
    return key;
  }

  /** The canonical key (no leading slash) of a path whose directories may pass through symlinks in the tree. */
  private resolve(imagePath: string): string {
    let parts = normalize(imagePath);
    for (let hops = 0; hops <= MAX_SYMLINK_HOPS; hops++) {
      const at = parts.slice(0, -1).findIndex((_, i) => this.nodes.get(parts.slice(0, i + 1).join("/"))?.kind === "symlink");
      if (at < 0) return parts.join("/");
      const link = this.nodes.get(parts.slice(0, at + 1).join("/")) as { target: string };
      const base = link.target.startsWith("/") ? [] : parts.slice(0, at);
      parts = normalize([...base, link.target, ...parts.slice(at + 1)].join("/"));
    }
    throw new BerthError("BERTH_E_IMAGE_BUILD", `too many symbolic links resolving ${imagePath} in the image`);
  }
}

async function* coalesce(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    pending.push(chunk);
    size += chunk.length;
    if (size >= CHUNK) {
      yield Buffer.concat(pending, size);
      pending = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}

function isRoot(imagePath: string): boolean {
  return imagePath.split("/").every((part) => part === "" || part === ".");
}

function normalize(p: string): string[] {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  if (out.length === 0) throw new BerthError("BERTH_E_IMAGE_BUILD", `"${p}" names the image root, not a file in it`);
  return out;
}

async function statHost(source: string): Promise<Stats> {
  try {
    return await stat(source);
  } catch (err) {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `cannot read ${source}: ${describeError(err)}`, { cause: err });
  }
}

async function writeEntry(archive: ReturnType<typeof tarPack>, name: string, node: Node, content?: Buffer): Promise<void> {
  const base: Partial<Header> & { name: string } = { name, mtime: MTIME, uid: 0, gid: 0 };
  switch (node.kind) {
    case "dir":
      return entry(archive, { ...base, type: "directory", mode: node.mode, uid: node.uid, gid: node.gid });
    case "symlink":
      return entry(archive, { ...base, type: "symlink", linkname: node.target, mode: 0o777 });
    case "data":
      return entry(archive, { ...base, type: "file", mode: node.mode, uid: node.uid, gid: node.gid, size: node.data.length }, node.data);
    case "file": {
      const header = { ...base, type: "file" as const, mode: node.mode, uid: node.uid, gid: node.gid, size: node.size };
      if (content !== undefined) {
        if (content.length !== node.size) {
          throw new BerthError("BERTH_E_IMAGE_BUILD", `${node.source} changed while the image archive was written`);
        }
        return entry(archive, header, content);
      }
      // tar-stream fails the entry if the file's length is not the size recorded when it was added.
      await pipeline(createReadStream(node.source), archive.entry(header));
      return;
    }
  }
}

function entry(archive: ReturnType<typeof tarPack>, header: Partial<Header> & { name: string }, data?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (data === undefined) archive.entry(header, done);
    else archive.entry(header, data, done);
  });
}

import { chown, mkdtemp, rm, symlink, writeFile, chmod, mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { extract } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBerthError } from "../wire/errors.js";
import { productionDependencies } from "../images/production-deps.js";
import { parseImageRef, registryHost, toTag } from "../engine/refs.js";
import { TarTree } from "../shared/tar-tree.js";

interface Entry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  linkname: string | null;
  body: string;
}

async function entries(stream: Readable): Promise<Entry[]> {
  const out: Entry[] = [];
  const reader = extract();
  const done = new Promise<void>((resolve, reject) => {
    reader.on("entry", (header, body, next) => {
      const chunks: Buffer[] = [];
      body.on("data", (c: unknown) => chunks.push(c as Buffer));
      body.on("end", () => {
        out.push({ name: header.name, type: header.type, mode: header.mode, uid: header.uid, gid: header.gid, linkname: header.linkname ?? null, body: Buffer.concat(chunks).toString() });
        next();
      });
    });
    reader.on("finish", resolve);
    reader.on("error", reject);
    stream.on("error", reject);
  });
  stream.pipe(reader as unknown as NodeJS.WritableStream);
  await done;
  return out;
}

describe("TarTree", () => {
  let dir = "";

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-tar-tree-"));
    await mkdir(path.join(dir, "tree/sub"), { recursive: true });
    await writeFile(path.join(dir, "tree/sub/a.txt"), "a");
    await writeFile(path.join(dir, "tree/run.sh"), "#!/bin/sh\n");
    await chmod(path.join(dir, "tree/run.sh"), 0o755);
    await symlink("sub/a.txt", path.join(dir, "tree/link"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("puts files behind the tree's own symlinks where an engine extracting it would, sorted, owned by root", async () => {
    const tree = new TarTree().symlink("lib", "usr/lib").data("/lib/x86_64-linux-gnu/libc.so.6", "libc");
    const list = await entries(tree.pack());
    expect(list.map((e) => `${e.type} ${e.name}`)).toEqual([
      "symlink lib",
      "directory usr",
      "directory usr/lib",
      "directory usr/lib/x86_64-linux-gnu",
      "file usr/lib/x86_64-linux-gnu/libc.so.6",
    ]);
    expect(list.every((e) => e.uid === 0)).toBe(true);
    expect(tree.has("/lib/x86_64-linux-gnu/libc.so.6")).toBe(true);
  });

  it("copies a host tree with modes and symlinks, skipping what it is told to", async () => {
    const tree = new TarTree();
    await tree.hostTree("opt/t", path.join(dir, "tree"), { skip: (rel) => rel === "sub/skip" });
    const list = await entries(tree.pack());
    const byName = new Map(list.map((e) => [e.name.replace(/\/$/, ""), e]));
    expect(byName.get("opt/t/run.sh")).toMatchObject({ type: "file", mode: 0o755, body: "#!/bin/sh\n" });
    expect(byName.get("opt/t/sub/a.txt")).toMatchObject({ type: "file", body: "a" });
    expect(byName.get("opt/t/link")).toMatchObject({ type: "symlink", linkname: "sub/a.txt" });
  });

  it("copies a whole root filesystem at /, keeping special permission bits and, when asked, owners", async () => {
    const root = path.join(dir, "rootfs");
    await mkdir(path.join(root, "tmp"), { recursive: true });
    await mkdir(path.join(root, "usr/bin"), { recursive: true });
    await chmod(path.join(root, "tmp"), 0o1777);
    await writeFile(path.join(root, "usr/bin/su"), "su");
    // Root can give the file to anyone; anyone else can only check that their own ids are kept.
    const isRoot = process.getuid?.() === 0;
    const [uid, gid] = isRoot ? [1234, 42] : [process.getuid?.() ?? 0, process.getgid?.() ?? 0];
    if (isRoot) await chown(path.join(root, "usr/bin/su"), uid, gid);
    // After chown, which clears setuid.
    await chmod(path.join(root, "usr/bin/su"), 0o4755);
    await symlink("usr/bin", path.join(root, "bin"));

    const kept = new Map((await entries((await new TarTree().hostTree("/", root, { keepOwners: true })).pack())).map((e) => [e.name.replace(/\/$/, ""), e]));
    expect([...kept.keys()]).toEqual(["bin", "tmp", "usr", "usr/bin", "usr/bin/su"]);
    expect(kept.get("tmp")).toMatchObject({ type: "directory", mode: 0o1777 });
    expect(kept.get("usr/bin/su")).toMatchObject({ type: "file", mode: 0o4755, uid, gid, body: "su" });
    expect(kept.get("bin")).toMatchObject({ type: "symlink", linkname: "usr/bin" });

    const rooted = await entries((await new TarTree().hostTree("/", root)).pack());
    expect(rooted.every((e) => e.uid === 0 && e.gid === 0)).toBe(true);
  });

  it("writes the same bytes for the same inputs", async () => {
    const make = async (): Promise<Buffer> => {
      const tree = new TarTree().dir("tmp", { mode: 0o1777 });
      await tree.hostTree("x", path.join(dir, "tree"));
      const chunks: Buffer[] = [];
      for await (const chunk of tree.pack()) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    };
    expect((await make()).equals(await make())).toBe(true);
  });

  it("fails the stream with a coded error when a host file changed after it was added", async () => {
    const file = path.join(dir, "changing.txt");
    await writeFile(path.join(dir, "changing.txt"), "short");
    const tree = new TarTree();
    await tree.hostFile("c.txt", file);
    await writeFile(file, "much longer than before");
    const err = await entries(tree.pack()).catch((e: unknown) => e);
    expect(isBerthError(err, "BERTH_E_IMAGE_BUILD")).toBe(true);
    expect((err as Error).message).toContain(file);
  });

  it("refuses a path that goes through a file", () => {
    const tree = new TarTree().data("etc/passwd", "root");
    expect(() => tree.data("etc/passwd/x", "no")).toThrow(/is not a directory/);
  });
});

describe("image references", () => {
  it("splits repository and tag, leaving registry ports alone", () => {
    expect(parseImageRef("127.0.0.1:5000/dev/flow:abc")).toEqual({ repository: "127.0.0.1:5000/dev/flow", tag: "abc" });
    expect(parseImageRef("localhost:5000/flow")).toEqual({ repository: "localhost:5000/flow", tag: "latest" });
    expect(parseImageRef("node:20-bookworm-slim")).toEqual({ repository: "node", tag: "20-bookworm-slim" });
    expect(registryHost("127.0.0.1:5000/x:1")).toBe("127.0.0.1:5000");
    expect(registryHost("library/node:20")).toBe("docker.io");
    expect(registryHost("node")).toBe("docker.io");
    expect(toTag("2.8.2+ds1")).toBe("2.8.2-ds1");
  });
});

describe("production dependency closure", () => {
  it("follows dependencies like Node and leaves dev dependencies out", async () => {
    const deps = await productionDependencies(fileURLToPath(new URL("..", import.meta.url)));
    expect(deps).toEqual(expect.arrayContaining(["node_modules/zod", "node_modules/dockerode", "node_modules/tar-stream"]));
    expect(deps.some((d) => /node_modules\/(vitest|typescript|@types\/dockerode)$/.test(d))).toBe(false);
    expect(deps).toEqual([...deps].sort());
  });
});

/**
 * The agent's image garbage collection: its decisions on a fake engine, then the same collector against the
 * real engine, on images this suite makes (scoped by its label, so that no other suite's image is touched).
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import { PassThrough } from "node:stream";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { freeBytes } from "../agent/disk.js";
import { ImageGc, type Removal } from "../agent/image-gc.js";
import type { ContainerEngine, ContainerInfo, ImageInfo } from "../engine/port.js";
import { canonicalRef } from "../engine/refs.js";
import { berthImageKeeper } from "../images/index.js";
import { TarTree } from "../shared/tar-tree.js";
import { TEST_LABEL, dockerSuite, suiteTitle } from "./support/docker-suite.js";

function fakeEngine(free: { bytes: number }, images: ImageInfo[], containers: Partial<ContainerInfo>[], failing: string[] = []) {
  const removed: string[] = [];
  const engine = {
    listImages: async (labels: Record<string, string>) =>
      images.filter((i) => Object.entries(labels).every(([k, v]) => i.labels[k] === v) && !i.tags.every((t) => removed.includes(t))),
    listContainers: async () => containers as ContainerInfo[],
    removeImage: async (ref: string) => {
      if (failing.includes(ref)) throw new Error(`conflict: unable to remove ${ref}`);
      removed.push(ref);
      const image = images.find((i) => i.tags.includes(ref));
      if (image && image.tags.every((t) => removed.includes(t))) free.bytes += image.sizeBytes;
    },
  } as unknown as ContainerEngine;
  return { engine, removed };
}

function collector(engine: ContainerEngine, free: { bytes: number } | (() => Promise<number>), kept: string[], current?: string, watermarks = { low: 100, high: 300 }) {
  const warnings: string[] = [];
  const log = pino({ level: "warn" }, new PassThrough().on("data", (line: Buffer) => warnings.push(String(JSON.parse(line.toString()).msg))));
  const reported: Removal[] = [];
  const gc = new ImageGc({
    engine,
    keptImages: async () => kept,
    berthImage: () => current,
    freeBytes: typeof free === "function" ? free : async () => free.bytes,
    lowWatermarkBytes: watermarks.low,
    highWatermarkBytes: watermarks.high,
    log: () => log,
    onRemoved: (r) => reported.push(r),
  });
  return { gc, warnings, reported };
}

const image = (tag: string, labels: Record<string, string>, createdAt: number, sizeBytes = 100): ImageInfo => ({
  id: `sha256:${tag.replace(/\W/g, "")}`,
  tags: [tag],
  digests: [],
  labels,
  createdAt,
  sizeBytes,
});
const storage = (tag: string, createdAt: number) => image(tag, { "io.berth.storage": "docker" }, createdAt);
const runtime = (tag: string, createdAt: number) => image(tag, { "io.berth.image": "berth" }, createdAt);

describe("image garbage collection", () => {
  it("does nothing while free disk is over the low watermark", async () => {
    const free = { bytes: 100 };
    const { engine, removed } = fakeEngine(free, [storage("old:1", 1)], []);
    expect(await collector(engine, free, []).gc.collect()).toEqual([]);
    expect(removed).toEqual([]);
  });

  it("removes unneeded images oldest first until free disk is over the high watermark, never a kept or used one", async () => {
    const free = { bytes: 50 };
    const images = [
      storage("flow:v2", 0.5),
      storage("flow:v1", 2),
      storage("busy:1", 1),
      storage("by-id:1", 1),
      runtime("berth:oldest", 0),
      runtime("berth:mine", 3),
      runtime("berth:newest", 9),
      storage("flow:v0", 1),
    ];
    const { engine, removed } = fakeEngine(free, images, [{ image: "busy:1" }, { image: "renamed", imageId: "sha256:byid1" }]);
    const { gc, reported } = collector(engine, free, ["docker.io/library/flow:v2"], "berth:mine");
    const result = await gc.collect();
    // 50 free: berth:oldest (created at 0) → 150, flow:v0 → 250, flow:v1 → 350 ≥ 300: done. flow:v2 is kept (in
    // the server's list, written in another form), busy:1 and by-id:1 run in containers, berth:mine is this
    // agent's and berth:newest the newest.
    expect(removed).toEqual(["berth:oldest", "flow:v0", "flow:v1"]);
    expect(result.map((r) => [r.kind, r.reason])).toEqual([
      ["runtime", expect.stringContaining("runtime image")],
      ["storage", expect.stringContaining("storage image")],
      ["storage", expect.stringContaining("storage image")],
    ]);
    expect(reported).toEqual(result);
    // Even with all the room wanted, nothing needed goes.
    free.bytes = 0;
    await collector(engine, free, ["flow:v2"], "berth:mine", { low: 1e15, high: 1e15 }).gc.collect();
    expect(removed.sort()).toEqual(["berth:oldest", "flow:v0", "flow:v1"].sort());
  });

  it("leaves an image the engine will not remove, says so, and goes on with the next", async () => {
    const free = { bytes: 0 };
    const { engine, removed } = fakeEngine(free, [storage("stuck:1", 1), storage("old:1", 2)], [], ["stuck:1"]);
    const { gc, warnings } = collector(engine, free, []);
    expect((await gc.collect()).map((r) => r.image.tags)).toEqual([["old:1"]]);
    expect(removed).toEqual(["old:1"]);
    expect(warnings).toEqual([expect.stringMatching(/could not remove image stuck:1 \(.*unable to remove stuck:1.*\); leaving it/)]);
  });

  it("runs one pass at a time: a second call joins the pass under way", async () => {
    const free = { bytes: 0 };
    const { engine, removed } = fakeEngine(free, [storage("old:1", 1)], []);
    const { gc } = collector(engine, free, []);
    const [a, b] = await Promise.all([gc.collect(), gc.collect()]);
    expect(a).toBe(b);
    expect(removed).toEqual(["old:1"]);
  });
});

describe("image references as the engine lists them", () => {
  it("drops Docker Hub's host and library/, and adds :latest when no tag or digest is given", () => {
    expect(canonicalRef("node")).toBe("node:latest");
    expect(canonicalRef("docker.io/library/node:20")).toBe("node:20");
    expect(canonicalRef("docker.io/acme/flow")).toBe("acme/flow:latest");
    expect(canonicalRef("localhost:5000/dev/flow")).toBe("localhost:5000/dev/flow:latest");
    expect(canonicalRef("registry.test/x/flow:v2")).toBe("registry.test/x/flow:v2");
    expect(canonicalRef("docker.io/acme/flow@sha256:abc")).toBe("acme/flow@sha256:abc");
  });
});

describe("the agent's berth image", () => {
  it("is made once, made again when something removed it, and a failure to make it is not remembered", async () => {
    const present = new Set<string>();
    let builds = 0;
    let failNext = true;
    const engine = {
      imageExists: async (ref: string) => present.has(ref),
      buildImage: async ({ tag }: { tag: string }) => {
        builds++;
        if (failNext) {
          failNext = false;
          throw new Error("engine went away");
        }
        present.add(tag);
        return { imageId: "sha256:x", output: [] };
      },
      tagImage: async (_source: string, target: string) => void present.add(target),
    } as unknown as ContainerEngine;
    // Whatever base the keeper asks for is there already.
    const base = "berth-node-base:test";
    present.add(base);
    const keeper = berthImageKeeper(engine, { baseImage: base });
    await expect(keeper()).rejects.toThrow("engine went away");
    const ref = await keeper();
    expect(await keeper()).toBe(ref);
    expect(builds).toBe(2);
    present.delete(ref);
    expect(await keeper()).toBe(ref);
    expect(builds).toBe(3);
  });
});

const suite = await dockerSuite("image-gc");

describe.skipIf(suite.skipReason !== undefined)(suiteTitle("image garbage collection on the real engine", suite), () => {
  const { engine, id } = suite;
  const repo = `berth-test-${id}`;
  // This suite's images only: the real engine lists and removes, filtered by the suite's label too.
  const scoped = Object.assign(Object.create(engine) as ContainerEngine, {
    listImages: (labels: Record<string, string>) => engine.listImages({ ...labels, [TEST_LABEL]: id }),
  });

  async function build(tag: string, labels: Record<string, string>): Promise<void> {
    const context = new TarTree();
    context.data("Dockerfile", "FROM scratch\nCOPY content /content\n").data("content", `${tag}\n`);
    await engine.buildImage({ context: context.pack(), tag: `${repo}/${tag}`, labels: { ...labels, [TEST_LABEL]: id } });
  }

  afterAll(async () => {
    await suite.cleanup();
    for (const i of await engine.listImages({ [TEST_LABEL]: id })) await engine.removeImage(i.id).catch(() => undefined);
  });

  it("removes an old flow version's image and an old runtime image, and keeps the current, the used and the newest", { timeout: 60_000 }, async () => {
    await build("berth:old", { "io.berth.image": "berth" });
    await build("flow:v1", { "io.berth.storage": "docker" });
    await build("flow:v2", { "io.berth.storage": "docker" });
    await build("busy:1", { "io.berth.storage": "docker" });
    // Created after berth:old, by at least the second the engine's timestamps resolve.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await build("berth:new", { "io.berth.image": "berth" });
    // Created, never started (the image has no program): a container that uses busy:1 all the same.
    execFileSync("docker", ["create", "--label", `${TEST_LABEL}=${id}`, `${repo}/busy:1`, "/nothing"], { stdio: "ignore" });
    // The watermarks are set to this disk's free space: under the low one now, and the few bytes these images
    // free never reach the high one, so everything that may go goes.
    const disk = () => freeBytes(os.tmpdir());
    const now = await disk();
    const { gc } = collector(scoped, disk, [`${repo}/flow:v2`], undefined, { low: now + 1024 ** 3, high: now + 2 * 1024 ** 3 });
    const removed = await gc.collect();
    expect(removed.map((r) => [r.kind, r.image.tags]).sort()).toEqual([
      ["runtime", [`${repo}/berth:old`]],
      ["storage", [`${repo}/flow:v1`]],
    ]);
    expect(removed.every((r) => r.image.sizeBytes > 0)).toBe(true);
    const present = async (tag: string) => engine.imageExists(`${repo}/${tag}`);
    expect(await present("flow:v1")).toBe(false);
    expect(await present("berth:old")).toBe(false);
    expect(await present("flow:v2")).toBe(true);
    expect(await present("busy:1")).toBe(true);
    expect(await present("berth:new")).toBe(true);
  });
});

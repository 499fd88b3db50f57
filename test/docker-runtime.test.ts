import { createServer, type Server } from "node:net";
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBerthError } from "../wire/errors.js";
import type { ContainerEvent, ImageEvent } from "../engine/port.js";
import { createDockerEngine } from "../engine/docker-engine.js";
import { ensureNodeBaseImage } from "../images/index.js";
import { TarTree } from "../shared/tar-tree.js";
import { TEST_LABEL, dockerSuite, suiteTitle } from "./support/docker-suite.js";
import { until } from "./support/wait.js";

const suite = await dockerSuite("rt");
const { engine, id } = suite;

function dockerfileContext(dockerfile: string): ReturnType<TarTree["pack"]> {
  return new TarTree().data("Dockerfile", dockerfile).pack();
}

describe.skipIf(suite.skipReason !== undefined)(suiteTitle("DockerEngine against the real engine", suite), () => {
  let base = "";
  const images: string[] = [];

  beforeAll(async () => {
    base = await ensureNodeBaseImage(engine);
  });

  afterAll(async () => {
    const left = await suite.cleanup();
    for (const image of images) await engine.removeImage(image);
    expect(left).toEqual([]);
  });

  describe("ping", () => {
    it("answers when the engine is there", async () => {
      await expect(engine.ping()).resolves.toBeUndefined();
    });

    it("names the socket and what to do when nothing listens there", async () => {
      const socketPath = path.join(os.tmpdir(), `berth-no-engine-${id}.sock`);
      const err = await createDockerEngine({ socketPath }).ping().catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")).toBe(true);
      expect((err as Error).message).toBe(`cannot reach the Docker engine at ${socketPath} (connect ENOENT): is dockerd running?`);
    });

    it("gives up after its timeout when the socket never answers", async () => {
      const socketPath = path.join(os.tmpdir(), `berth-silent-engine-${id}.sock`);
      const server: Server = createServer(() => {});
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
      try {
        const started = Date.now();
        const err = await createDockerEngine({ socketPath, pingTimeoutMs: 200 }).ping().catch((e: unknown) => e);
        expect(Date.now() - started).toBeLessThan(2000);
        expect(isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")).toBe(true);
        expect((err as Error).message).toContain("no answer within 200 ms");
      } finally {
        server.close();
        await rm(socketPath, { force: true });
      }
    });
  });

  describe("buildImage", () => {
    it("builds, reports each output line and returns the image id", async () => {
      const tag = `berth-test-${id}:ok`;
      images.push(tag);
      const lines: string[] = [];
      const result = await engine.buildImage({
        context: dockerfileContext(`FROM ${base}\nRUN echo built-${id} > /marker\nCMD ["cat", "/marker"]\n`),
        tag,
        labels: { [TEST_LABEL]: id },
        onOutput: (line) => lines.push(line),
      });
      expect(result.imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
      // The engine appends a LABEL step for `labels`, so the step count is not fixed.
      expect(lines.some((l) => new RegExp(`^Step 2/\\d+ : RUN echo built-${id} > /marker$`).test(l))).toBe(true);
      expect(result.output).toEqual(lines);
      expect(await engine.imageExists(tag)).toBe(true);

      const cid = await engine.runContainer(suite.spec(tag, ["cat", "/marker"]));
      expect(await engine.waitContainer(cid)).toBe(0);
      expect((await engine.containerOutput(cid, 10)).trim()).toBe(`built-${id}`);
    });

    it("fails with the failing step, the command's output and the engine's error", async () => {
      const tag = `berth-test-${id}:broken`;
      const err = await engine
        .buildImage({
          context: dockerfileContext(`FROM ${base}\nRUN echo preparing-${id} && echo boom-${id} >&2 && exit 3\nRUN echo never\n`),
          tag,
        })
        .catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_IMAGE_BUILD")).toBe(true);
      const message = (err as Error).message;
      expect(message).toContain(`docker build of ${tag} failed at Step 2/3 : RUN echo preparing-${id}`);
      expect(message).toContain(`boom-${id}`);
      expect(message).toContain("returned a non-zero code: 3");
      const details = (err as { details: { output: string[]; step: string } }).details;
      expect(details.step).toContain("Step 2/3");
      expect(details.output.some((l) => l.includes(`preparing-${id}`))).toBe(true);
      expect(await engine.imageExists(tag)).toBe(false);
    });

    it("aborts a running build, leaving no image behind", async () => {
      const tag = `berth-test-${id}:aborted`;
      const controller = new AbortController();
      const started = Date.now();
      const err = await engine
        .buildImage({
          context: dockerfileContext(`FROM ${base}\nRUN echo started-${id} && sleep 30\n`),
          tag,
          onOutput: (line) => line === `started-${id}` && controller.abort(),
          signal: controller.signal,
        })
        .catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_ABORTED")).toBe(true);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(await engine.imageExists(tag)).toBe(false);
    });

    it("fails clearly when the base image is not on the host", async () => {
      const err = await engine
        .buildImage({ context: dockerfileContext(`FROM berth-test-missing-${id}:none\n`), tag: `berth-test-${id}:nobase` })
        .catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_IMAGE_BUILD")).toBe(true);
      expect((err as Error).message).toContain(`berth-test-missing-${id}`);
    });
  });

  describe("containers", () => {
    it("runs, waits for the exit code and returns the output tail, stdout and stderr interleaved", async () => {
      // The engine copies stdout and stderr separately: lines written in the same instant may swap, so pause.
      const script = "echo out-1; sleep 0.1; echo err-1 >&2; sleep 0.1; echo out-2; echo \"$GREETING\"; exit 7";
      const cid = await engine.runContainer(suite.spec(base, ["sh", "-c", script], { env: { GREETING: "hello from env" } }));
      expect(await engine.waitContainer(cid)).toBe(7);
      const info = await engine.inspectContainer(cid);
      expect(info).toMatchObject({ id: cid, state: "exited", exitCode: 7, image: base });
      expect(info?.labels[TEST_LABEL]).toBe(id);
      expect((await engine.containerOutput(cid, 100)).split("\n")).toEqual(["out-1", "err-1", "out-2", "hello from env", ""]);
      expect(await engine.containerOutput(cid, 1)).toBe("hello from env\n");
    });

    it("stops a container that handles SIGTERM within the grace period", async () => {
      const cid = await engine.runContainer(
        suite.spec(base, ["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]),
      );
      await waitForOutput(cid, "ready");
      const started = Date.now();
      await engine.stopContainer(cid, 5000);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await engine.waitContainer(cid)).toBe(0);
      expect(await engine.containerOutput(cid, 10)).toContain("got-term");
      await expect(engine.stopContainer(cid, 1000)).resolves.toBeUndefined();
    });

    it("kills a container that ignores SIGTERM once the grace period is over", async () => {
      const cid = await engine.runContainer(suite.spec(base, ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]));
      await waitForOutput(cid, "ready");
      const started = Date.now();
      await engine.stopContainer(cid, 1000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(await engine.waitContainer(cid)).toBe(137);
    });

    it("aborts a wait", async () => {
      const cid = await engine.runContainer(suite.spec(base, ["sleep", "30"]));
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100).unref();
      const err = await engine.waitContainer(cid, controller.signal).catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_ABORTED")).toBe(true);
      await engine.stopContainer(cid, 0);
    });

    it("lists containers by label, in every state", async () => {
      const a = await engine.runContainer(suite.spec(base, ["true"], { labels: { "io.berth.test-role": `a-${id}` } }));
      const b = await engine.runContainer(suite.spec(base, ["sleep", "30"], { labels: { "io.berth.test-role": `b-${id}` } }));
      await engine.waitContainer(a);
      const onlyA = await engine.listContainers({ [TEST_LABEL]: id, "io.berth.test-role": `a-${id}` });
      expect(onlyA.map((c) => c.id)).toEqual([a]);
      expect(onlyA[0]).toMatchObject({ state: "exited", exitCode: 0, image: base });
      const onlyB = await engine.listContainers({ "io.berth.test-role": `b-${id}` });
      expect(onlyB).toHaveLength(1);
      expect(onlyB[0]).toMatchObject({ id: b, state: "running", exitCode: null });
      expect(onlyB[0]?.name).toMatch(new RegExp(`^berth-test-${id}-\\d+$`));
      const all = await engine.listContainers({ [TEST_LABEL]: id });
      expect(all.map((c) => c.id)).toEqual(expect.arrayContaining([a, b]));
      await engine.stopContainer(b, 0);
    });

    it("removes a container that could not start and reports the engine's reason", async () => {
      const spec = suite.spec(base, [`/no/such/program-${id}`], { labels: { "io.berth.test-role": `nostart-${id}` } });
      const err = await engine.runContainer(spec).catch((e: unknown) => e);
      expect(isBerthError(err)).toBe(true);
      expect((err as Error).message).toContain(`starting container ${spec.name}`);
      expect((err as Error).message).toMatch(/no such file or directory|not found/);
      expect(await engine.listContainers({ "io.berth.test-role": `nostart-${id}` })).toEqual([]);
    });

    it("reports a missing image as BERTH_E_IMAGE_NOT_FOUND", async () => {
      const err = await engine.runContainer(suite.spec(`berth-test-missing-${id}:none`, ["true"])).catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_IMAGE_NOT_FOUND")).toBe(true);
    });

    it("removes idempotently, and a removed container inspects as undefined", async () => {
      const cid = await engine.runContainer(suite.spec(base, ["sleep", "30"]));
      await engine.removeContainer(cid);
      await engine.removeContainer(cid);
      expect(await engine.inspectContainer(cid)).toBeUndefined();
      expect(await engine.containerOutput(cid, 10)).toBe("");
      await expect(engine.stopContainer(cid, 0)).resolves.toBeUndefined();
    });
  });

  describe("container events", () => {
    const role = (name: string) => ({ "io.berth.test-role": `${name}-${id}` });

    it("follows start, die and destroy of the matching containers only, stamped to the nanosecond", async () => {
      const controller = new AbortController();
      const before = BigInt(Date.now()) * 1_000_000n;
      const seen = collect(engine.followContainerEvents({ labels: { [TEST_LABEL]: id, ...role("events") }, signal: controller.signal }));
      const other = await engine.runContainer(suite.spec(base, ["true"], { labels: role("elsewhere") }));
      const spec = suite.spec(base, ["sh", "-c", "sleep 0.2; exit 3"], { labels: role("events") });
      const cid = await engine.runContainer(spec);
      expect(await engine.waitContainer(cid)).toBe(3);
      await engine.removeContainer(cid);
      await engine.waitContainer(other);
      await seen.until((events) => events.some((e) => e.action === "destroy"));
      const after = BigInt(Date.now()) * 1_000_000n;

      const events = seen.events;
      expect(events.map((e) => e.action)).toEqual(["start", "die", "destroy"]);
      for (const e of events) {
        expect(e).toMatchObject({ id: cid, name: spec.name, labels: { [TEST_LABEL]: id, ...role("events") } });
        expect(e.labels).not.toHaveProperty("name");
        expect(e.labels).not.toHaveProperty("image");
        // Same host, same clock: the engine's stamps fall inside the test's own window (with a millisecond of slack).
        expect(e.timeNano).toBeGreaterThanOrEqual(before - 1_000_000n);
        expect(e.timeNano).toBeLessThanOrEqual(after + 1_000_000n);
      }
      const [start, die, destroy] = events as [ContainerEvent, ContainerEvent, ContainerEvent];
      expect(die.exitCode).toBe(3);
      expect(start.exitCode).toBeUndefined();
      expect(start.timeNano < die.timeNano && die.timeNano < destroy.timeNano).toBe(true);
      // The container slept 200 ms between start and die.
      expect(die.timeNano - start.timeNano).toBeGreaterThanOrEqual(200_000_000n);
      // All three on whole milliseconds would mean the stamps were cut to milliseconds or seconds on the way.
      expect(events.some((e) => e.timeNano % 1_000_000n !== 0n)).toBe(true);

      const abortedAt = Date.now();
      controller.abort();
      await expect(seen.done).resolves.toBeUndefined();
      expect(Date.now() - abortedAt).toBeLessThan(2_000);
    });

    it("keeps the events of the instant between the call and the first read", async () => {
      const controller = new AbortController();
      const stream = engine.followContainerEvents({ labels: { [TEST_LABEL]: id, ...role("early") }, signal: controller.signal });
      const cid = await engine.runContainer(suite.spec(base, ["true"], { labels: role("early") }));
      await engine.waitContainer(cid);
      await engine.removeContainer(cid);
      const seen = collect(stream);
      await seen.until((events) => events.length === 3);
      expect(seen.events.map((e) => [e.action, e.id])).toEqual([
        ["start", cid],
        ["die", cid],
        ["destroy", cid],
      ]);
      controller.abort();
      await seen.done;
    });

    it("ends at once when the signal is already aborted", async () => {
      const events = engine.followContainerEvents({ labels: { [TEST_LABEL]: id }, signal: AbortSignal.abort() });
      const seen = collect(events);
      await expect(seen.done).resolves.toBeUndefined();
      expect(seen.events).toEqual([]);
    });

    it("fails with BERTH_E_DOCKER_UNAVAILABLE when nothing listens at the socket", async () => {
      const socketPath = path.join(os.tmpdir(), `berth-no-engine-${id}.sock`);
      const events = createDockerEngine({ socketPath }).followContainerEvents({ labels: {}, signal: new AbortController().signal });
      const err = await collect(events).done.catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")).toBe(true);
      expect((err as Error).message).toContain(socketPath);
    });
  });

  describe("image events", () => {
    it("says when a reference moves to another image or goes, once subscribed", async () => {
      const controller = new AbortController();
      let subscribed = false;
      const seen = collect(engine.followImageEvents!({ signal: controller.signal, onSubscribed: () => (subscribed = true) }));
      const ref = `berth-test-moving-${id}:one`;
      await until("the engine to subscribe", () => subscribed);
      images.push(ref);
      const baseId = await engine.imageId!(base);
      await engine.tagImage(base, ref);
      await seen.until((events) => events.some((e) => e.action === "tag" && e.id === baseId));
      const moved = await engine.buildImage({ tag: ref, context: dockerfileContext(`FROM ${base}\nLABEL io.berth.test-moving=${id}\n`) });
      await seen.until((events) => events.some((e) => e.action === "tag" && e.id === moved.imageId));
      await engine.removeImage(ref);
      await seen.until((events) => events.some((e) => (e.action === "untag" || e.action === "delete") && e.id === moved.imageId));
      controller.abort();
      await expect(seen.done).resolves.toBeUndefined();
    });

    it("fails with BERTH_E_DOCKER_UNAVAILABLE when nothing listens at the socket, never calling it subscribed", async () => {
      const socketPath = path.join(os.tmpdir(), `berth-no-engine-${id}.sock`);
      let subscribed = false;
      const events = createDockerEngine({ socketPath }).followImageEvents!({ signal: new AbortController().signal, onSubscribed: () => (subscribed = true) });
      const err = await collect(events).done.catch((e: unknown) => e);
      expect(isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")).toBe(true);
      expect(subscribed).toBe(false);
    });
  });
});

/** Reads an event stream in the background; `until` waits, bounded, for each new event until `check` holds. */
function collect<T extends ContainerEvent | ImageEvent>(stream: AsyncIterable<T>) {
  const events: T[] = [];
  let arrived: () => void = () => {};
  let next = new Promise<void>((resolve) => (arrived = resolve));
  const done = (async () => {
    for await (const event of stream) {
      events.push(event);
      arrived();
      next = new Promise<void>((resolve) => (arrived = resolve));
    }
  })();
  // Tests that expect a failure observe it through `done`; this only keeps Node from reporting it first.
  done.catch(() => undefined);
  return {
    events,
    done,
    async until(check: (events: T[]) => boolean, timeoutMs = 10_000): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const seen = events.map((e) => `${e.action} ${"name" in e ? e.name : e.id}`).join(", ") || "none";
          reject(new Error(`the expected events did not arrive within ${timeoutMs} ms; seen: ${seen}`));
        }, timeoutMs);
      });
      const ended = done.then(() => {
        throw new Error("the event stream ended before the expected events arrived");
      });
      // Raced below on every turn; once `check` holds nobody awaits these, and that is fine.
      ended.catch(() => undefined);
      timedOut.catch(() => undefined);
      try {
        while (!check(events)) await Promise.race([next, ended, timedOut]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Waits (bounded) until the container has printed `text`: the signal tests need the trap installed first. */
async function waitForOutput(cid: string, text: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await engine.containerOutput(cid, 20)).includes(text)) {
    if (Date.now() > deadline) throw new Error(`container ${cid} did not print "${text}" within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

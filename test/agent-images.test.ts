/**
 * How an agent gets a run's image, decided without Docker: the engine port is a fake that records what it
 * is asked (the real builds and pulls are in test/e2e-build.test.ts), the server and its build contexts are
 * real.
 */
import { createHash } from "node:crypto";
import { describe, expect } from "vitest";
import { FAILED_BUILD_MEMORY_MS, ImageProvider } from "../agent/images.js";
import type { ImageIds } from "../agent/image-ids.js";
import { ApiClient } from "../client/api-client.js";
import type { BuildOptions, ContainerEngine } from "../engine/port.js";
import { HEALTHCHECK_FAILED_MARKER } from "../storage/healthcheck-marker.js";
import { BerthError, isBerthError } from "../wire/errors.js";
import type { LogLevel, StorageSpec } from "../wire/schema.js";
import { test as it, type TestServer } from "./support/server.js";
import { until } from "./support/wait.js";

type DockerSpec = Extract<StorageSpec, { type: "docker" }>;

interface FakeEngine {
  engine: ContainerEngine;
  present: Set<string>;
  pulls: string[];
  builds: BuildOptions[];
  /** What the next builds do: succeed, fail as a healthcheck does, or fail with this error. */
  buildFails: boolean;
  buildError: BerthError | undefined;
  /** How long a build takes, unless aborted. */
  buildMs: number;
  pullWorks: boolean;
}

function fakeEngine(): FakeEngine {
  const state: FakeEngine = {
    engine: undefined as unknown as ContainerEngine,
    present: new Set(),
    pulls: [],
    builds: [],
    buildFails: false,
    buildError: undefined,
    // Long enough that concurrent runs find the build under way.
    buildMs: 50,
    pullWorks: false,
  };
  state.engine = {
    imageExists: async (ref: string) => state.present.has(ref),
    pullImage: async (ref: string) => {
      state.pulls.push(ref);
      if (!state.pullWorks) throw new BerthError("BERTH_E_IMAGE_NOT_FOUND", `cannot pull image ${ref} from docker.io: not found`);
      state.present.add(ref);
    },
    buildImage: async (options: BuildOptions) => {
      state.builds.push(options);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, state.buildMs);
        options.signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(new BerthError("BERTH_E_ABORTED", `docker build of ${options.tag} was aborted`));
        });
      });
      if (state.buildError) throw state.buildError;
      if (state.buildFails) {
        options.onOutput?.(`${HEALTHCHECK_FAILED_MARKER} flow graph (/opt/berth/flows/f.mjs): task "t" needs input "x"`);
        throw new BerthError("BERTH_E_IMAGE_BUILD", "docker build failed at Step 7/8");
      }
      state.present.add(options.tag);
      return { imageId: "sha256:built", output: [] };
    },
  } as unknown as ContainerEngine;
  return state;
}

async function contextOn(server: TestServer, text = "a build context") {
  const archive = Buffer.from(text.repeat(100));
  const sha256 = createHash("sha256").update(archive).digest("hex");
  await server.store.putBuildContext(sha256, archive);
  const spec: DockerSpec = { type: "docker", image: `flow-${sha256.slice(0, 8)}:abc`, flows: {}, context: { sha256, size: archive.length, berthBase: true } };
  return { spec, archive };
}

interface ProviderOptions {
  pullPolicy: "always" | "if-not-present" | "never";
  buildOnPullFailure: boolean;
  buildTimeoutMs: number;
  stopping: AbortSignal;
  now: () => number;
  imageIds: ImageIds;
}

function provider(server: TestServer, fake: FakeEngine, options: Partial<ProviderOptions> = {}, fetch?: typeof globalThis.fetch) {
  const client = new ApiClient({ baseUrl: "http://berth.test", fetch: fetch ?? injectFetch(server) });
  return new ImageProvider({
    client,
    engine: fake.engine,
    options: {
      pullPolicy: options.pullPolicy ?? "if-not-present",
      buildOnPullFailure: options.buildOnPullFailure ?? true,
      buildTimeoutMs: options.buildTimeoutMs ?? 60_000,
      serverDownForMs: 0,
    },
    berthImage: async () => "berth:test",
    ...(options.stopping ? { stopping: options.stopping } : {}),
    ...(options.now ? { now: options.now } : {}),
    ...(options.imageIds ? { imageIds: options.imageIds } : {}),
  });
}

function injectFetch(server: TestServer): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const res = await server.app.inject({ method: (init?.method ?? "GET") as "GET", url: url.pathname, headers: init?.headers as Record<string, string> });
    return new Response(init?.method === "HEAD" ? null : res.rawPayload, { status: res.statusCode, headers: res.headers as Record<string, string> });
  }) as typeof fetch;
}

const lines = () => {
  const seen: { level: LogLevel; message: string }[] = [];
  return { seen, log: (level: LogLevel, message: string) => void seen.push({ level, message }) };
};

describe("an agent's images", () => {
  it("uses an image that is here, and pulls before it builds", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    fake.present.add(spec.image);
    expect(await provider(server, fake).ensure(spec, lines().log)).toEqual({ image: spec.image, source: "present" });
    expect({ pulls: fake.pulls, builds: fake.builds.length }).toEqual({ pulls: [], builds: 0 });
    fake.present.clear();
    fake.pullWorks = true;
    expect(await provider(server, fake).ensure(spec, lines().log)).toEqual({ image: spec.image, source: "pulled" });
    expect({ pulls: fake.pulls, builds: fake.builds.length }).toEqual({ pulls: [spec.image], builds: 0 });
  });

  it("forgets the image ids it remembered once it pulled or built an image itself", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    let changes = 0;
    const imageIds = { lookup: async () => undefined, changed: () => void changes++ } as unknown as ImageIds;
    fake.pullWorks = true;
    expect((await provider(server, fake, { imageIds }).ensure(spec, lines().log)).source).toBe("pulled");
    expect(changes).toBe(1);
    fake.present.clear();
    fake.pullWorks = false;
    expect((await provider(server, fake, { imageIds }).ensure(spec, lines().log)).source).toBe("built");
    expect(changes).toBe(2);
  });

  it("builds from the registered context when the pull fails, FROM its berth image, saying so in the run's logs", async ({ server }) => {
    const fake = fakeEngine();
    const { spec, archive } = await contextOn(server);
    const { seen, log } = lines();
    await provider(server, fake).ensure(spec, log);
    expect(fake.builds).toHaveLength(1);
    expect(fake.builds[0]).toMatchObject({ tag: spec.image, buildArgs: { BASE_IMAGE: "berth:test" } });
    const sent: Buffer[] = [];
    for await (const chunk of fake.builds[0]!.context) sent.push(chunk as Buffer);
    expect(Buffer.concat(sent).equals(archive)).toBe(true);
    const messages = seen.map((l) => l.message);
    expect(messages[0]).toMatch(new RegExp(`^could not pull ${spec.image} .*; building it here from the registered build context$`));
    expect(messages.slice(1)).toEqual([
      `building image ${spec.image} from the registered build context ${spec.context!.sha256.slice(0, 12)} (${spec.context!.size} bytes)`,
      expect.stringMatching(new RegExp(`^built image ${spec.image} in \\d+\\.\\d s FROM berth:test$`)),
    ]);
  });

  it("never pulls with pull policy never, and builds only when allowed to after a failed pull", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    await provider(server, fake, { pullPolicy: "never" }).ensure(spec, lines().log);
    expect({ pulls: fake.pulls.length, builds: fake.builds.length }).toEqual({ pulls: 0, builds: 1 });
    const strict = fakeEngine();
    const refused = await provider(server, strict, { pullPolicy: "always", buildOnPullFailure: false }).ensure(spec, lines().log).catch((e: unknown) => e);
    expect(isBerthError(refused, "BERTH_E_IMAGE_NOT_FOUND")).toBe(true);
    expect(strict.builds).toHaveLength(0);
  });

  it("builds an image once for runs that need it at the same time", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    const images = provider(server, fake, { pullPolicy: "never" });
    const logs = Array.from({ length: 5 }, () => lines());
    await Promise.all(logs.map(({ log }) => images.ensure(spec, log)));
    expect(fake.builds).toHaveLength(1);
    expect(logs.filter(({ seen }) => seen.some((l) => l.message.startsWith("building image"))).length).toBe(1);
    expect(logs.filter(({ seen }) => seen.some((l) => l.message.startsWith("waiting for the build of"))).length).toBe(4);
  });

  it("remembers a failed build: the next run fails at once, naming the check, without building again", async ({ server }) => {
    const fake = fakeEngine();
    fake.buildFails = true;
    const { spec } = await contextOn(server);
    const images = provider(server, fake, { pullPolicy: "never" });
    const first = await images.ensure(spec, lines().log).catch((e: unknown) => e);
    expect(isBerthError(first, "BERTH_E_HEALTHCHECK")).toBe(true);
    expect((first as Error).message).toContain(`flow graph (/opt/berth/flows/f.mjs): task "t" needs input "x"`);
    const second = await images.ensure(spec, lines().log).catch((e: unknown) => e);
    expect((second as Error).message).toMatch(/^an earlier build of .* on this agent failed; fix the flow and register it again:\n.*needs input "x"/s);
    expect(isBerthError(second, "BERTH_E_HEALTHCHECK")).toBe(true);
    expect(fake.builds).toHaveLength(1);
    // Registered anew, the flow has a new context: that one is built, under the same image name.
    fake.buildFails = false;
    const fixed = await contextOn(server, "the fixed build context");
    await images.ensure({ ...fixed.spec, image: spec.image }, lines().log);
    expect(fake.builds).toHaveLength(2);
  });

  it("remembers other build failures for a while, and the engine's trouble not at all", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    let now = Date.parse("2026-12-01T12:00:00Z");
    const images = provider(server, fake, { pullPolicy: "never", now: () => now });
    fake.buildError = new BerthError("BERTH_E_DOCKER_UNAVAILABLE", "the Docker engine went away");
    await expect(images.ensure(spec, lines().log)).rejects.toThrow("the Docker engine went away");
    fake.buildError = new BerthError("BERTH_E_IMAGE_BUILD", "npm ERR! network ETIMEDOUT");
    await expect(images.ensure(spec, lines().log)).rejects.toThrow("npm ERR! network ETIMEDOUT");
    expect(fake.builds).toHaveLength(2);
    fake.buildError = undefined;
    await expect(images.ensure(spec, lines().log)).rejects.toThrow(
      /^an earlier build of .* on this agent failed; this agent tries again after 2026-12-01T12:05:00.000Z:\nnpm ERR! network ETIMEDOUT$/,
    );
    expect(fake.builds).toHaveLength(2);
    now += FAILED_BUILD_MEMORY_MS;
    await images.ensure(spec, lines().log);
    expect(fake.builds).toHaveLength(3);
  });

  it("stops a build that outlasts agent.buildTimeout, and every build when the agent stops", async ({ server }) => {
    const fake = fakeEngine();
    fake.buildMs = 60_000;
    const { spec } = await contextOn(server);
    const slow = await provider(server, fake, { pullPolicy: "never", buildTimeoutMs: 100 }).ensure(spec, lines().log).catch((e: unknown) => e);
    expect(isBerthError(slow, "BERTH_E_IMAGE_BUILD")).toBe(true);
    expect((slow as Error).message).toBe(`building ${spec.image} took longer than agent.buildTimeout (100ms); stopped it`);
    const stopping = new AbortController();
    const images = provider(server, fake, { pullPolicy: "never", stopping: stopping.signal });
    const building = images.ensure(spec, lines().log).catch((e: unknown) => e);
    await until("the build has begun", () => fake.builds.length === 2);
    stopping.abort();
    expect(isBerthError(await building, "BERTH_E_ABORTED")).toBe(true);
  });

  it("a run that stops waiting leaves the build to the runs still waiting", async ({ server }) => {
    const fake = fakeEngine();
    fake.buildMs = 300;
    const { spec } = await contextOn(server);
    const images = provider(server, fake, { pullPolicy: "never" });
    const cancelled = new AbortController();
    const first = images.ensure(spec, lines().log, cancelled.signal).catch((e: unknown) => e);
    const second = images.ensure(spec, lines().log);
    cancelled.abort();
    expect(isBerthError(await first, "BERTH_E_ABORTED")).toBe(true);
    expect(await second).toEqual({ image: spec.image, source: "built" });
    expect(fake.builds).toHaveLength(1);
  });

  it("with pull policy always, runs the image this host has when the pull fails", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    fake.present.add(spec.image);
    const { seen, log } = lines();
    expect(await provider(server, fake, { pullPolicy: "always" }).ensure(spec, log)).toEqual({ image: spec.image, source: "present" });
    expect({ pulls: fake.pulls.length, builds: fake.builds.length }).toEqual({ pulls: 1, builds: 0 });
    expect(seen).toEqual([{ level: "warn", message: expect.stringMatching(new RegExp(`^could not pull ${spec.image} .*; running the image this host has$`)) }]);
  });

  it("does not build an image that appeared while the run looked for it", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    let looks = 0;
    fake.engine.imageExists = async () => ++looks > 1;
    await provider(server, fake, { pullPolicy: "never" }).ensure(spec, lines().log);
    expect({ looks, builds: fake.builds.length }).toEqual({ looks: 2, builds: 0 });
  });

  it("refuses a context that does not match its digest, and says what it cannot do without one", async ({ server }) => {
    const fake = fakeEngine();
    const { spec } = await contextOn(server);
    let downloads = 0;
    const tamperingOnce = (async (input: string | URL | Request, init?: RequestInit) => {
      const res = await injectFetch(server)(input, init);
      if (++downloads > 1) return res;
      return new Response(Buffer.concat([Buffer.from(await res.arrayBuffer()), Buffer.from("!")]), { status: res.status });
    }) as typeof fetch;
    const images = provider(server, fake, { pullPolicy: "never" }, tamperingOnce);
    const tampered = await images.ensure(spec, lines().log).catch((e: unknown) => e);
    expect((tampered as Error).message).toMatch(/^the build context downloaded for .* has sha256 [0-9a-f]{64}, not [0-9a-f]{64}: not building from it$/);
    expect(fake.builds).toHaveLength(0);
    // Not held against the context: a good download builds.
    await images.ensure(spec, lines().log);
    expect(fake.builds).toHaveLength(1);
    const { context: _, ...withoutContext } = spec;
    const none = await provider(server, fakeEngine()).ensure(withoutContext, lines().log).catch((e: unknown) => e);
    expect((none as Error).message).toMatch(/could not be pulled .*, and its flow was registered without a build context/);
  });
});

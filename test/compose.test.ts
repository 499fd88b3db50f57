/**
 * docker-compose.yml for real, from a fresh clone of this repository's current commit (so nothing that is
 * not committed, such as dist/ or node_modules/, can help): `docker-compose up -d --build` builds berth
 * with the multi-stage Dockerfile on base images made on this host, brings up the server, an agent with the
 * Docker socket and a registry, and a flow pushed to that registry runs in a container on the project network.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerAvailable, engine } from "./support/docker.js";
import { REPO, berth, freePort } from "./support/processes.js";

const run = promisify(execFile);
/** npm ci with better-sqlite3 compiled from source, then tsc: about four minutes on two cores with a cold cache. */
const BUILD_TIMEOUT_MS = 1_200_000;

describe.skipIf(!dockerAvailable)("docker-compose up --build from a fresh clone", () => {
  const project = `berthtest${process.pid}`;
  const image = `berth-test-${project}:compose`;
  let env: NodeJS.ProcessEnv;
  let api: string;
  let registry: string;
  let dir = "";
  let clone = "";
  let pushedImage: string | undefined;
  const compose = (args: string[], timeout = 180_000) =>
    run("docker-compose", ["-p", project, ...args], { cwd: clone, env, timeout, maxBuffer: 64 * 1024 * 1024 });
  const docker = async (...args: string[]) => (await run("docker", args, { timeout: 60_000 })).stdout;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-compose-"));
    clone = path.join(dir, "berth");
    const commit = (await run("git", ["rev-parse", "HEAD"], { cwd: REPO })).stdout.trim();
    if ((await run("git", ["status", "--porcelain"], { cwd: REPO })).stdout.trim() !== "") {
      console.info(`[compose] building commit ${commit}: uncommitted changes are not part of this test`);
    }
    await run("git", ["clone", "--quiet", "--no-checkout", REPO, clone]);
    await run("git", ["checkout", "--quiet", commit], { cwd: clone });

    // The official images when this host has them, otherwise images made here: the one for the build stage
    // takes about three minutes the first time (debootstrap), then is found.
    const base = await berth(["image", "base"], { timeoutMs: 300_000 });
    expect(base.code, base.stderr).toBe(0);
    const buildBase = await berth(["image", "build-base"], { timeoutMs: 900_000 });
    expect(buildBase.code, buildBase.stderr).toBe(0);
    const registryImage = await berth(["image", "registry"], { timeoutMs: 120_000 });
    expect(registryImage.code, registryImage.stderr).toBe(0);
    const [port, registryPort] = [await freePort(), await freePort()];
    api = `http://127.0.0.1:${port}`;
    registry = `localhost:${registryPort}/test/`;
    env = {
      ...process.env,
      BERTH_IMAGE: image,
      BERTH_BASE_IMAGE: base.stdout.trim(),
      BERTH_BUILD_IMAGE: buildBase.stdout.trim(),
      BERTH_REGISTRY_IMAGE: registryImage.stdout.trim(),
      BERTH_PORT: String(port),
      BERTH_REGISTRY_PORT: String(registryPort),
      BERTH_NETWORK: `${project}-net`,
      BERTH_AGENT_NAME: `${project}-agent`,
    };
    console.info(`[compose] ${commit.slice(0, 12)} with BASE_IMAGE=${env.BERTH_BASE_IMAGE} BUILD_IMAGE=${env.BERTH_BUILD_IMAGE}`);

    // --force-rm: a build step that fails leaves no container behind. `up --build` then builds again, as a
    // user's would; from the layers just made, that takes seconds.
    let started = Date.now();
    await compose(["build", "--force-rm"], BUILD_TIMEOUT_MS);
    console.info(`[compose] built ${image} from the clone in ${Math.round((Date.now() - started) / 1000)} s`);
    started = Date.now();
    await compose(["up", "-d", "--build"], BUILD_TIMEOUT_MS);
    console.info(`[compose] up -d --build took ${Math.round((Date.now() - started) / 1000)} s`);
  }, 2 * BUILD_TIMEOUT_MS + 900_000);

  afterAll(async () => {
    if (env) await compose(["down", "-v", "--timeout", "20"]).catch((err: Error) => process.stderr.write(`compose down: ${err.message}\n`));
    await engine.removeImage(image);
    if (pushedImage) await engine.removeImage(pushedImage);
    if (dir) await rm(dir, { recursive: true, force: true });
    const label = `label=com.docker.compose.project=${project}`;
    const left = await engine.listContainers({ "com.docker.compose.project": project });
    expect(left.map((c) => c.name)).toEqual([]);
    expect(await docker("network", "ls", "-q", "--filter", label)).toBe("");
    expect(await docker("volume", "ls", "-q", "--filter", label)).toBe("");
    expect(await engine.imageExists(image)).toBe(false);
  }, 180_000);

  it("builds berth from sources: production dependencies only, better-sqlite3 compiled for the image", async () => {
    const probe = [
      "ls /opt/berth/node_modules/berth/node_modules",
      `node -e 'const Db = require("/opt/berth/node_modules/berth/node_modules/better-sqlite3"); console.log("sqlite", new Db(":memory:").prepare("select 1 as one").get().one)'`,
      "berth --version",
    ].join(" && ");
    const { stdout } = await run("docker", ["run", "--rm", "--network", "none", image, "sh", "-c", probe], { timeout: 60_000 });
    const lines = stdout.split("\n");
    expect(lines).toEqual(expect.arrayContaining(["better-sqlite3", "fastify", "zod", "sqlite 1"]));
    expect(lines).not.toContain("typescript");
    expect(lines).not.toContain("vitest");
    expect(stdout).toMatch(/^\d+\.\d+\.\d+$/m);
  });

  it("brings up server, agent and registry; a pushed flow runs to Success on the project network", async () => {
    const file = path.join(dir, "registry-flow.ts");
    await copyFile(path.join(REPO, "test", "fixtures", "registry-flow.ts"), file);
    // The admin token the server made on its first start, read as the compose file tells users to.
    let token = "";
    for (let i = 0; i < 100 && !token; i++) {
      token = (await compose(["exec", "-T", "server", "cat", "/var/lib/berth-auth/admin.token"]).catch(() => ({ stdout: "" }))).stdout.trim();
      if (!token) await new Promise((r) => setTimeout(r, 200));
    }
    expect(token).toMatch(/^berth_admin_/);
    const cli = (args: string[], apiToken = token) => berth([...args, "--api", api], { env: { BERTH_TEST_REGISTRY: registry, BERTH_API_TOKEN: apiToken } });
    const refused = await cli(["flows"], "not-the-token");
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("does not accept this API token");

    let agents = await cli(["agents"]);
    for (let i = 0; i < 100 && !agents.stdout.includes(`${project}-agent`); i++) {
      await new Promise((r) => setTimeout(r, 200));
      agents = await cli(["agents"]);
    }
    expect(agents.stdout).toMatch(new RegExp(`${project}-agent .* online`));

    const registered = await cli(["register", file]);
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout).toContain("pushed");
    pushedImage = /storage: (\S+)/.exec(registered.stdout)?.[1];

    // The flow-run container reports to http://server:4200, a name that resolves on the project network only.
    const watched = await cli(["run", "Registry Flow", "--watch"]);
    expect(watched.code, watched.stdout + watched.stderr).toBe(0);
    expect(watched.stdout).toContain("[hello] pulled and ran");
    expect(watched.stdout).toMatch(/flow run \S+: Success/);
  });
});

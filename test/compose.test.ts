/**
 * docker-compose.yml for real: the server, an agent with the Docker socket and a registry come up (with the
 * images built offline), a flow pushed to that registry runs in a container on the project network.
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

describe.skipIf(!dockerAvailable)("docker-compose up", () => {
  const project = `berthtest${process.pid}`;
  let env: NodeJS.ProcessEnv;
  let api: string;
  let registry: string;
  let dir: string;
  let pushedImage: string | undefined;
  const compose = (...args: string[]) => run("docker-compose", ["-p", project, ...args], { cwd: REPO, env, timeout: 180_000 });

  beforeAll(async () => {
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    const registryImage = await berth(["image", "registry"], { timeoutMs: 120_000 });
    expect(registryImage.code, registryImage.stderr).toBe(0);
    const [port, registryPort] = [await freePort(), await freePort()];
    api = `http://127.0.0.1:${port}`;
    registry = `localhost:${registryPort}/test/`;
    env = {
      ...process.env,
      BERTH_IMAGE: image.stdout.trim(),
      BERTH_REGISTRY_IMAGE: registryImage.stdout.trim(),
      BERTH_PORT: String(port),
      BERTH_REGISTRY_PORT: String(registryPort),
      BERTH_NETWORK: `${project}-net`,
      BERTH_AGENT_NAME: `${project}-agent`,
    };
    await compose("up", "-d");
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-compose-"));
  }, 900_000);

  afterAll(async () => {
    await compose("down", "-v", "--timeout", "20").catch((err: Error) => process.stderr.write(`compose down: ${err.message}\n`));
    if (dir) await rm(dir, { recursive: true, force: true });
    if (pushedImage) await engine.removeImage(pushedImage);
    const left = await engine.listContainers({ "com.docker.compose.project": project });
    expect(left.map((c) => c.name)).toEqual([]);
  });

  it("brings up server, agent and registry; a pushed flow runs to Success", async () => {
    const file = path.join(dir, "registry-flow.ts");
    await copyFile(path.join(REPO, "test", "fixtures", "registry-flow.ts"), file);
    const cli = (args: string[]) => berth([...args, "--api", api], { env: { BERTH_TEST_REGISTRY: registry } });

    let agents = await cli(["agents"]);
    for (let i = 0; i < 100 && !agents.stdout.includes(`${project}-agent`); i++) {
      await new Promise((r) => setTimeout(r, 200));
      agents = await cli(["agents"]);
    }
    expect(agents.stdout).toMatch(new RegExp(`${project}-agent .* online`));

    const registered = await cli(["register", file]);
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout).toContain("pushed");

    const watched = await cli(["run", "Registry Flow", "--watch"]);
    expect(watched.code, watched.stdout + watched.stderr).toBe(0);
    expect(watched.stdout).toContain("[hello] pulled and ran");
    expect(watched.stdout).toMatch(/flow run \S+: Success/);
    pushedImage = /storage: (\S+)/.exec(registered.stdout)![1]!;
  });
});

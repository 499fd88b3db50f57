/**
 * Agents build what they cannot pull, for real: a flow registered with --no-build where no Docker engine
 * answers, built by the agent from the context the server keeps, rebuilt when its image is removed, built
 * once for five runs at once, and a build whose healthcheck fails failing its run, then the next run at once.
 */
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { containerGone, dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal } from "./support/runs.js";

const fixture = path.join(REPO, "test", "fixtures", "agent-built-flow.ts");
const id = `${process.pid}-${Date.now().toString(36)}`;

describe.skipIf(!dockerAvailable)("agents build what they cannot pull", () => {
  let dir: string;
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: ApiClient;
  const agents: BerthProcess[] = [];
  const images: string[] = [];

  const register = (flowName: string, imageName: string, extraEnv: Record<string, string> = {}, args: string[] = ["--no-build"], file = fixture) =>
    berth(["register", file, "--api", server.url, ...args], {
      env: { BERTH_TEST_IMAGE_NAME: imageName, BERTH_TEST_FLOW_NAME: flowName, ...extraEnv },
    });
  const logsOf = async (runId: string) => (await client.getLogs(runId, { after: 0, limit: 1000 })).logs.map((l) => l.message);
  const run = async (flowName: string) => (await client.createFlowRun({ flowName, labels: ["build"], parameters: {} })).flowRun.id;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-build-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    agents.push(await startAgent(server.url, ["build"], `builder-${id}`, ["--concurrency", "5"]));
  }, 900_000);

  afterAll(async () => {
    const leaked = await tearDown({ agents, server, client, dir });
    for (const image of images) await engine.removeImage(image).catch(() => undefined);
    expect(leaked).toEqual([]);
  });

  it("registers with no Docker engine at all, and the agent builds the image for the first run", async () => {
    const imageName = `berth-test-built-${id}`;
    // Nothing answers there: --no-build must not need an engine.
    const registered = await register("Agent Built Flow", imageName, { DOCKER_HOST: "tcp://127.0.0.1:9" });
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout).toContain("(not built here: the first agent that needs it builds it from the uploaded context)");
    const { flows } = await client.listFlows();
    const flow = flows.find((f) => f.name === "Agent Built Flow")!;
    const image = flow.storage.type === "docker" ? flow.storage.image : "";
    images.push(image);
    expect(image).toMatch(new RegExp(`^${imageName}:[0-9a-f]{12}$`));
    expect(await engine.imageExists(image)).toBe(false);

    const first = await run("Agent Built Flow");
    expect((await waitFinal(client, first, 300_000)).state).toBe("Success");
    const logs = await logsOf(first);
    // Its policy (if-not-present) tried a pull first: there is no registry to pull from.
    expect(logs.some((l) => l.startsWith(`could not pull ${image} (`) && l.endsWith("building it here from the registered build context"))).toBe(true);
    expect(logs.some((l) => l.startsWith(`building image ${image} from the registered build context`))).toBe(true);
    expect(logs.some((l) => new RegExp(`^built image ${image} in \\d+\\.\\d s FROM berth:`).test(l))).toBe(true);
    expect(logs).toContain("built by an agent");
    expect(await engine.imageExists(image)).toBe(true);

    // Present now: the next run neither pulls nor builds.
    const second = await run("Agent Built Flow");
    expect((await waitFinal(client, second, 120_000)).state).toBe("Success");
    expect((await logsOf(second)).some((l) => l.startsWith("building image"))).toBe(false);

    // Removed: built again.
    await containerGone(`berth-run-${second}`);
    await engine.removeImage(image);
    const third = await run("Agent Built Flow");
    expect((await waitFinal(client, third, 300_000)).state).toBe("Success");
    expect((await logsOf(third)).some((l) => l.startsWith(`building image ${image}`))).toBe(true);
  });

  it("without --no-build and without an engine, registers anyway and says so; an unchanged context is not sent again", async () => {
    const imageName = `berth-test-built-${id}`;
    const again = await register("Agent Built Flow", imageName, { DOCKER_HOST: "tcp://127.0.0.1:9" }, []);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/warning: cannot reach the Docker engine at tcp:\/\/127\.0\.0\.1:9 .*registering without building/);
    expect(again.stderr).toMatch(/build context [0-9a-f]{12} \(\d+ bytes\): already on the server/);
    expect(again.stdout).toContain("is unchanged");
  });

  it("builds once for five runs that need the image at the same time", async () => {
    const imageName = `berth-test-five-${id}`;
    const registered = await register("Five At Once", imageName);
    expect(registered.code, registered.stderr).toBe(0);
    const ids = await Promise.all(Array.from({ length: 5 }, () => run("Five At Once")));
    const finals = await Promise.all(ids.map((runId) => waitFinal(client, runId, 300_000)));
    expect(finals.map((r) => r.state)).toEqual(Array(5).fill("Success"));
    const logs = await Promise.all(ids.map(logsOf));
    images.push(logs.flat().find((l) => l.startsWith("building image"))!.split(" ")[2]!);
    // Each other run either waited for that build or came after it and found the image.
    expect(logs.filter((lines) => lines.some((l) => l.startsWith("building image"))).length).toBe(1);
  });

  it("fails a run whose image fails its healthcheck, naming the check; the next run fails at once without building", async () => {
    const imageName = `berth-test-unhealthy-${id}`;
    const registered = await register("Unhealthy Build", imageName, {}, ["--no-build"], path.join(REPO, "test", "fixtures", "agent-built-unhealthy.ts"));
    expect(registered.code, registered.stderr).toBe(0);
    const first = await run("Unhealthy Build");
    const failed = await waitFinal(client, first, 300_000);
    expect(failed.state).toBe("Failed");
    expect(failed.stateMessage).toContain("the healthcheck of");
    expect(failed.stateMessage).toContain('environment dependency "berth-test-module-that-does-not-exist"');
    const second = await run("Unhealthy Build");
    const fast = await waitFinal(client, second, 60_000);
    expect(fast.state).toBe("Failed");
    expect(fast.stateMessage).toMatch(/an earlier build of \S+ on this agent failed; fix the flow and register it again/);
    expect(fast.stateMessage).toContain('environment dependency "berth-test-module-that-does-not-exist"');
    expect((await logsOf(second)).some((l) => l.startsWith("building image"))).toBe(false);
    const { flows } = await client.listFlows();
    const image = flows.find((f) => f.name === "Unhealthy Build")!.storage;
    expect(image.type === "docker" && (await engine.imageExists(image.image))).toBe(false);
  });
});

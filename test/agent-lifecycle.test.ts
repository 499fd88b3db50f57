/**
 * The agent's state machine, without Docker: a server on loopback and an engine port that answers pings and
 * owns no containers. (Everything that runs containers is tested against the real engine elsewhere.)
 */
import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect } from "vitest";
import { Agent } from "../agent/agent.js";
import { ApiClient } from "../client/api-client.js";
import { compileAgentOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import type { ContainerEngine } from "../engine/port.js";
import { BerthError } from "../wire/errors.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { samples } from "./support/prometheus.js";
import { test as it, type TestServer } from "./support/server.js";
import { until } from "./support/wait.js";

/** An engine that answers (or not) and has no containers; nothing here may start one. */
function idleEngine(answers: () => boolean = () => true): ContainerEngine {
  const refuse = (): never => {
    throw new Error("this test starts no containers");
  };
  return {
    ping: async () => {
      if (!answers()) throw new BerthError("BERTH_E_DOCKER_UNAVAILABLE", "no engine here");
    },
    listContainers: async () => [],
    listImages: async () => [],
    imageExists: refuse,
    pullImage: refuse,
    buildImage: refuse,
    pushImage: refuse,
    importImage: refuse,
    removeImage: refuse,
    tagImage: refuse,
    runContainer: refuse,
    waitContainer: refuse,
    inspectContainer: refuse,
    containerOutput: refuse,
    followOutput: refuse,
    stopContainer: refuse,
    removeContainer: refuse,
    followContainerEvents: refuse,
  } as ContainerEngine;
}

async function agentOn(server: TestServer, engine = idleEngine(), agentConfig: Record<string, unknown> = {}) {
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const address = server.app.server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  const lines: { state?: string; from?: string; msg: string }[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString())), done()) }));
  const options = compileAgentOptions(defaultConfig({ apiUrl: url, agent: { name: "lifecycle", heartbeatInterval: "50ms", claimWait: "200ms", drainTimeout: "2s", ...agentConfig } }));
  const agent = new Agent({ client: new ApiClient({ baseUrl: url }), engine, logger, berthImage: () => Promise.reject(new Error("unused")) }, options);
  const transitions = () => lines.filter((l) => l.state !== undefined).map((l) => `${l.from} → ${l.state}`);
  return { agent, client: new ApiClient({ baseUrl: url }), transitions };
}

describe("the agent's lifetime", () => {
  it("goes starting → running → draining → stopped, logging each transition, and run() resolves once stopped", async ({ server }) => {
    const { agent, client, transitions } = await agentOn(server);
    const life = agent.run();
    await until("the agent to claim", () => agent.state === "running");
    expect((await client.listAgents()).agents.map((a) => [a.name, a.status])).toEqual([["lifecycle", "online"]]);
    let ended = false;
    void life.then(() => (ended = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(ended, "run() resolves only once the agent has stopped").toBe(false);
    const stopping = agent.stop();
    expect(agent.stop()).toBe(stopping);
    await stopping;
    await life;
    expect(ended).toBe(true);
    expect(agent.state).toBe("stopped");
    expect(transitions()).toEqual(["starting → running", "running → draining", "draining → stopped"]);
    await until("the server to hear it stopped", async () => (await client.listAgents()).agents[0]?.status === "stopped");
    // Stopped is final: neither stop() nor kill() moves it again.
    await agent.stop();
    agent.kill();
    expect(transitions()).toHaveLength(3);
  });

  it("stops at once on kill(), from running straight to stopped", async ({ server }) => {
    const { agent, transitions } = await agentOn(server);
    await agent.start();
    agent.kill();
    expect(agent.state).toBe("stopped");
    expect(transitions()).toEqual(["starting → running", "running → stopped"]);
  });

  it("can be stopped while it is still starting (the server is not there yet)", async ({ server }) => {
    const { agent, transitions } = await agentOn(server);
    await server.app.close();
    const starting = agent.start();
    await agent.stop();
    await starting;
    expect(agent.state).toBe("stopped");
    expect(transitions()).toEqual(["starting → draining", "draining → stopped"]);
  });

  it("reports itself unhealthy while its engine does not answer, and online again when it does", async ({ server }) => {
    let engineUp = true;
    const { agent, client } = await agentOn(server, idleEngine(() => engineUp));
    await agent.start();
    try {
      engineUp = false;
      await until("the agent to report unhealthy", async () => (await client.listAgents()).agents[0]?.status === "unhealthy", { timeoutMs: 5_000 });
      expect(agent.healthy).toBe(false);
      engineUp = true;
      await until("the agent to report online", async () => (await client.listAgents()).agents[0]?.status === "online", { timeoutMs: 10_000 });
      expect(agent.healthy).toBe(true);
    } finally {
      await agent.stop();
    }
  });

  it("says it stopped last: nothing it does while stopping makes the server think it is alive again", async ({ server }) => {
    let engineUp = true;
    const { agent, client } = await agentOn(server, idleEngine(() => engineUp));
    await agent.start();
    engineUp = false;
    await until("the agent to report unhealthy", async () => (await client.listAgents()).agents[0]?.status === "unhealthy", { timeoutMs: 5_000 });
    // Killed while it probes for its engine: the probe's end must not send one more heartbeat.
    agent.kill();
    engineUp = true;
    await until("the server to hear it stopped", async () => (await client.listAgents()).agents[0]?.status === "stopped");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await client.listAgents()).agents[0]?.status).toBe("stopped");
  });

  it("collects images when its disk runs low: an old flow version's image goes, the current one stays, counted in /metrics", async ({ server }) => {
    const name = uniqueName();
    const ref = (tag: string) => `registry.test/${name}:${tag}`;
    const removed: string[] = [];
    const image = (tag: string, createdAt: number) => ({ id: `sha256:${tag}`, tags: [ref(tag)], digests: [], labels: { "io.berth.storage": "docker" }, createdAt, sizeBytes: 1000 });
    const engine = Object.assign(idleEngine(), {
      listImages: async (labels: Record<string, string>) => ("io.berth.storage" in labels ? [image("v1", 1), image("v2", 2)].filter((i) => !removed.includes(i.tags[0]!)) : []),
      removeImage: async (r: string) => void removed.push(r),
    });
    // Every disk is under this watermark: the agent collects whatever it may.
    const { agent, client } = await agentOn(server, engine, { diskLowWatermark: "1000000g", diskHighWatermark: "1000000g" });
    for (const tag of ["v1", "v2"]) await client.registerFlow(flowBody({ name, storage: { type: "docker", image: ref(tag), flows: { [name]: `/opt/berth/flows/${name}.mjs` } } }));
    await agent.start();
    try {
      const result = await agent.collectImages();
      expect(result.map((r) => r.image.tags)).toEqual([[ref("v1")]]);
      expect(removed).toEqual([ref("v1")]);
      const scraped = samples(await agent.metrics.registry.metrics()).filter((s) => s.name.startsWith("berth_agent_image"));
      expect(scraped).toEqual([
        { name: "berth_agent_images_removed_total", labels: { kind: "storage" }, value: 1 },
        { name: "berth_agent_image_removed_bytes_total", labels: { kind: "storage" }, value: 1000 },
      ]);
    } finally {
      await agent.stop();
    }
  });
});

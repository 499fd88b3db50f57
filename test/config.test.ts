import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isBerthError } from "../wire/errors.js";
import { compileAgentOptions, compileServerOptions, flowRunEnvironment, readFlowRunSettings } from "../config/compile.js";
import { defaultConfig, loadConfig } from "../config/load.js";

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "berth-config-"));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("configuration", () => {
  it("has sensible defaults, with durations compiled to milliseconds", async () => {
    const config = loadConfig({ env: {}, cwd: await tempDir() });
    expect(config.apiUrl).toBe("http://127.0.0.1:4200");
    expect(config.server).toMatchObject({ host: "127.0.0.1", port: 4200, agentLostAfter: 60_000 });
    expect(config.agent).toMatchObject({ labels: [], concurrency: 1, pullPolicy: "if-not-present", claimWait: 20_000, stopGrace: 10_000 });
  });

  it("layers defaults < file < BERTH_* environment < flags", async () => {
    const cwd = await tempDir();
    await writeFile(
      path.join(cwd, "berth.config.json"),
      JSON.stringify({ apiUrl: "http://file:1", agent: { concurrency: 3, labels: ["from-file"], drainTimeout: "2m" } }),
    );
    const env = { BERTH_API_URL: "http://env:2", BERTH_AGENT_LABELS: "a, b", BERTH_AGENT_CLAIM_WAIT: "500ms" };
    const config = loadConfig({ env, cwd, flags: { agent: { labels: ["flag"] } } });
    expect(config.apiUrl).toBe("http://env:2");
    expect(config.agent.labels).toEqual(["flag"]);
    expect(config.agent.concurrency).toBe(3);
    expect(config.agent.drainTimeout).toBe(120_000);
    expect(config.agent.claimWait).toBe(500);
    expect(loadConfig({ env, cwd }).agent.labels).toEqual(["a", "b"]);
  });

  it("rejects bad values with one message naming the key", async () => {
    const cwd = await tempDir();
    const attempt = (env: Record<string, string>) => {
      try {
        loadConfig({ env, cwd });
        return undefined;
      } catch (err) {
        return err;
      }
    };
    const badDuration = attempt({ BERTH_AGENT_STOP_GRACE: "soon" });
    expect(isBerthError(badDuration, "BERTH_E_CONFIG")).toBe(true);
    expect((badDuration as Error).message).toContain('agent.stopGrace: "soon" is not a duration');
    expect((attempt({ BERTH_AGENT_PULL_POLICY: "sometimes" }) as Error).message).toContain("agent.pullPolicy");
    expect((attempt({ BERTH_API_URL: "not a url" }) as Error).message).toContain("apiUrl");
  });

  it("reads the agent's build settings from the environment, booleans in the words people use", async () => {
    const cwd = await tempDir();
    expect(loadConfig({ env: {}, cwd }).agent).toMatchObject({ buildOnPullFailure: true, buildTimeout: 30 * 60_000 });
    for (const [raw, value] of [["false", false], ["0", false], ["No", false], ["off", false], ["true", true], ["1", true], ["yes", true], [" ON ", true]] as const) {
      expect(loadConfig({ env: { BERTH_AGENT_BUILD_ON_PULL_FAILURE: raw }, cwd }).agent.buildOnPullFailure, raw).toBe(value);
    }
    expect(() => loadConfig({ env: { BERTH_AGENT_BUILD_ON_PULL_FAILURE: "sometimes" }, cwd })).toThrow(
      'BERTH_AGENT_BUILD_ON_PULL_FAILURE="sometimes" is not a boolean: use true or false',
    );
    const options = compileAgentOptions(loadConfig({ env: { BERTH_AGENT_BUILD_TIMEOUT: "90s", BERTH_AGENT_BUILD_ON_PULL_FAILURE: "false" }, cwd }));
    expect({ buildTimeoutMs: options.buildTimeoutMs, buildOnPullFailure: options.buildOnPullFailure }).toEqual({ buildTimeoutMs: 90_000, buildOnPullFailure: false });
    expect(() => loadConfig({ env: { BERTH_SERVER_BUILD_CONTEXT_LIMIT: String(1024 ** 3) }, cwd })).toThrow("server.buildContextLimit");
    expect(() => loadConfig({ env: { BERTH_AGENT_BUILD_TIMEOUT: "0s" }, cwd })).toThrow("agent.buildTimeout: must be at least 1ms");
    expect(() => loadConfig({ env: { BERTH_SERVER_START_TIMEOUT: "0" }, cwd })).toThrow("server.startTimeout: must be at least 1ms");
    expect(loadConfig({ env: {}, cwd, flags: { server: { startTimeout: 1500.4 } } }).server.startTimeout).toBe(1500);
  });

  it("reads the limits of flow-run containers: memory as Docker writes it, CPUs, processes", async () => {
    const cwd = await tempDir();
    expect(compileAgentOptions(loadConfig({ env: {}, cwd })).limits).toEqual({ memoryBytes: undefined, cpus: undefined, pids: 1024 });
    const env = { BERTH_AGENT_MEMORY: "512m", BERTH_AGENT_CPUS: "1.5", BERTH_AGENT_PIDS_LIMIT: "256" };
    expect(compileAgentOptions(loadConfig({ env, cwd })).limits).toEqual({ memoryBytes: 512 * 1024 ** 2, cpus: 1.5, pids: 256 });
    for (const [raw, bytes] of [["2g", 2 * 1024 ** 3], ["1.5G", 1.5 * 1024 ** 3], ["64MiB", 64 * 1024 ** 2], ["10485760", 10 * 1024 ** 2]] as const) {
      expect(loadConfig({ env: { BERTH_AGENT_MEMORY: raw }, cwd }).agent.memory, raw).toBe(bytes);
    }
    expect(() => loadConfig({ env: { BERTH_AGENT_MEMORY: "lots" }, cwd })).toThrow('agent.memory: "lots" is not a size: write it like 512m or 2g');
    expect(() => loadConfig({ env: { BERTH_AGENT_MEMORY: "1m" }, cwd })).toThrow("agent.memory: must be at least 6m");
    expect(() => loadConfig({ env: { BERTH_AGENT_CPUS: "0" }, cwd })).toThrow("agent.cpus");
    expect(() => loadConfig({ env: { BERTH_AGENT_PIDS_LIMIT: "3" }, cwd })).toThrow("agent.pidsLimit");
  });

  it("says which config file is missing or unreadable", async () => {
    const cwd = await tempDir();
    expect(() => loadConfig({ env: {}, cwd, file: "nope.json" })).toThrow(/config file not found: .*nope\.json/);
    await writeFile(path.join(cwd, "broken.json"), "{ not json");
    expect(() => loadConfig({ env: { BERTH_CONFIG: "broken.json" }, cwd })).toThrow(/cannot read config file .*broken\.json/);
  });

  it("names a setting it does not know, and says where a moved one went, instead of ignoring it", async () => {
    const cwd = await tempDir();
    await writeFile(path.join(cwd, "berth.config.json"), JSON.stringify({ agent: { serverDownFor: "1m", concurency: 2 }, colour: "red" }));
    const err = (() => {
      try {
        loadConfig({ env: {}, cwd });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err?.message).toContain("agent.serverDownFor is now serverDownFor");
    expect(err?.message).toContain("agent.concurency is not a berth setting");
    expect(err?.message).toContain("colour is not a berth setting");
    // The variable's old name still sets it.
    expect(loadConfig({ env: { BERTH_AGENT_SERVER_DOWN_FOR: "90s" }, cwd: await tempDir() }).serverDownFor).toBe(90_000);
  });
});

describe("compiled configuration", () => {
  it("gives the server, the agent and its containers one set of defaults, from the schema", () => {
    const config = defaultConfig({ home: "/var/lib/berth" });
    expect(compileServerOptions(config)).toMatchObject({ db: "/var/lib/berth/berth.db", leaseMs: 30_000, reaperIntervalMs: 5_000, bodyLimitBytes: 16 * 1024 * 1024 });
    const agent = compileAgentOptions(defaultConfig({ apiUrl: "http://server:4200", serverDownFor: "2m", agent: { runHeartbeatInterval: "3s", containerApiUrl: "http://10.0.0.1:4200" } }));
    expect(agent).toMatchObject({ network: undefined, serverDownForMs: 120_000 });
    expect(agent.flowRun).toEqual({ apiUrl: "http://10.0.0.1:4200", apiToken: undefined, heartbeatIntervalMs: 3_000, serverDownForMs: 120_000 });
    expect(compileAgentOptions(defaultConfig()).network).toBe("host");
  });

  it("carries a flow-run container's settings through its environment and back", () => {
    const settings = { apiUrl: "http://server:4200", apiToken: "run-token", flowRunId: "r1", epoch: 3, heartbeatIntervalMs: 1_500, serverDownForMs: 60_000 };
    expect(readFlowRunSettings(flowRunEnvironment(settings))).toEqual(settings);
  });

  it("reads a container started by hand, with defaults for the timings, and names what is missing", () => {
    const defaults = compileAgentOptions(defaultConfig()).flowRun;
    expect(readFlowRunSettings({ BERTH_API_URL: "http://127.0.0.1:4200", BERTH_FLOW_RUN_ID: "r1" })).toEqual({
      apiUrl: "http://127.0.0.1:4200",
      apiToken: undefined,
      flowRunId: "r1",
      epoch: undefined,
      heartbeatIntervalMs: defaults.heartbeatIntervalMs,
      serverDownForMs: defaults.serverDownForMs,
    });
    expect(() => readFlowRunSettings({})).toThrow("berth execute flow-run needs BERTH_API_URL and BERTH_FLOW_RUN_ID in its environment");
    expect(() => readFlowRunSettings({ BERTH_API_URL: "x", BERTH_FLOW_RUN_ID: "r" })).toThrow(/BERTH_API_URL/);
  });
});

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isBerthError } from "../wire/errors.js";
import { loadConfig } from "../config/load.js";

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

  it("says which config file is missing or unreadable", async () => {
    const cwd = await tempDir();
    expect(() => loadConfig({ env: {}, cwd, file: "nope.json" })).toThrow(/config file not found: .*nope\.json/);
    await writeFile(path.join(cwd, "broken.json"), "{ not json");
    expect(() => loadConfig({ env: { BERTH_CONFIG: "broken.json" }, cwd })).toThrow(/cannot read config file .*broken\.json/);
  });
});

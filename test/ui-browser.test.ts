/**
 * The web UI in a real browser (Debian's chromium, driven by playwright-core), against a real server and a
 * real agent on the Docker engine: the token prompt, the Run button, a DAG turning to Success with its
 * logs, a cancel from the run's page, the agents page, and the pickup explanation of a run no agent can take.
 * Screenshots of each page go to test-output/ui/. Anything the page throws, or logs as an error, fails it.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { FLOW_RUN_LABEL, OWNER_LABEL } from "../engine/port.js";
import { dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, TEST_TOKEN, berth, startAgent, startServer } from "./support/processes.js";

export const CHROMIUM = process.env.BERTH_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = path.join(REPO, "test-output", "ui");

describe.skipIf(!dockerAvailable)("the web UI", () => {
  let dir: string;
  let server: { proc: BerthProcess; url: string };
  let agent: BerthProcess;
  let browser: Browser;
  let page: Page;
  let client: ApiClient;
  const problems: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-ui-"));
    await mkdir(SHOTS, { recursive: true });
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    agent = await startAgent(server.url, [], "ui-agent");
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    for (const fixture of ["dag-flow.ts", "sleepy-flow.ts"]) {
      const registered = await berth(["register", path.join(REPO, "test", "fixtures", fixture), "--no-push", "--api", server.url], { timeoutMs: 600_000 });
      expect(registered.code, registered.stderr).toBe(0);
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (message) => {
      // The browser logs the 401 that makes the page ask for a token; that one is expected, nothing else is.
      if (message.type() === "error" && !/status of 401 \(Unauthorized\)/.test(message.text())) problems.push(`console error: ${message.text()}`);
    });
  }, 900_000);

  afterAll(async () => {
    await browser?.close();
    await agent?.stop();
    // A test that failed half-way may leave a run's container behind: remove this server's runs' containers.
    if (client) {
      const ours = new Set((await client.listFlowRuns({ limit: 1000 })).flowRuns.map((r) => r.id));
      for (const c of await engine.listContainers({ [OWNER_LABEL]: "true" })) {
        if (ours.has(c.labels[FLOW_RUN_LABEL] ?? "")) await engine.removeContainer(c.id);
      }
    }
    await server?.proc.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  it("asks for a token, then lists the flows, each with its Run button", async () => {
    await page.goto(`${server.url}/#/flows`);
    // The server requires a token: the page asks for one before it shows anything.
    await page.getByLabel("API token").fill(TEST_TOKEN);
    await page.getByRole("button", { name: "Use this token" }).click();
    await page.locator('tr[data-flow="DAG Flow"]').waitFor();
    await expect(page.locator('tr[data-flow="Sleepy Flow"]').count()).resolves.toBe(1);
    expect(await page.evaluate('sessionStorage.getItem("berth.token")')).toBe(TEST_TOKEN);
  }, 60_000);

  it("starts a run from the Run button and watches its DAG turn to Success and its logs appear", async () => {
    await page.getByRole("button", { name: "Run DAG Flow" }).click();
    await page.getByRole("button", { name: "Start run" }).click();
    await page.waitForURL(/#\/runs\/[^/]+$/);
    const nodes = page.locator("g.node[data-task]");
    await nodes.first().waitFor();
    expect(await nodes.count()).toBe(6);
    await page.locator('h1 [data-state="Success"]').waitFor({ timeout: 120_000 });
    await page.waitForFunction(`document.querySelectorAll('g.node[data-state="Success"]').length === 6`, undefined, { timeout: 30_000 });
    await page.getByTestId("logs").getByText("report: 6 rows").waitFor({ timeout: 30_000 });
    // New log lines scroll the log box, never the page away from the DAG.
    expect(await page.evaluate("window.scrollY")).toBe(0);
    await page.getByTestId("phases").waitFor();
    await shot("run");
    // The DAG's edges: six tasks, six dependencies.
    expect(await page.locator("polyline.edge").count()).toBe(6);
  }, 180_000);

  it("cancels a long run from its page", async () => {
    const { flowRun } = await client.createFlowRun({ flowName: "Sleepy Flow", parameters: { seconds: 300 } });
    await page.goto(`${server.url}/#/runs/${flowRun.id}`);
    await page.locator('h1 [data-state="Running"]').waitFor({ timeout: 120_000 });
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator('h1 [data-state="Cancelled"]').waitFor({ timeout: 60_000 });
    expect((await client.getFlowRun(flowRun.id)).state).toBe("Cancelled");
  }, 200_000);

  it("shows why no agent picks up a run, on the runs page", async () => {
    const { flowRun } = await client.createFlowRun({ flowName: "DAG Flow", labels: ["gpu"] });
    await page.goto(`${server.url}/#/runs`);
    const note = page.locator(`tr[data-run="${flowRun.id}"] [data-testid="pickup"]`);
    await page.waitForFunction(`(document.querySelector('tr[data-run="${flowRun.id}"] [data-testid="pickup"]')?.textContent ?? "") !== ""`, undefined, { timeout: 30_000 });
    expect(await note.textContent()).toMatch(/gpu/);
    await shot("runs");
  }, 60_000);

  it("lists the agent with its status, health and slots", async () => {
    await page.goto(`${server.url}/#/agents`);
    const row = page.locator('tr[data-agent="ui-agent"]');
    await row.waitFor();
    expect(await row.textContent()).toMatch(/online/);
    await page.waitForFunction(`(document.querySelector('tr[data-agent="ui-agent"]')?.textContent ?? "").includes("healthy")`, undefined, { timeout: 30_000 });
    await shot("agents");
  }, 60_000);

  it("shows each flow's last runs as coloured marks", async () => {
    await page.goto(`${server.url}/#/flows`);
    // DAG Flow: a Success, and the gpu run still Scheduled; Sleepy Flow: the cancelled one.
    await page.locator('tr[data-flow="DAG Flow"] .strip .mark.state-success').waitFor();
    await page.locator('tr[data-flow="Sleepy Flow"] .strip .mark.state-cancelled').waitFor();
    await shot("flows");
  }, 60_000);

  it("threw nothing and logged no error in the browser", () => {
    expect(problems).toEqual([]);
  });
});

/**
 * bench:ui — the web UI's cost to a person: its bundle (gzip) and the time from navigation to the runs
 * page's first row in Debian's chromium (playwright-core), with 10,000 runs in the store against 10 (the
 * baseline, in the same run). Median of 7 loads each, after one warm-up load.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import pino from "pino";
import { chromium } from "playwright-core";
import { compileServerOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import { buildServer } from "../server/app.js";
import { packageRoot } from "../shared/package.js";
import { openSqliteStore } from "../store/sqlite.js";
import { benchFlow } from "./flow-body.js";

const TOKEN = "bench-ui-admin-token";
const LOADS = 7;

async function bundleGzipBytes(): Promise<{ js: number; css: number }> {
  const dir = path.join(packageRoot(), "dist", "ui", "assets");
  const sizes = { js: 0, css: 0 };
  for (const file of await readdir(dir)) {
    const kind = file.endsWith(".js") ? "js" : file.endsWith(".css") ? "css" : undefined;
    if (kind) sizes[kind] += gzipSync(await readFile(path.join(dir, file))).length;
  }
  return sizes;
}

async function firstRenderMs(runs: number, executablePath: string): Promise<number> {
  const logger = pino({ level: "silent" }, new Writable({ write: (_c, _e, done) => done() }));
  const store = await openSqliteStore(":memory:");
  const { flow } = await store.registerFlow(benchFlow("UI Bench Flow", ["bench"]));
  for (let i = 0; i < runs; i++) await store.createFlowRun({ flow, parameters: { i }, labels: ["bench"] });
  const options = compileServerOptions(defaultConfig({ server: { db: ":memory:", reaperInterval: 0, schedulerInterval: 0 } }));
  const app = await buildServer({ store, logger, options: { ...options, apiToken: TOKEN }, version: "bench" });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as { port: number };
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  try {
    const page = await browser.newPage();
    await page.addInitScript(`sessionStorage.setItem("berth.token", ${JSON.stringify(TOKEN)})`);
    const times: number[] = [];
    for (let i = 0; i <= LOADS; i++) {
      const started = performance.now();
      await page.goto(`http://127.0.0.1:${port}/#/runs`);
      await page.locator("tr[data-run]").first().waitFor();
      if (i > 0) times.push(performance.now() - started);
      await page.goto("about:blank");
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)]!;
  } finally {
    await browser.close();
    await app.close();
    await store.close();
  }
}

const executablePath = process.env.BERTH_CHROMIUM ?? "/usr/bin/chromium";
const bundle = await bundleGzipBytes();
const baseline = await firstRenderMs(10, executablePath);
const large = await firstRenderMs(10_000, executablePath);
process.stdout.write(
  [
    `web UI bundle (gzip): ${(bundle.js / 1024).toFixed(1)} KiB of JavaScript, ${(bundle.css / 1024).toFixed(1)} KiB of CSS`,
    `runs page, navigation to first row (median of ${LOADS}): ${baseline.toFixed(0)} ms with 10 runs, ${large.toFixed(0)} ms with 10,000 runs (ratio ${(large / baseline).toFixed(2)}; target: under 1 s)`,
  ].join("\n") + "\n",
);

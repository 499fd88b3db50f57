/**
 * `berth execute flow-file`, as a user debugging a storage image runs it (there it is the container's PID 1):
 * a SIGTERM cancels the flow and ends the process at once, rather than being ignored until `docker stop`
 * gives up and kills it.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, REPO } from "./support/processes.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("berth execute flow-file", () => {
  it("cancels the flow on SIGTERM and exits 143, its sleeping task interrupted", { timeout: 60_000 }, async () => {
    const { bundleFlowFile } = (await import(pathToFileURL(path.join(REPO, "dist", "storage", "bundle.js")).href)) as typeof import("../storage/bundle.js");
    const dir = await mkdtemp(path.join(os.tmpdir(), "berth-execute-"));
    dirs.push(dir);
    const flow = path.join(dir, "sleepy.mjs");
    await writeFile(flow, await bundleFlowFile(path.join(REPO, "test", "fixtures", "sleepy-flow.ts"), { target: "host" }));
    const child = spawn(process.execPath, [CLI, "execute", "flow-file", flow, "--param", "seconds=60"], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const sleeping = new Promise<void>((resolve) => {
      const onData = (d: Buffer) => {
        output += d.toString();
        if (output.includes("sleeping 60s")) resolve();
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
    });
    await sleeping;
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code, output).toBe(143);
    expect(output).toContain("SIGTERM: cancelling the flow");
    expect(output).toMatch(/flow "Sleepy Flow": Cancelled/);
  });
});

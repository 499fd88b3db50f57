/**
 * berth as users install it: the package is packed, installed from its tarball into a fresh project outside
 * the clone (npm hoists berth's dependencies next to it there; nothing reaches the clone's node_modules), a
 * flow type-checks against it, and `npx berth up`, `npx berth register`, `npx berth run --watch` take the seed
 * example to Success on the real Docker engine, with the runtime image built from the installed package.
 *
 * npm install reaches the npm registry, and compiles better-sqlite3 when no prebuilt binary can be had.
 */
import { execFile } from "node:child_process";
import { access, copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerAvailable, engine } from "./support/docker.js";
import { BerthProcess, REPO, berth, freePort } from "./support/processes.js";

const exec = promisify(execFile);

describe.skipIf(!dockerAvailable)("the npm package, installed in a fresh project", () => {
  let dir: string;
  let project: string;
  let home: string;
  let tarball: string;
  const images: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-package-"));
    project = path.join(dir, "project");
    home = path.join(dir, "home");
    const packed = await exec("npm", ["pack", "--json", "--pack-destination", dir], { cwd: REPO, maxBuffer: 64 * 1024 * 1024 });
    const [info] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
    tarball = path.join(dir, info.filename);
    await exec("mkdir", ["-p", project, home]);
    await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "my-flows", private: true, type: "module" }));
    await exec("npm", ["install", "--no-audit", "--no-fund", tarball, "typescript@^5.9", "@types/node@^20"], { cwd: project, timeout: 900_000, maxBuffer: 64 * 1024 * 1024 });
  }, 960_000);

  afterAll(async () => {
    for (const image of images) await engine.removeImage(image).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("carries what it needs and nothing else", async () => {
    const { stdout } = await exec("npm", ["pack", "--dry-run", "--json"], { cwd: REPO, maxBuffer: 64 * 1024 * 1024 });
    const files = (JSON.parse(stdout) as [{ files: { path: string }[] }])[0].files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(["package.json", "README.md", "CHANGELOG.md", "Dockerfile", "dist/cli/main.js", "dist/index.js", "dist/index.d.ts"]));
    // No tests, fixtures, sources, source maps or benchmarks.
    expect(files.filter((f) => /^(test|bench|examples)\/|^dist\/(test|bench)\/|\.map$|(?<!\.d)\.ts$/.test(f))).toEqual([]);
    const manifest = JSON.parse(await readFile(path.join(project, "node_modules", "berth", "package.json"), "utf8")) as Record<string, unknown>;
    expect(manifest.bin).toEqual({ berth: "dist/cli/main.js" });
    expect(manifest.engines).toEqual({ node: expect.stringMatching(/^>=20/) });
    // Every export's files are in the package.
    for (const target of Object.values(manifest.exports as Record<string, string | Record<string, string>>)) {
      for (const file of typeof target === "string" ? [target] : Object.values(target)) await access(path.join(project, "node_modules", "berth", file));
    }
    // npm hoisted berth's dependencies next to it: the layout the runtime image must cope with.
    await access(path.join(project, "node_modules", "fastify", "package.json"));
  });

  it("type-checks a flow against the installed package (strict, no skipLibCheck)", async () => {
    await copyFile(path.join(REPO, "examples", "custom-environment.ts"), path.join(project, "flow.ts"));
    await writeFile(
      path.join(project, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", noEmit: true, skipLibCheck: false, types: ["node"] }, files: ["flow.ts"] }),
    );
    const tsc = await exec(process.execPath, [path.join(project, "node_modules", "typescript", "bin", "tsc"), "-p", "."], { cwd: project }).catch((err: { stdout: string }) => err);
    expect("code" in tsc ? tsc.stdout : "").toBe("");
  });

  it("takes the seed example to Success through npx berth, with the runtime image built from the installed package", async () => {
    const port = await freePort();
    const api = `http://127.0.0.1:${port}`;
    // No token given: `berth up` makes an admin token in its home, and the CLI finds it there, as for a user.
    const env = { BERTH_HOME: home, BERTH_API_URL: api, BERTH_API_TOKEN: "" };
    const installed = path.join(project, "node_modules", "berth", "dist", "cli", "main.js");
    await using up = new BerthProcess(["up", "--port", String(port), "--db", path.join(home, "berth.db")], env, { cli: installed, cwd: project });
    const ready = await up.waitFor(/berth image ready/, 600_000);
    const image = (JSON.parse(ready) as { image: string }).image;
    images.push(image);
    await up.waitFor(/berth is up at/, 60_000);
    const npx = (args: string[], timeout: number) =>
      exec("npx", ["--no-install", "berth", ...args], { cwd: project, env: { ...process.env, ...env, BERTH_LOG_FORMAT: "json" }, timeout, maxBuffer: 64 * 1024 * 1024 }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, out: err.stdout + err.stderr }),
      );
    const registered = await npx(["register", "flow.ts", "--no-push"], 600_000);
    expect(registered.code, registered.out).toBe(0);
    const watched = await npx(["run", "Custom Environment Example", "--watch"], 300_000);
    expect(watched.code, watched.out).toBe(0);
    expect(watched.out).toMatch(/flow run \S+: Success/);
    expect(watched.out).toContain("Example!");

    // The same inputs give the same image: built once, found again.
    const again = await berth(["image", "build"], { cli: installed, cwd: project, env, timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe(image);
    expect(again.stderr).not.toContain("building the berth image");
    // Inside it, berth's hoisted dependencies are where Node finds them from berth.
    const { stdout } = await exec("docker", ["run", "--rm", image, "node", "-e", "console.log(require.resolve('fastify', { paths: ['/opt/berth/node_modules/berth'] }))"]);
    expect(stdout.trim()).toBe("/opt/berth/node_modules/fastify/fastify.js");
    expect(await up.stop()).toBe(0);
  }, 900_000);
});

import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_NODE_BUILD_IMAGE,
  DEFAULT_NODE_IMAGE,
  ensureNodeBaseImage,
  ensureNodeBuildImage,
  ensureBerthImage,
  importNodeBaseImage,
  isAptCache,
  nodeBaseRootfs,
  offlineNodeBuildImageRef,
  offlineNodeImageRef,
} from "../images/index.js";
import { dockerSuite, suiteTitle } from "./support/docker-suite.js";

const suite = await dockerSuite("img");
const { engine, id } = suite;
const repoRoot = fileURLToPath(new URL("..", import.meta.url));

/** Runs a command to completion in a fresh container; returns exit code and output. */
async function run(image: string, cmd?: string[], network?: string): Promise<{ code: number; output: string }> {
  const cid = await engine.runContainer(suite.spec(image, cmd, network === undefined ? {} : { network }));
  const code = await engine.waitContainer(cid);
  const output = await engine.containerOutput(cid, 1000);
  await engine.removeContainer(cid);
  return { code, output };
}

async function sha256(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

describe.skipIf(suite.skipReason !== undefined)(suiteTitle("offline images", suite), () => {
  const images: string[] = [];

  afterAll(async () => {
    const left = await suite.cleanup();
    for (const image of images) await engine.removeImage(image);
    expect(left).toEqual([]);
  });

  describe("Node.js base image from this host", () => {
    const ref = `berth-test-node-${id}:1`;

    beforeAll(async () => {
      images.push(ref);
      const started = Date.now();
      await importNodeBaseImage(engine, ref);
      console.info(`[docker-images] imported ${ref} in ${Date.now() - started} ms`);
    });

    it("runs node, npm and a shell with the utilities Dockerfile RUN lines use", async () => {
      expect(await run(ref, ["node", "-e", "console.log(1)"])).toEqual({ code: 0, output: "1\n" });
      expect(await run(ref, ["sh", "-c", "mkdir -p /a/b && ls /a"])).toEqual({ code: 0, output: "b\n" });
      const tools = await run(ref, ["sh", "-c", "ln -s /tmp /t && chmod 700 /t && cp /etc/passwd /t/p && test -f /tmp/p && npm --version && echo $HOME $PATH"]);
      expect(tools.code).toBe(0);
      expect(tools.output).toMatch(/^\d+\.\d+\.\d+\n\/root \/usr\/local\/sbin:\/usr\/local\/bin:\/usr\/sbin:\/usr\/bin:\/sbin:\/bin\n$/);
      const user = await run(ref, ["node", "-e", "const u = require('os').userInfo(); console.log(u.username, u.homedir)"]);
      expect(user.output).toBe("root /root\n");
    });

    it("writes a byte-identical root filesystem every time", async () => {
      const [a, b] = await Promise.all([nodeBaseRootfs(), nodeBaseRootfs()]);
      expect(await sha256(a!.pack())).toBe(await sha256(b!.pack()));
    });

    it("prefers a base the user chose, then the official image, then the offline one", async () => {
      expect(await ensureNodeBaseImage(engine, { baseImage: "example/custom-node:1" })).toBe("example/custom-node:1");
      const expected = (await engine.imageExists(DEFAULT_NODE_IMAGE)) ? DEFAULT_NODE_IMAGE : offlineNodeImageRef();
      expect(await ensureNodeBaseImage(engine)).toBe(expected);
      expect(await engine.imageExists(expected)).toBe(true);
    });
  });

  describe("Node.js build image", () => {
    let ref = "";

    beforeAll(async () => {
      // Shared with `berth image build-base` and the compose suite: made once per host Node.js version (about
      // three minutes, debootstrap included), then found.
      const started = Date.now();
      ref = await ensureNodeBuildImage(engine, { log: (line) => console.info(`[docker-images] ${line}`) });
      console.info(`[docker-images] build image ${ref} ready in ${Date.now() - started} ms`);
    }, 900_000);

    it("compiles a native addon against its own Node.js headers, with no network", async () => {
      const addon = [
        "mkdir -p /tmp/addon && cd /tmp/addon",
        `echo '{ "targets": [{ "target_name": "hello", "sources": ["hello.c"] }] }' > binding.gyp`,
        `printf '%s\\n' '#include <node_api.h>' 'static napi_value Init(napi_env env, napi_value exports) { napi_value n; napi_create_int32(env, 42, &n); return n; }' 'NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)' > hello.c`,
        "npm_config_nodedir=/usr/local node /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js rebuild --loglevel=error >/dev/null",
        `node -e 'console.log("addon=" + require("./build/Release/hello.node"))'`,
        "python3 --version && make --version | head -n 1 && g++ --version | head -n 1",
      ].join(" && ");
      const { code, output } = await run(ref, ["sh", "-c", addon], "none");
      expect(code, output).toBe(0);
      expect(output).toContain("addon=42\n");
      expect(output).toMatch(/^Python 3\.\d+/m);
      expect(output).toMatch(/^GNU Make \d/m);
      expect(output).toMatch(/^g\+\+ /m);
    });

    it("lays node out as the official images do, on a Debian root filesystem without apt's caches", async () => {
      if (ref !== offlineNodeBuildImageRef()) return; // The official image is Docker's to check.
      const probe = [
        "node --version && npm --version && ls /usr/local/include/node/node_version.h",
        "stat -c '%a %U:%G %n' /tmp /usr/bin/su /usr/sbin/unix_chkpwd",
        "grep -h '^VERSION_CODENAME' /etc/os-release",
        "find /var/cache/apt /var/lib/apt/lists -type f | wc -l",
      ].join(" && ");
      const { code, output } = await run(ref, ["sh", "-c", probe]);
      expect(code, output).toBe(0);
      expect(output).toContain(`v${process.versions.node}\n`);
      expect(output).toContain("/usr/local/include/node/node_version.h\n");
      expect(output).toContain("1777 root:root /tmp\n");
      expect(output).toContain("4755 root:root /usr/bin/su\n");
      expect(output).toContain("2755 root:shadow /usr/sbin/unix_chkpwd\n");
      expect(output).toContain("VERSION_CODENAME=bookworm\n");
      expect(output.trimEnd().split("\n").at(-1)).toBe("0");
    });

    it("leaves out downloaded packages and package lists, but keeps apt's directories", () => {
      expect(isAptCache("var/cache/apt/archives/g++_12.2.0-3_amd64.deb")).toBe(true);
      expect(isAptCache("var/cache/apt/pkgcache.bin")).toBe(true);
      expect(isAptCache("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease")).toBe(true);
      expect(isAptCache("var/cache/apt/archives/partial")).toBe(false);
      expect(isAptCache("var/lib/apt/lists/partial")).toBe(false);
      expect(isAptCache("var/lib/dpkg/status")).toBe(false);
    });

    it("prefers a build image the user chose, then the official image, then the offline one", async () => {
      expect(await ensureNodeBuildImage(engine, { buildImage: "example/custom-build:1" })).toBe("example/custom-build:1");
      const expected = (await engine.imageExists(DEFAULT_NODE_BUILD_IMAGE)) ? DEFAULT_NODE_BUILD_IMAGE : offlineNodeBuildImageRef();
      expect(ref).toBe(expected);
    });
  });

  describe("berth image", () => {
    let packageRoot = "";
    const imageName = `berth-test-image-${id}`;

    beforeAll(async () => {
      // A package root with this repository's manifest, Dockerfile and node_modules, and a small dist/ whose
      // marker makes this run's content hash (and so its image) unique.
      packageRoot = await mkdtemp(path.join(os.tmpdir(), "berth-image-"));
      for (const file of ["Dockerfile", "package.json", "package-lock.json"]) {
        await copyFile(path.join(repoRoot, file), path.join(packageRoot, file));
      }
      await symlink(path.join(repoRoot, "node_modules"), path.join(packageRoot, "node_modules"));
      await mkdir(path.join(packageRoot, "dist/cli"), { recursive: true });
      await writeFile(path.join(packageRoot, "dist/index.js"), `export const marker = "${id}";\n`);
      await writeFile(path.join(packageRoot, "dist/cli/main.js"), `#!/usr/bin/env node\nconsole.log("berth-cli", process.argv.slice(2).join(" "));\n`);
    });

    afterAll(async () => {
      await rm(packageRoot, { recursive: true, force: true });
    });

    it("builds once, then reuses the image while nothing changed", async () => {
      const built: string[] = [];
      const started = Date.now();
      const ref = await ensureBerthImage(engine, { packageRoot, imageName, onOutput: (l) => built.push(l) });
      console.info(`[docker-images] built ${ref} in ${Date.now() - started} ms`);
      images.push(ref, `${imageName}:latest`);
      expect(ref).toMatch(new RegExp(`^${imageName}:0\\.1\\.0-[0-9a-f]{12}$`));
      expect(built.length).toBeGreaterThan(0);
      expect(await engine.imageExists(`${imageName}:latest`)).toBe(true);

      const again: string[] = [];
      const checkStarted = performance.now();
      const second = await ensureBerthImage(engine, { packageRoot, imageName, onOutput: (l) => again.push(l) });
      const checkMs = performance.now() - checkStarted;
      console.info(`[docker-images] cached berth image check took ${checkMs.toFixed(1)} ms`);
      expect(second).toBe(ref);
      expect(again).toEqual([]);
      expect(checkMs).toBeLessThan(1000);

      await writeFile(path.join(packageRoot, "dist/extra.js"), "export {};\n");
      const rebuilt: string[] = [];
      const changedStarted = Date.now();
      const changed = await ensureBerthImage(engine, { packageRoot, imageName, onOutput: (l) => rebuilt.push(l) });
      console.info(`[docker-images] rebuilt after a dist/ change in ${Date.now() - changedStarted} ms`);
      images.push(changed);
      expect(changed).not.toBe(ref);
      // The archive is deterministic, so the dependency layer is reused when only dist/ changed.
      const copyModules = rebuilt.findIndex((l) => /^Step \d+\/\d+ : COPY node_modules\//.test(l));
      expect(rebuilt[copyModules + 1]).toBe(" ---> Using cache");
    });

    it("lays berth out so flows in /opt/berth/flows import it, with production dependencies only", async () => {
      const ref = await ensureBerthImage(engine, { packageRoot, imageName });
      const probe = [
        `echo 'import { marker } from "berth"; import pkg from "berth/package.json" with { type: "json" }; console.log("marker=" + marker, pkg.name)' > /opt/berth/flows/probe.mjs`,
        "node /opt/berth/flows/probe.mjs",
        "ls /opt/berth/node_modules/berth/node_modules",
        "berth --version",
        "echo cwd=$(pwd) env=$NODE_ENV",
      ].join(" && ");
      const { code, output } = await run(ref, ["sh", "-c", probe]);
      expect(code).toBe(0);
      expect(output).toContain(`marker=${id} berth\n`);
      const modules = output.split("\n");
      expect(modules).toEqual(expect.arrayContaining(["zod", "dockerode", "fastify"]));
      expect(modules).not.toContain("vitest");
      expect(modules).not.toContain("typescript");
      expect(output).toContain("berth-cli --version\n");
      expect(output).toContain("cwd=/opt/berth env=production\n");
      expect(await run(ref)).toEqual({ code: 0, output: "berth-cli --help\n" });
    });
  });
});

/**
 * The repository Dockerfile and what is derived from it: the single-stage Dockerfile `berth image build`
 * uses (its final stage, reading prebuilt files from the context), and the .dockerignore that keeps the build
 * context to what the build stage reads.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import dockerignoreModule from "@balena/dockerignore";
import { describe, expect, it } from "vitest";
import { DEFAULT_NODE_BUILD_IMAGE, DEFAULT_NODE_IMAGE, prebuiltDockerfile } from "../images/index.js";
import { isBerthError } from "../wire/errors.js";
import { REPO } from "./support/processes.js";

// A CommonJS module whose typings declare a default export: the function is `.default` under NodeNext.
const dockerignore = dockerignoreModule.default;
const repoDockerfile = readFileSync(path.join(REPO, "Dockerfile"), "utf8");

function derivingFails(dockerfile: string): string {
  try {
    prebuiltDockerfile(dockerfile);
  } catch (err) {
    expect(isBerthError(err, "BERTH_E_IMAGE_BUILD")).toBe(true);
    return (err as Error).message;
  }
  throw new Error("derived a Dockerfile it should have refused");
}

describe("the Dockerfile for prebuilt artifacts", () => {
  const derived = prebuiltDockerfile(repoDockerfile);
  const finalStage = repoDockerfile.slice(repoDockerfile.lastIndexOf("\nFROM ") + 1);

  it("is the repository Dockerfile's final stage, copying dist/ and node_modules/ from the context", () => {
    expect(derived.match(/^FROM /gm)).toEqual(["FROM "]);
    expect(derived).toContain("ARG BASE_IMAGE=");
    expect(derived).not.toContain("BUILD_IMAGE");
    expect(derived).not.toMatch(/--from|npm ci|\/build\//);
    expect(derived).toContain("\nCOPY node_modules/ /opt/berth/node_modules/berth/node_modules/\n");
    expect(derived).toContain("\nCOPY dist/ /opt/berth/node_modules/berth/dist/\n");
    // Every other line of the final stage is kept as written: one description of the image's layout.
    const kept = finalStage.split("\n").filter((line) => !/^COPY --from=/.test(line));
    for (const line of kept) expect(derived.split("\n")).toContain(line);
  });

  it("names the same default images as berth does", () => {
    expect(repoDockerfile).toContain(`ARG BASE_IMAGE=${DEFAULT_NODE_IMAGE}\n`);
    expect(repoDockerfile).toContain(`ARG BUILD_IMAGE=${DEFAULT_NODE_BUILD_IMAGE}\n`);
    expect(derived).toContain(`ARG BASE_IMAGE=${DEFAULT_NODE_IMAGE}\n`);
  });

  it("rewrites any spelling of COPY --from: other flags, continuation lines, several sources, relative WORKDIRs", () => {
    const dockerfile = [
      "# syntax comment",
      "ARG TOOLS=tools:1",
      "ARG RUNTIME=runtime:1",
      "ARG UNUSED=x",
      "FROM ${TOOLS} AS Compile",
      "WORKDIR /src",
      "WORKDIR app",
      "RUN make",
      "FROM ${RUNTIME} AS final",
      "copy --chown=1000:1000 --from=compile /src/app/out/a.js \\",
      "    /src/app/out/lib/ /opt/app/",
      "COPY --from=compile --chmod=755 /src/app/bin/run /usr/local/bin/run",
      "COPY local.txt /opt/",
      'CMD ["run"]',
      "",
    ].join("\n");
    const out = prebuiltDockerfile(dockerfile);
    expect(out.split("\n").slice(1)).toEqual([
      "ARG RUNTIME=runtime:1",
      "",
      "FROM ${RUNTIME} AS final",
      "copy --chown=1000:1000 out/a.js \\",
      "    out/lib/ /opt/app/",
      "COPY --chmod=755 bin/run /usr/local/bin/run",
      "COPY local.txt /opt/",
      'CMD ["run"]',
      "",
    ]);
  });

  it("refuses what it cannot rewrite, saying why", () => {
    expect(derivingFails("# nothing\n")).toMatch(/has no FROM/);
    expect(derivingFails("FROM a AS b\nWORKDIR /w\nFROM c\nCOPY --from=alpine:3 /etc/x /x\n")).toMatch(/"alpine:3", which is not a stage/);
    expect(derivingFails("FROM a AS b\nWORKDIR /w\nFROM c\nCOPY --from=b /etc/x /x\n")).toMatch(/\/etc\/x, which is not under stage "b"'s WORKDIR \/w/);
    expect(derivingFails("FROM a AS b\nWORKDIR /w\nFROM c\nCOPY --from=b /w/../etc /x\n")).toMatch(/not under stage/);
    expect(derivingFails("FROM a AS b\nFROM c\nCOPY --from=b /w/x /x\n")).toMatch(/stage "b" has no absolute WORKDIR/);
    expect(derivingFails('FROM a AS b\nWORKDIR /w\nFROM c\nCOPY --from=b ["/w/x", "/x"]\n')).toMatch(/shell form/);
  });
});

describe(".dockerignore", () => {
  const rules = readFileSync(path.join(REPO, ".dockerignore"), "utf8");
  const ignore = dockerignore().add(rules.split("\n"));
  const build = JSON.parse(readFileSync(path.join(REPO, "tsconfig.build.json"), "utf8")) as { include: string[] };
  const read = ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "vite.config.ts"];

  it("lets through exactly the manifests, TypeScript configuration and compiled sources of the repository", () => {
    const tracked = execFileSync("git", ["ls-files"], { cwd: REPO, encoding: "utf8" }).split("\n").filter(Boolean);
    // The web UI's sources are built by Vite (npm run build), not by tsc.
    const compiled = (file: string) => [...build.include, "ui"].some((entry) => file === entry || file.startsWith(`${entry}/`));
    const expected = tracked.filter((file) => read.includes(file) || compiled(file));
    expect(expected.length).toBeGreaterThan(100);
    expect(ignore.filter(tracked)).toEqual(expected);
  });

  it("keeps out installed packages, build output, git, test output and local state", () => {
    for (const file of ["node_modules/zod/package.json", "dist/cli/main.js", ".git/HEAD", "coverage/index.html", ".berth/up.pid", "agent.log", "test/e2e.test.ts"]) {
      expect(ignore.ignores(file), file).toBe(true);
    }
  });
});

/**
 * The parts of a DockerStorage build that need no engine: the generated Dockerfile, which modules the flow
 * bundle leaves to the image, and the healthcheck's report. test/storage-docker.test.ts shows their effect
 * in real images.
 */
import { describe, expect, it } from "vitest";
import { prepareDockerContext, renderDockerfile } from "../storage/build-context.js";
import { Flow } from "../flows/flow.js";
import { task } from "../flows/task.js";
import { DockerStorage } from "../storage/docker-storage.js";
import { reportHealthcheck } from "../storage/healthcheck.js";
import { HEALTHCHECK_FAILED_MARKER } from "../storage/healthcheck-marker.js";

describe("DockerStorage build", () => {
  it("escapes $ in env values, which the builder would otherwise substitute", () => {
    const dockerfile = renderDockerfile(new DockerStorage({ baseImage: "base:1", env: { PRICE: "$5 or ${HOME}", PLAIN: "a b" } }), []);
    expect(dockerfile).toContain('ENV PRICE="\\$5 or \\${HOME}" \\\n    PLAIN="a b"\n');
  });

  it("leaves dependencies out of the bundle by package name, whatever version spec installs them", () => {
    const storage = new DockerStorage({
      dependencies: ["is-number", "is-number@7.0.0", "@scope/pkg@^1.2.0", "@scope/pkg", "alias@npm:real@1", "github:user/repo", "git+ssh://git@host/r.git"],
    });
    expect(storage.dependencyNames).toEqual(["is-number", "is-number", "@scope/pkg", "@scope/pkg", "alias", "github:user/repo", "git+ssh://git@host/r.git"]);
  });

  it("reports each failed healthcheck check on one line, however many lines its cause has", () => {
    const lines: string[] = [];
    const code = reportHealthcheck([{ location: "/f.mjs", check: "environment serialization", ok: false, cause: "[\n  {\n    \"message\": \"bad\"\n  }\n]" }], (l) => lines.push(l));
    expect(code).toBe(1);
    expect(lines).toEqual([`${HEALTHCHECK_FAILED_MARKER} environment serialization (/f.mjs): [ { "message": "bad" } ]`]);
  });

  it("makes a build context without an engine: identical input, identical archive and tag", async () => {
    const contextFor = async (code: string, options: ConstructorParameters<typeof DockerStorage>[0] = {}, berthIdentity = "berth-a") => {
      const storage = new DockerStorage(options);
      const flow = new Flow("Context Flow");
      flow.addTask(task(() => 1, { name: "one" }));
      storage.addFlow(flow, code);
      return { storage, prepared: await prepareDockerContext(storage, { berthIdentity }) };
    };
    const a = await contextFor("export default 1;");
    const b = await contextFor("export default 1;");
    expect(a.prepared.archive.equals(b.prepared.archive)).toBe(true);
    expect(a.prepared.ref).toEqual({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: a.prepared.archive.length, berthBase: true });
    expect(a.prepared.image).toBe(b.prepared.image);
    expect(a.prepared.image).toMatch(/^context-flow:[0-9a-f]{12}$/);
    expect(a.prepared.dockerfile.startsWith("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")).toBe(true);
    expect(a.storage.serialize()).toMatchObject({ type: "docker", image: a.prepared.image, context: a.prepared.ref });
    // Another flow, another berth underneath, or a base image of its own: another image.
    expect((await contextFor("export default 2;")).prepared.image).not.toBe(a.prepared.image);
    expect((await contextFor("export default 1;", {}, "berth-b")).prepared.image).not.toBe(a.prepared.image);
    const based = await contextFor("export default 1;", { baseImage: "node:20" });
    expect(based.prepared.ref.berthBase).toBe(false);
    expect(based.prepared.dockerfile.startsWith("FROM node:20\n")).toBe(true);
  });
});

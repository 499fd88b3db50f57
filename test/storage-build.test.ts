/**
 * The parts of a DockerStorage build that need no engine: the generated Dockerfile, which modules the flow
 * bundle leaves to the image, and the healthcheck's report. test/storage-docker.test.ts shows their effect
 * in real images.
 */
import { describe, expect, it } from "vitest";
import { renderDockerfile } from "../storage/docker-build.js";
import { DockerStorage } from "../storage/docker-storage.js";
import { reportHealthcheck } from "../storage/healthcheck.js";
import { HEALTHCHECK_FAILED_MARKER } from "../storage/healthcheck-marker.js";

describe("DockerStorage build", () => {
  it("escapes $ in env values, which the builder would otherwise substitute", () => {
    const dockerfile = renderDockerfile(new DockerStorage({ env: { PRICE: "$5 or ${HOME}", PLAIN: "a b" } }), "base:1", []);
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
});

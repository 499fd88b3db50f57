/**
 * The parts of a DockerStorage build that need no engine: the generated Dockerfile, which modules the flow
 * bundle leaves to the image, and the healthcheck's report. test/storage-docker.test.ts shows their effect
 * in real images.
 */
import { describe, expect, it } from "vitest";
import { renderDockerfile } from "../storage/docker-build.js";
import { DockerStorage } from "../storage/docker-storage.js";

describe("DockerStorage build", () => {
  it("escapes $ in env values, which the builder would otherwise substitute", () => {
    const dockerfile = renderDockerfile(new DockerStorage({ env: { PRICE: "$5 or ${HOME}", PLAIN: "a b" } }), "base:1", []);
    expect(dockerfile).toContain('ENV PRICE="\\$5 or \\${HOME}" \\\n    PLAIN="a b"\n');
  });
});

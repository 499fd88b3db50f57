/**
 * DockerStorage on the real engine: each option observed inside the image it built, and each check of the
 * build-time healthcheck failing for real. Flows are registered with `berth register` against a real
 * `berth server`; the options image is run with `berth execute flow-file`, as a user debugging it would.
 *
 * Cost is kept down by building every image once: one image carries all the options (and a healthcheck that
 * passes), three checks that do not stop the others fail together in one build, and the failing builds only
 * add a layer holding the flow to the berth image before their healthcheck step fails.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { TarTree } from "../shared/tar-tree.js";
import { dockerSuite, suiteTitle, TEST_LABEL } from "./support/docker-suite.js";
import { BerthProcess, REPO, berth, startServer, type CliResult, TEST_TOKEN } from "./support/processes.js";

const suite = await dockerSuite("storage");
const { engine, id } = suite;
const fixture = (name: string) => path.join(REPO, "test", "fixtures", name);
const docker = (args: string[]) => promisify(execFile)("docker", args, { timeout: 60_000 });

/**
 * Untagged leaf images: what a failed build leaves behind (the layers before its failing step), with no tag
 * to find them by. Docker-backed suites run one at a time, so the ones that appear during this suite are its own.
 */
async function danglingImages(): Promise<Set<string>> {
  const { stdout } = await docker(["images", "--quiet", "--no-trunc", "--filter", "dangling=true"]);
  return new Set(stdout.split("\n").filter(Boolean));
}

/** The lines of a `berth register` failure that list the failed healthcheck checks, marker and location aside. */
function healthcheckFailures(result: CliResult, location: string): string[] {
  const [header, ...rest] = result.stderr.slice(result.stderr.search(/^berth: /m)).trimEnd().split("\n");
  expect(header).toMatch(/^berth: the healthcheck of \S+ failed:$/);
  return rest.map((line) => {
    expect(line.startsWith("  - ")).toBe(true);
    return line.slice(4).replace(` (${location})`, "");
  });
}

describe.skipIf(suite.skipReason !== undefined)(suiteTitle("DockerStorage on the local Docker engine", suite), () => {
  let dir = "";
  let server: { proc: BerthProcess; url: string } | undefined;
  let client: ApiClient;
  /** Tagged images this suite made, removed newest first. */
  const images: string[] = [];
  let danglingBefore = new Set<string>();
  let berthImage = "";
  const started = Date.now();

  const register = async (file: string, env: Record<string, string>): Promise<CliResult> =>
    berth(["register", file, "--no-push", "--api", server!.url], { env, timeoutMs: 300_000 });

  /** Registers a flow that must fail its healthcheck; returns the failed checks as "check: cause". */
  const registerFailing = async (file: string, flowName: string, slug: string): Promise<string[]> => {
    const result = await register(file, { BERTH_TEST_IMAGE_NAME: `berth-test-${id}-${slug}` });
    expect(result.code, result.stdout + result.stderr).toBe(2);
    const { flows } = await client.listFlows();
    expect(flows.map((f) => f.name)).not.toContain(flowName);
    return healthcheckFailures(result, `/opt/berth/flows/${slug}.mjs`);
  };

  /** Runs `cmd` in a fresh container of `image`; returns exit code and output. */
  const run = async (image: string, cmd: string[]): Promise<{ code: number; output: string }> => {
    const cid = await engine.runContainer(suite.spec(image, cmd));
    try {
      const code = await engine.waitContainer(cid);
      return { code, output: await engine.containerOutput(cid, 1000) };
    } finally {
      await engine.removeContainer(cid);
    }
  };

  /** The image a successful registration reports ("storage: IMAGE (built)"), remembered for removal. */
  const builtImage = (result: CliResult): string => {
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const image = /^ {2}storage: (\S+) \(built\)$/m.exec(result.stdout)?.[1];
    expect(image, result.stdout).toBeDefined();
    images.push(image!);
    return image!;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-storage-"));
    // The berth image is shared with the other suites and kept; it is built here, not in the first test.
    const built = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(built.code, built.stderr).toBe(0);
    berthImage = built.stdout.trim();
    danglingBefore = await danglingImages();
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
  }, 900_000);

  afterAll(async () => {
    await server?.proc.stop();
    const leftContainers = await suite.cleanup();
    for (const image of images.reverse()) await engine.removeImage(image);
    const leftovers = [...(await danglingImages())].filter((image) => !danglingBefore.has(image));
    for (const image of leftovers) await engine.removeImage(image);
    const { stdout } = await docker(["images", "--quiet", "--filter", `reference=berth-test-${id}*`]);
    const leftDangling = [...(await danglingImages())].filter((image) => !danglingBefore.has(image));
    await rm(dir, { recursive: true, force: true });
    console.info(`[storage-docker] suite took ${Date.now() - started} ms`);
    expect({ containers: leftContainers, images: stdout.trim(), dangling: leftDangling }).toEqual({ containers: [], images: "", dangling: [] });
  });

  describe("options, observed in the image that was built", () => {
    const slug = "storage-options-flow";
    const location = `/opt/berth/flows/${slug}.mjs`;
    const baseImage = `berth-test-${id}-base:1`;
    let image = "";
    let registered: CliResult;
    let observed: Record<string, string> = {};

    beforeAll(async () => {
      // A base image of our own, FROM the berth image, with a marker the flow can read.
      const context = new TarTree()
        .data("/Dockerfile", `FROM ${berthImage}\nCOPY marker /etc/berth-test-base\nLABEL ${TEST_LABEL}="${id}"\n`)
        .data("/marker", `base image of ${id}`);
      await engine.buildImage({ context: context.pack(), tag: baseImage });
      images.push(baseImage);

      // The flow's project: the flow file, files to copy, and a stand-in for is-number in its node_modules,
      // so that the flow loads on this host yet the image must install the real package.
      const project = path.join(dir, "project");
      await mkdir(path.join(project, "node_modules", "is-number"), { recursive: true });
      await copyFile(fixture(`${slug}.ts`), path.join(project, `${slug}.ts`));
      await writeFile(path.join(project, "node_modules/is-number/package.json"), JSON.stringify({ name: "is-number", version: "0.0.0-host", main: "index.js" }));
      await writeFile(path.join(project, "node_modules/is-number/index.js"), `module.exports = () => "the host's stand-in for is-number";\n`);
      const files = path.join(dir, "files");
      await mkdir(path.join(files, "data", "nested"), { recursive: true });
      await writeFile(path.join(files, "greeting.txt"), "hello from the host\n");
      await writeFile(path.join(files, "data", "nested", "value.txt"), "a file in a copied directory\n");

      registered = await register(path.join(project, `${slug}.ts`), {
        BERTH_TEST_IMAGE_NAME: `berth-test-${id}-options`,
        BERTH_TEST_BASE_IMAGE: baseImage,
        BERTH_TEST_FILES_DIR: files,
      });
      image = builtImage(registered);
      const { flows } = await client.listFlows();
      expect(flows.find((f) => f.name === "Storage Options Flow")?.storage).toEqual({
        type: "docker",
        image,
        flows: { "Storage Options Flow": location },
        // A storage with its own baseImage builds FROM it, not FROM the agent's berth image.
        context: { sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: expect.any(Number), berthBase: false },
      });

      const result = await run(image, ["berth", "execute", "flow-file", location]);
      expect(result.code, result.output).toBe(0);
      observed = Object.fromEntries([...result.output.matchAll(/observed ([a-z ]+): (.*)$/gm)].map((m) => [m[1]!, m[2]!]));
    }, 600_000);

    it("healthchecks the image, resolving the environment's dependency there", () => {
      expect(registered.stderr).toContain(`berth healthcheck: ok environment dependency "is-number" (${location})`);
      expect(registered.stderr).not.toContain("BERTH_HEALTHCHECK_FAILED");
    });

    it("files: copies a host file and a host directory to the paths given", () => {
      expect(observed.file).toBe(JSON.stringify("hello from the host\n"));
      expect(observed.directory).toBe(JSON.stringify("a file in a copied directory\n"));
    });

    it("env: bakes the variables into the image, values verbatim", () => {
      expect(observed.env).toBe(JSON.stringify([`it's "quoted" $HOME \\ and & more`, "plain"]));
    });

    it("dependencies: installs the package beside the flows and leaves it out of the bundle", async () => {
      expect(JSON.parse(observed.dependency ?? "null")).toEqual({
        isNumber: true,
        resolved: "/opt/berth/flows/node_modules/is-number/index.js",
        version: "7.0.0",
      });
      const bundle = await run(image, ["cat", location]);
      expect(bundle.code).toBe(0);
      expect(bundle.output).toMatch(/^import \w+ from "is-number";$/m);
      expect(bundle.output).not.toContain("stand-in for is-number");
    });

    it("extraDockerfileCommands: runs them in the image, after the flows and dependencies are in place", () => {
      expect(JSON.parse(observed["extra command"] ?? "null")).toEqual(expect.arrayContaining([`${slug}.mjs`, "node_modules"]));
    });

    it("baseImage: builds FROM the image given", () => {
      expect(observed["base image"]).toBe(JSON.stringify(`base image of ${id}`));
    });
  });

  describe("the build-time healthcheck", () => {
    it('fails "load flow module" when the module throws as it loads in the image', async () => {
      const failures = await registerFailing(fixture("healthcheck-load.ts"), "Healthcheck Load Flow", "healthcheck-load-flow");
      expect(failures).toEqual(["load flow module: this flow module refuses to load in the image"]);
    });

    it('fails "flow export" when the module in the image exports no Flow', async () => {
      const failures = await registerFailing(fixture("healthcheck-export.ts"), "Healthcheck Export Flow", "healthcheck-export-flow");
      expect(failures).toEqual(["flow export: /opt/berth/flows/healthcheck-export-flow.mjs exports no Flow: add `export default flow`"]);
    });

    it('fails "environment class" when the environment is not a berth Environment', async () => {
      const failures = await registerFailing(
        fixture("healthcheck-environment-class.ts"),
        "Healthcheck Environment Class Flow",
        "healthcheck-environment-class-flow",
      );
      expect(failures).toEqual([
        "environment class: the flow's environment (ForeignEnvironment) does not extend berth's Environment",
      ]);
    });

    describe("checks that do not stop the others, failing in one build", () => {
      let failures: string[] = [];
      let stderr = "";

      beforeAll(async () => {
        const slug = "healthcheck-three-checks-flow";
        const result = await register(fixture("healthcheck-graph-dependency-serialization.ts"), { BERTH_TEST_IMAGE_NAME: `berth-test-${id}-three` });
        expect(result.code, result.stdout + result.stderr).toBe(2);
        stderr = result.stderr;
        failures = healthcheckFailures(result, `/opt/berth/flows/${slug}.mjs`);
        expect((await client.listFlows()).flows.map((f) => f.name)).not.toContain("Healthcheck Three Checks Flow");
      }, 300_000);

      it('fails "flow graph" when a task in the image lacks an input', () => {
        expect(failures).toContainEqual('flow graph: flow "Healthcheck Three Checks Flow" is invalid: task "shout" needs input "text" but nothing is bound to it');
      });

      it('fails "environment dependency" when a module the environment needs is not installed', () => {
        expect(failures).toContainEqual(
          'environment dependency "berth-test-module-that-does-not-exist": cannot resolve "berth-test-module-that-does-not-exist" from the flows directory: add it to DockerStorage({ dependencies })',
        );
      });

      it('fails "environment serialization" when the environment cannot be sent to the server', () => {
        expect(failures).toContainEqual(expect.stringMatching(/^environment serialization: .*"path": \[ "labels", 0 \].*labels have no spaces, commas or control characters/));
      });

      it("reports every failed check, and runs the ones that pass", () => {
        expect(failures.map((f) => f.slice(0, f.indexOf(":")))).toEqual([
          "flow graph",
          'environment dependency "berth-test-module-that-does-not-exist"',
          "environment serialization",
        ]);
        for (const check of ["load flow module", "flow export", "environment class"]) expect(stderr).toContain(`berth healthcheck: ok ${check} `);
      });
    });

    it("ignoreHealthchecks: builds an image whose flow would fail the healthcheck", async () => {
      const image = builtImage(
        await register(fixture("healthcheck-load.ts"), { BERTH_TEST_IMAGE_NAME: `berth-test-${id}-ignored`, BERTH_TEST_IGNORE_HEALTHCHECKS: "1" }),
      );
      const { flows } = await client.listFlows();
      expect(flows.find((f) => f.name === "Healthcheck Load Flow")?.storage).toMatchObject({ type: "docker", image });
      // The check was skipped, not passed: run in the image that was built, it fails.
      const check = await run(image, ["berth", "healthcheck", "/opt/berth/flows/healthcheck-load-flow.mjs"]);
      expect(check.code).toBe(1);
      expect(check.output).toContain("BERTH_HEALTHCHECK_FAILED load flow module (/opt/berth/flows/healthcheck-load-flow.mjs): this flow module refuses to load in the image");
    });
  });
});

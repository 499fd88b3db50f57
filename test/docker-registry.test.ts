import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isBerthError } from "../wire/errors.js";
import { REGISTRY_PORT, ensureRegistryImage } from "../images/index.js";
import { TarTree } from "../shared/tar-tree.js";
import { dockerSuite, suiteTitle } from "./support/docker-suite.js";
import { httpAnswers } from "./support/wait.js";

const suite = await dockerSuite("reg");
const { engine, id } = suite;

/** A port nothing listens on right now (the registry binds it next; a race with other processes is unlikely). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return address.port;
}

describe.skipIf(suite.skipReason !== undefined)(suiteTitle("registry image and push/pull", suite), () => {
  let port = 0;
  let registryContainer = "";
  const images: string[] = [];

  beforeAll(async () => {
    const registryImage = await ensureRegistryImage(engine);
    expect(registryImage).toMatch(/^berth-registry:[A-Za-z0-9_.-]+$/);
    port = await freePort();
    registryContainer = await engine.runContainer(
      suite.spec(registryImage, undefined, { ports: [{ containerPort: REGISTRY_PORT, hostPort: port, hostIp: "127.0.0.1" }] }),
    );
    await httpAnswers(`http://127.0.0.1:${port}/v2/`);
  });

  afterAll(async () => {
    if (registryContainer !== "") await engine.stopContainer(registryContainer, 1000);
    const left = await suite.cleanup();
    for (const image of images) await engine.removeImage(image);
    expect(left).toEqual([]);
  });

  it("pushes an image to 127.0.0.1, and pulls it back after it was removed locally", async () => {
    const ref = `127.0.0.1:${port}/berth-test/${id}:1`;
    images.push(ref);
    const rootfs = new TarTree().data("hello.txt", `hello from ${id}\n`);
    await engine.importImage(rootfs.pack(), ref, { changes: ['CMD ["/hello.txt"]'] });

    await engine.pushImage(ref);
    const tags = (await (await fetch(`http://127.0.0.1:${port}/v2/berth-test/${id}/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toEqual(["1"]);

    await engine.removeImage(ref);
    expect(await engine.imageExists(ref)).toBe(false);
    await engine.pullImage(ref);
    expect(await engine.imageExists(ref)).toBe(true);
  });

  it("names the image and registry when a pull fails", async () => {
    const ref = `127.0.0.1:${port}/berth-test/${id}-missing:1`;
    const err = await engine.pullImage(ref).catch((e: unknown) => e);
    expect(isBerthError(err, "BERTH_E_IMAGE_NOT_FOUND")).toBe(true);
    expect((err as Error).message).toContain(`cannot pull image ${ref} from 127.0.0.1:${port}: `);
  });

  it("names the registry when a push fails", async () => {
    const closed = await freePort();
    const source = `127.0.0.1:${port}/berth-test/${id}:1`;
    const ref = `127.0.0.1:${closed}/berth-test/${id}:1`;
    images.push(ref);
    await engine.tagImage(source, ref);
    const err = await engine.pushImage(ref).catch((e: unknown) => e);
    expect(isBerthError(err, "BERTH_E_PUSH")).toBe(true);
    expect((err as Error).message).toContain(`cannot push ${ref} to registry 127.0.0.1:${closed}: `);
  });
});

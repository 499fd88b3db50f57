import { fileURLToPath } from "node:url";

const packageRoot = () => fileURLToPath(new URL("../../..", import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

export async function imageBuildCommand(opts: { base?: string }): Promise<void> {
  const { createContainerRuntime } = await import("../../docker/dockerode.js");
  const { ensureRuntimeImage } = await import("../../docker/images.js");
  const runtime = createContainerRuntime();
  await runtime.ping();
  const ref = await ensureRuntimeImage(runtime, { packageRoot: packageRoot(), log, ...(opts.base ? { baseImage: opts.base } : {}) });
  process.stdout.write(`${ref}\n`);
}

export async function imageRegistryCommand(): Promise<void> {
  const { createContainerRuntime } = await import("../../docker/dockerode.js");
  const { ensureRegistryImage } = await import("../../docker/images.js");
  const runtime = createContainerRuntime();
  await runtime.ping();
  const ref = await ensureRegistryImage(runtime, { log });
  process.stdout.write(`${ref}\n`);
}

import { fileURLToPath } from "node:url";
import { localEngine } from "../engine.js";

const packageRoot = () => fileURLToPath(new URL("../../..", import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

export async function imageBuildCommand(opts: { base?: string }): Promise<void> {
  const { ensureRuntimeImage } = await import("../../images/index.js");
  const runtime = await localEngine();
  await runtime.ping();
  const ref = await ensureRuntimeImage(runtime, { packageRoot: packageRoot(), log, ...(opts.base ? { baseImage: opts.base } : {}) });
  process.stdout.write(`${ref}\n`);
}

export async function imageRegistryCommand(): Promise<void> {
  const { ensureRegistryImage } = await import("../../images/index.js");
  const runtime = await localEngine();
  await runtime.ping();
  const ref = await ensureRegistryImage(runtime, { log });
  process.stdout.write(`${ref}\n`);
}

import { localEngine } from "../engine.js";

const log = (line: string) => process.stderr.write(`${line}\n`);

export async function imageBuildCommand(opts: { base?: string }): Promise<void> {
  const { ensureBerthImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  const ref = await ensureBerthImage(engine, { log, ...(opts.base ? { baseImage: opts.base } : {}) });
  process.stdout.write(`${ref}\n`);
}

export async function imageRegistryCommand(): Promise<void> {
  const { ensureRegistryImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  const ref = await ensureRegistryImage(engine, { log });
  process.stdout.write(`${ref}\n`);
}

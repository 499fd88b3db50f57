import { localEngine } from "../engine.js";
import { signalOnInterrupt } from "../process.js";

const log = (line: string) => process.stderr.write(`${line}\n`);

export async function imageBuildCommand(opts: { base?: string }): Promise<void> {
  const { ensureBerthImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  const ref = await ensureBerthImage(engine, { log, ...(opts.base ? { baseImage: opts.base } : {}) });
  process.stdout.write(`${ref}\n`);
}

/** The final stage's base (BASE_IMAGE): the official Node.js image when present, else one imported from this host. */
export async function imageBaseCommand(): Promise<void> {
  const { ensureNodeBaseImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  const ref = await ensureNodeBaseImage(engine, { log, signal: signalOnInterrupt() });
  process.stdout.write(`${ref}\n`);
}

/** The build stage's base (BUILD_IMAGE): the official full Node.js image when present, else one made with debootstrap. */
export async function imageBuildBaseCommand(opts: { mirror?: string }): Promise<void> {
  const { ensureNodeBuildImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  const ref = await ensureNodeBuildImage(engine, { log, signal: signalOnInterrupt(), ...(opts.mirror ? { mirror: opts.mirror } : {}) });
  process.stdout.write(`${ref}\n`);
}

export async function imageRegistryCommand(): Promise<void> {
  const { ensureRegistryImage } = await import("../../images/index.js");
  const engine = await localEngine();
  await engine.ping();
  const ref = await ensureRegistryImage(engine, { log });
  process.stdout.write(`${ref}\n`);
}

import { ensureBerthImage } from "../../images/index.js";
import { registerFlowFile } from "../../storage/register.js";
import { clientFor, defined, resolveConfig, type GlobalOptions } from "../context.js";
import { localEngine } from "../engine.js";
import { signalOnInterrupt } from "../process.js";

export async function registerCommand(global: GlobalOptions, file: string, opts: { api?: string; label?: string[]; push: boolean }): Promise<void> {
  const config = resolveConfig(global, defined({ apiUrl: opts.api }));
  const client = clientFor(config);
  // Fail fast, before a possibly long image build, when the server is not there.
  await client.health();
  const engine = await localEngine();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const result = await registerFlowFile(file, {
    client,
    labels: opts.label ?? [],
    push: opts.push,
    log,
    signal: signalOnInterrupt(),
    engine,
    berthImage: (signal) => ensureBerthImage(engine, { log, ...(signal ? { signal } : {}) }),
  });
  const { flow } = result;
  const labels = flow.labels.length > 0 ? flow.labels.join(", ") : "none";
  if (result.created) {
    process.stdout.write(`registered flow "${flow.name}" version ${flow.version} (id ${flow.id})\n`);
  } else {
    process.stdout.write(`flow "${flow.name}" is unchanged: version ${flow.version} (id ${flow.id}); no new version\n`);
  }
  process.stdout.write(`  storage: ${result.location}${result.built ? " (built)" : " (reused)"}${result.pushed ? ", pushed" : ""}\n  labels: ${labels}\n`);
}

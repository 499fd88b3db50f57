import type { ApiClient } from "../../client/api-client.js";
import type { ContainerEngine } from "../../engine/port.js";
import { labelsMatch } from "../../store/labels.js";
import type { FlowRecord } from "../../wire/schema.js";
import { ensureBerthImage } from "../../images/index.js";
import { registerFlowFile } from "../../storage/register.js";
import { describeError, isBerthError } from "../../wire/errors.js";
import { clientFor, defined, resolveConfig, type GlobalOptions } from "../context.js";
import { localEngine } from "../engine.js";
import { signalOnInterrupt } from "../process.js";

export async function registerCommand(
  global: GlobalOptions,
  file: string,
  opts: { api?: string; label?: string[]; push: boolean; build: boolean },
): Promise<void> {
  const config = resolveConfig(global, defined({ apiUrl: opts.api }));
  const client = clientFor(config);
  const signal = signalOnInterrupt();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  // Fail fast, before a possibly long image build, when the server is not there.
  await client.health(signal);
  const engine = opts.build ? await engineHere(log) : undefined;
  const result = await registerFlowFile(file, {
    client,
    labels: opts.label ?? [],
    push: opts.push,
    build: opts.build,
    log,
    signal,
    ...(engine ? { engine, berthImage: (s?: AbortSignal) => ensureBerthImage(engine, { log, ...(s ? { signal: s } : {}) }) } : {}),
  });
  const { flow } = result;
  const labels = flow.labels.length > 0 ? flow.labels.join(", ") : "none";
  if (result.created) {
    process.stdout.write(`registered flow "${flow.name}" version ${flow.version} (id ${flow.id})\n`);
  } else {
    process.stdout.write(`flow "${flow.name}" is unchanged: version ${flow.version} (id ${flow.id}); no new version\n`);
  }
  // Only an image is built or reused; local storage is a directory the flows were written to.
  const how = !result.context
    ? ""
    : result.built
      ? " (built)"
      : engine
        ? " (reused)"
        : " (not built here: the first agent that needs it builds it from the uploaded context)";
  process.stdout.write(`  storage: ${result.location}${how}${result.pushed ? ", pushed" : ""}\n  labels: ${labels}\n`);
  for (const warning of await pickupWarnings(client, flow)) log(`warning: ${warning}`);
}

/** No run should be silently unclaimable: say when no agent online now could take the flow's runs. */
async function pickupWarnings(client: ApiClient, flow: FlowRecord): Promise<string[]> {
  const agents = (await client.listAgents()).agents.filter((a) => a.status === "online" || a.status === "unhealthy" || a.status === "draining");
  const labelSets = [flow.labels, ...flow.schedule.map((clock) => clock.labels).filter((labels) => labels !== null)];
  const shown = (labels: readonly string[]) => (labels.length === 0 ? "no labels" : `labels [${labels.join(", ")}]`);
  return [...new Map(labelSets.map((labels) => [labels.join(","), labels])).values()]
    .filter((labels) => !agents.some((agent) => labelsMatch(labels, agent.labels)))
    .map((labels) =>
      agents.length === 0
        ? `no agent is online: runs of "${flow.name}" (${shown(labels)}) wait until one that can take them starts`
        : `no online agent can take runs with ${shown(labels)} (an agent needs every run label; a run with no labels needs an agent with none); online: ${agents.map((a) => `${a.name} [${a.labels.join(", ")}]`).join(", ")}`,
    );
}

/** The local Docker engine, or undefined (with a warning) when none answers: the flow is then registered unbuilt. */
async function engineHere(log: (line: string) => void): Promise<ContainerEngine | undefined> {
  const engine = await localEngine();
  try {
    await engine.ping();
    return engine;
  } catch (err) {
    if (!isBerthError(err, "BERTH_E_DOCKER_UNAVAILABLE")) throw err;
    log(`warning: ${describeError(err)}; registering without building: the first agent that needs the image builds it (--no-build says so and skips this check)`);
    return undefined;
  }
}

/**
 * Shared setup of the Docker-backed suites that create containers of their own: they run against the real
 * engine (probed once, in docker.ts: under CI=true an unreachable engine fails the suite) and own everything
 * they create through one label whose value is unique to the suite run.
 */
import { randomBytes } from "node:crypto";
import type { DockerEngine } from "../../engine/docker-engine.js";
import type { ContainerSpec } from "../../engine/port.js";
import { dockerProblem, engine } from "./docker.js";

export const TEST_LABEL = "io.berth.test-run";

export interface DockerSuite {
  engine: DockerEngine;
  /** Unique to this suite run: in names, tags and the TEST_LABEL value. */
  id: string;
  /** Why the suite is skipped (engine unreachable outside CI); undefined when it runs. */
  skipReason: string | undefined;
  /** A spec with this suite's label and a unique name. */
  spec(image: string, cmd?: string[], extra?: Partial<ContainerSpec>): ContainerSpec;
  /** Removes every container carrying this suite's label, then returns what is left (should be nothing). */
  cleanup(): Promise<string[]>;
}

export async function dockerSuite(prefix: string): Promise<DockerSuite> {
  const id = `${prefix}-${randomBytes(4).toString("hex")}`;
  const skipReason = dockerProblem === undefined ? undefined : `Docker engine unreachable (${dockerProblem}); set CI=true to make this a failure`;
  let counter = 0;
  return {
    engine,
    id,
    skipReason,
    spec: (image, cmd, extra = {}) => ({
      name: `berth-test-${id}-${++counter}`,
      image,
      ...(cmd === undefined ? {} : { cmd }),
      ...extra,
      labels: { [TEST_LABEL]: id, ...extra.labels },
    }),
    cleanup: async () => {
      for (const c of await engine.listContainers({ [TEST_LABEL]: id })) await engine.removeContainer(c.id);
      return (await engine.listContainers({ [TEST_LABEL]: id })).map((c) => c.name);
    },
  };
}

export function suiteTitle(title: string, suite: DockerSuite): string {
  return suite.skipReason === undefined ? title : `${title} (skipped: ${suite.skipReason})`;
}

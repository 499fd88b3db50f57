/**
 * A server outage longer than the flows it interrupts. Five runs that each print 40 numbered lines over four
 * seconds; the server is killed (kill -9) one second in and comes back about eight seconds later, after the
 * flows have finished. Every run must end Success exactly once with all 40 lines, its container must exit 0,
 * and a `berth run --watch` started before the outage must wait it out and exit 0.
 */
import { once } from "node:events";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { FINAL_FLOW_RUN_STATES } from "../wire/schema.js";
import { dockerAvailable } from "./support/docker.js";
import { BerthProcess, REPO, berth, startAgent, startServer, TEST_TOKEN } from "./support/processes.js";
import { tearDown, waitFinal, waitFor } from "./support/runs.js";

const RUNS = 5;
const LINES = 40;

describe.skipIf(!dockerAvailable)("a server outage longer than the flow", () => {
  let dir: string;
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: ApiClient;
  const agents: BerthProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "berth-outage-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    server = await startServer(dir);
    client = new ApiClient({ baseUrl: server.url, token: TEST_TOKEN });
    const registered = await berth(["register", path.join(REPO, "test", "fixtures", "chatty-flow.ts"), "--api", server.url]);
    expect(registered.code, registered.stderr).toBe(0);
    agents.push(await startAgent(server.url, ["outage"], `outage-${process.pid}`, ["--concurrency", String(RUNS)]));
  }, 900_000);

  afterAll(async () => {
    const leaked = await tearDown({ agents, server, client, dir });
    expect(leaked).toEqual([]);
  });

  it("loses no result and no log line, and the watch waits it out", async () => {
    const created = await Promise.all(
      Array.from({ length: RUNS }, () => client.createFlowRun({ flowName: "Chatty Flow", labels: ["outage"], parameters: { lines: LINES, every: 100 } })),
    );
    const ids = created.map((c) => c.flowRun.id);
    const watch = new BerthProcess(["run", "Chatty Flow", "--watch", "--label", "outage", "--api", server.url]);
    const watchExit = once(watch.child, "exit") as Promise<[number | null]>;
    const watchedId = /created flow run (\S+)/.exec(await watch.waitFor(/created flow run/))![1]!;
    ids.push(watchedId);
    for (const id of ids) await reaches(client, id, "Running");
    // Every run is printing now. Take the server away for longer than any of them takes to finish.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await server.proc.signal("SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    server = await startServer(dir, {}, server.port);

    for (const id of ids) {
      const run = await waitFinal(client, id, 120_000);
      expect(run.state, `${id}: ${run.stateMessage}`).toBe("Success");
      const finals = (await client.listFlowRunStates(id)).filter((s) => FINAL_FLOW_RUN_STATES.includes(s.state));
      expect(finals.map((s) => s.state), id).toEqual(["Success"]);
      const { logs } = await client.getLogs(id, { after: 0, limit: 1_000 });
      const numbered = logs.map((l) => l.message).filter((m) => /^line \d+ of \d+$/.test(m));
      expect(numbered, id).toEqual(Array.from({ length: LINES }, (_, i) => `line ${i + 1} of ${LINES}`));
      expect(logs.filter((l) => l.message === `line 1 of ${LINES}`)[0]?.task).toBe("chatter");
    }
    const [code] = await watchExit;
    expect(code, watch.output).toBe(0);
    expect(watch.output).toMatch(/lost the server .*; waiting up to 300 s for it to return/);
    expect(watch.output).toContain("the server is back");
    expect(watch.output).toMatch(/flow run \S+: Success/);
  });
});

/** Follows the run (by the logs long-poll) until it is in `state`; fails if it ends first. */
async function reaches(client: ApiClient, id: string, state: string): Promise<void> {
  const run = await waitFor(client, id, (r) => r.state === state || FINAL_FLOW_RUN_STATES.includes(r.state), 120_000);
  expect(run.state, run.stateMessage ?? "").toBe(state);
}

/**
 * One racing process of the claim race (claim-race-processes.ts compiles it and forks it several times): opens
 * the shared store, says it is ready, and on "go" lets each of its claimers claim until a claim finds nothing,
 * then reports every run they got. Its claimers share the process's one store handle.
 */
import type { ParentMessage, RacerMessage, RacerSetup, ReportedClaim } from "./claim-race-protocol.js";
import { openStore } from "./claim-race-protocol.js";

function send(message: RacerMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) reject(new Error("a racer reports over IPC: start it with child_process.fork"));
    else process.send(message, undefined, {}, (err) => (err ? reject(err) : resolve()));
  });
}

async function race(setup: RacerSetup): Promise<ReportedClaim[]> {
  const store = await openStore(setup.opener);
  try {
    const go = new Promise<void>((resolve) => {
      process.once("message", (message: ParentMessage) => {
        if (message.type === "go") resolve();
      });
    });
    await send({ type: "ready" });
    await go;
    const claimer = async ({ name, labels, max }: RacerSetup["claimers"][number]): Promise<ReportedClaim[]> => {
      const mine: ReportedClaim[] = [];
      for (;;) {
        const got = await store.claimFlowRuns(name, labels, max, setup.leaseMs);
        if (got.length === 0) return mine;
        for (const run of got) {
          mine.push({ process: `racer ${process.pid}`, claimer: name, agentId: name, flowRunId: run.id, state: run.state, version: run.version, epoch: run.epoch });
        }
        // An agent does work between claims (it starts a container). A racer that claimed again at once could
        // take SQLite's write lock back to back while the others sleep in their busy handlers, and take every
        // run: a race nobody else ran, which proves nothing.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    };
    return (await Promise.all(setup.claimers.map(claimer))).flat();
  } finally {
    await store.close();
  }
}

try {
  const setup = JSON.parse(process.argv[2] ?? "") as RacerSetup;
  await send({ type: "done", claims: await race(setup) });
  process.disconnect();
} catch (err) {
  await send({ type: "failed", error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
  process.disconnect();
}

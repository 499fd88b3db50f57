/** A flow's DAG travels with its registration: each task names the tasks it waits for (`upstream`). */
import { afterEach, describe, expect, it } from "vitest";
import { Flow, task } from "../index.js";
import { call, expectError } from "./support/api.js";
import { flowBody, uniqueName } from "./support/fixtures.js";
import { startTestServer } from "./support/server.js";

let s: Awaited<ReturnType<typeof startTestServer>> | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe("a flow's task graph", () => {
  it("is serialized by the SDK with each task's upstream, stored, and served back; a dangling edge is refused", async () => {
    const flow = new Flow(uniqueName());
    const fetch = task(() => 1, { name: "fetch" });
    const parse = task(({ raw }: { raw: number }) => raw + 1, { name: "parse" });
    const report = task(({ a, b }: { a: number; b: number }) => a + b, { name: "report" });
    const raw = fetch.bind({}, { flow });
    const parsed = parse.bind({ raw }, { flow });
    report.bind({ a: raw, b: parsed }, { flow });
    const { tasks } = flow.serialize();
    expect(tasks).toEqual([
      { slug: "fetch", name: "fetch" },
      { slug: "parse", name: "parse", upstream: ["fetch"] },
      { slug: "report", name: "report", upstream: ["fetch", "parse"] },
    ]);

    const server = (s = await startTestServer());
    const registered = await call(server.app, { method: "POST", url: "/api/flows", payload: flowBody({ name: flow.name, tasks }) });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const stored = await call(server.app, { method: "GET", url: `/api/flows/${registered.body.flow.id}` });
    expect(stored.body.tasks).toEqual(tasks);
    const dangling = [{ slug: "a", name: "a", upstream: ["nope"] }];
    await expectError(server.app, { method: "POST", url: "/api/flows", payload: flowBody({ tasks: dangling }) }, 400, "BERTH_E_VALIDATION");
    const self = [{ slug: "a", name: "a", upstream: ["a"] }];
    await expectError(server.app, { method: "POST", url: "/api/flows", payload: flowBody({ tasks: self }) }, 400, "BERTH_E_VALIDATION");
  });
});

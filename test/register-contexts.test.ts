/**
 * `berth register` and the server's build contexts, without Docker (nothing is built here): the context goes
 * up first, again if the server lost it before the registration that names it, and a server that keeps no
 * contexts at all is named as too old.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect } from "vitest";
// The compiled berth, as `berth register` runs it: the flow file's `import "berth"` resolves to dist/ too,
// and a Flow is only taken from the copy of berth that loads it.
import { ApiClient } from "../dist/client/api-client.js";
import { registerFlowFile } from "../dist/storage/register.js";
import { isBerthError } from "../dist/wire/errors.js";
import type { FlowCreate, FlowRegistered } from "../dist/wire/schema.js";
import { test as it, type TestServer } from "./support/server.js";

const flowFile = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "agent-built-flow.ts");

async function listening(server: TestServer): Promise<string> {
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const address = server.app.server.address();
  return `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
}

/** A fetch that counts the requests it passes on, by method and path. */
function countingFetch() {
  const seen: string[] = [];
  const fetch = ((input: string | URL | Request, init?: RequestInit) => {
    seen.push(`${init?.method ?? "GET"} ${new URL(String(input)).pathname.replace(/[0-9a-f]{64}$/, ":sha256")}`);
    return globalThis.fetch(input, init);
  }) as typeof globalThis.fetch;
  return { seen, fetch };
}

describe("registering with a build context", () => {
  it("uploads the context once, before building, and again when the server lost it before the registration", async ({ server }) => {
    const baseUrl = await listening(server);
    const { seen, fetch } = countingFetch();
    let lose = true;
    // The server loses the context between upload and registration once (as a restart on an empty database would).
    const client = new (class extends ApiClient {
      override async registerFlow(flow: FlowCreate, signal?: AbortSignal): Promise<FlowRegistered> {
        if (lose) {
          lose = false;
          await server.store.deleteUnusedBuildContexts(new Date(Date.now() + 24 * 3_600_000));
        }
        return super.registerFlow(flow, signal);
      }
    })({ baseUrl, fetch });
    const lines: string[] = [];
    const result = await registerFlowFile(flowFile, { client, build: false, log: (l) => lines.push(l) });
    expect(result.created).toBe(true);
    expect(result.context).toMatchObject({ uploaded: true, berthBase: true });
    expect(await server.store.buildContextSize(result.context!.sha256)).toBe(result.context!.size);
    expect(seen).toEqual([
      "HEAD /api/build-contexts/:sha256",
      "PUT /api/build-contexts/:sha256",
      "POST /api/flows",
      "HEAD /api/build-contexts/:sha256",
      "PUT /api/build-contexts/:sha256",
      "POST /api/flows",
    ]);
    expect(lines).toContain(`the server no longer keeps build context ${result.context!.sha256.slice(0, 12)}; uploading it again`);

    // Unchanged: asked after, not sent again.
    seen.length = 0;
    const again = await registerFlowFile(flowFile, { client, build: false });
    expect({ created: again.created, uploaded: again.context?.uploaded }).toEqual({ created: false, uploaded: false });
    expect(seen).toEqual(["HEAD /api/build-contexts/:sha256", "POST /api/flows"]);
  });

  it("says so when the server is too old to keep build contexts", async ({ server }) => {
    const baseUrl = await listening(server);
    const older = ((input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      if (!url.pathname.startsWith("/api/build-contexts/")) return globalThis.fetch(input, init);
      const body = init?.method === "HEAD" ? null : JSON.stringify({ error: { code: "BERTH_E_NOT_FOUND", message: `no route ${init?.method} ${url.pathname}` } });
      return Promise.resolve(new Response(body, { status: 404, headers: { "content-type": "application/json" } }));
    }) as typeof globalThis.fetch;
    const refused = await registerFlowFile(flowFile, { client: new ApiClient({ baseUrl, fetch: older }), build: false }).catch((e: unknown) => e);
    expect(isBerthError(refused, "BERTH_E_NOT_FOUND")).toBe(true);
    expect((refused as Error).message).toMatch(
      new RegExp(`^the server at ${baseUrl} keeps no build contexts \\(no route PUT /api/build-contexts/[0-9a-f]{64}\\): it is older than this berth; upgrade it`),
    );
    expect((await server.store.listFlows()).length).toBe(0);
  });
});

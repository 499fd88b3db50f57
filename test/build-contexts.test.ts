/** Build contexts on the server: kept by digest, checked, bounded, named by flow versions, removed when unused. */
import { createHash } from "node:crypto";
import { describe, expect } from "vitest";
import { ApiClient } from "../client/api-client.js";
import { isBerthError } from "../wire/errors.js";
import { call, expectError } from "./support/api.js";
import { flowBody } from "./support/fixtures.js";
import { test as it } from "./support/server.js";

const TAR = { "content-type": "application/x-tar" };
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const archive = (text: string) => Buffer.from(text.repeat(512));

describe("build contexts", () => {
  it("keeps a context under its digest once, answers HEAD, and serves it back byte for byte", async ({ server }) => {
    const { app } = server;
    const data = archive("tar");
    const url = `/api/build-contexts/${sha(data)}`;
    expect((await app.inject({ method: "HEAD", url })).statusCode).toBe(404);
    const first = await call(app, { method: "PUT", url, payload: data, headers: TAR });
    expect(first).toEqual({ status: 201, body: { sha256: sha(data), size: data.length, created: true } });
    expect((await call(app, { method: "PUT", url, payload: data, headers: TAR })).body.created).toBe(false);
    const head = await app.inject({ method: "HEAD", url });
    expect({ status: head.statusCode, length: head.headers["content-length"] }).toEqual({ status: 200, length: String(data.length) });
    const got = await app.inject({ method: "GET", url });
    expect(got.statusCode).toBe(200);
    expect(got.headers["content-type"]).toBe("application/x-tar");
    expect(got.rawPayload.equals(data)).toBe(true);
    await expectError(app, { method: "GET", url: `/api/build-contexts/${"0".repeat(64)}` }, 404, "BERTH_E_BUILD_CONTEXT_NOT_FOUND");
    await expectError(app, { method: "GET", url: "/api/build-contexts/not-a-digest" }, 400, "BERTH_E_VALIDATION");
  });

  it("refuses a context whose content is not its digest, or that is over the limit, storing nothing", async ({ startServer }) => {
    const { app, store } = await startServer({ config: { buildContextLimitBytes: 16 * 1024 } });
    const data = archive("x");
    const wrong = sha(archive("y"));
    const mismatch = await expectError(app, { method: "PUT", url: `/api/build-contexts/${wrong}`, payload: data, headers: TAR }, 400, "BERTH_E_VALIDATION");
    expect(mismatch.message).toContain(`has sha256 ${sha(data)}, not ${wrong}`);
    const big = Buffer.alloc(32 * 1024, 1);
    const over = await expectError(app, { method: "PUT", url: `/api/build-contexts/${sha(big)}`, payload: big, headers: TAR }, 413, "BERTH_E_PAYLOAD_TOO_LARGE");
    expect(over.message).toContain("at most 16384 bytes (server.buildContextLimit)");
    await expectError(app, { method: "PUT", url: `/api/build-contexts/${sha(data)}`, payload: { not: "a tar" } }, 415, "BERTH_E_UNSUPPORTED_MEDIA_TYPE");
    expect(await store.buildContextSize(sha(data))).toBeUndefined();
    expect(await store.buildContextSize(sha(big))).toBeUndefined();
  });

  it("registers a flow version only once the context it names is kept", async ({ server }) => {
    const { app } = server;
    const data = archive("flow");
    const body = flowBody();
    const withContext = { ...body, storage: { type: "docker", image: "f:1", flows: {}, context: { sha256: sha(data), size: data.length, berthBase: true } } };
    const missing = await expectError(app, { method: "POST", url: "/api/flows", payload: withContext }, 404, "BERTH_E_BUILD_CONTEXT_NOT_FOUND");
    expect(missing.message).toContain("berth register does");
    await call(app, { method: "PUT", url: `/api/build-contexts/${sha(data)}`, payload: data, headers: TAR });
    const wrongSize = { ...withContext, storage: { ...withContext.storage, context: { sha256: sha(data), size: data.length + 1, berthBase: true } } };
    const size = await expectError(app, { method: "POST", url: "/api/flows", payload: wrongSize }, 400, "BERTH_E_VALIDATION");
    expect(size.message).toBe(`build context ${sha(data)} is ${data.length} bytes, not ${data.length + 1} as the flow says`);
    expect((await call(app, { method: "POST", url: "/api/flows", payload: withContext })).status).toBe(201);
  });

  it("removes a context no flow version names once it is older than the grace period", async ({ startServer }) => {
    let now = Date.parse("2030-01-01T00:00:00.000Z");
    const { app, store } = await startServer({ now: () => now, config: { reaperIntervalMs: 0 } });
    const named = archive("named");
    const orphan = archive("orphan");
    for (const data of [named, orphan]) await call(app, { method: "PUT", url: `/api/build-contexts/${sha(data)}`, payload: data, headers: TAR });
    const body = { ...flowBody(), storage: { type: "docker", image: "f:1", flows: {}, context: { sha256: sha(named), size: named.length, berthBase: true } } };
    await call(app, { method: "POST", url: "/api/flows", payload: body });
    now += 30 * 60_000;
    expect((await app.reaper.reapOnce(now)).buildContextsRemoved).toEqual([]);
    now += 31 * 60_000;
    expect((await app.reaper.reapOnce(now)).buildContextsRemoved).toEqual([sha(orphan)]);
    expect(await store.buildContextSize(sha(orphan))).toBeUndefined();
    expect(await store.buildContextSize(sha(named))).toBe(named.length);
  });

  it("keeps raw bytes to its own routes: an archive sent to a JSON route is refused, whatever its size", async ({ startServer }) => {
    const { app } = await startServer({ config: { bodyLimitBytes: 4096 } });
    const octets = { "content-type": "application/octet-stream" };
    for (const size of [100, 64 * 1024]) {
      const refused = await expectError(app, { method: "POST", url: "/api/flows", payload: Buffer.alloc(size, 1), headers: octets }, 415, "BERTH_E_UNSUPPORTED_MEDIA_TYPE");
      expect(refused.message).toBe("POST /api/flows does not take application/octet-stream: send application/json");
    }
    const json = await expectError(app, { method: "PUT", url: `/api/build-contexts/${"0".repeat(64)}`, payload: { a: 1 } }, 415, "BERTH_E_UNSUPPORTED_MEDIA_TYPE");
    expect(json.message).toMatch(/does not take application\/json.*: send application\/x-tar$/);
  });

  it("tells a client without the server's token so, even on a HEAD that has no body", async ({ startServer }) => {
    const server = await startServer({ config: { apiToken: "s3cret" } });
    await server.app.listen({ host: "127.0.0.1", port: 0 });
    const address = server.app.server.address();
    const baseUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    const anonymous = await new ApiClient({ baseUrl }).hasBuildContext("0".repeat(64)).catch((e: unknown) => e);
    expect(isBerthError(anonymous, "BERTH_E_UNAUTHORIZED")).toBe(true);
    expect((anonymous as Error).message).toBe(
      `the server at ${baseUrl} answered HEAD /api/build-contexts/${"0".repeat(64)} with HTTP 401: it requires an API token; set --token or BERTH_API_TOKEN`,
    );
    const wrong = await new ApiClient({ baseUrl, token: "guess" }).hasBuildContext("0".repeat(64)).catch((e: unknown) => e);
    expect((wrong as Error).message).toContain("it does not accept this API token");
    expect(await new ApiClient({ baseUrl, token: "s3cret" }).hasBuildContext("0".repeat(64))).toBe(false);
  });
});

/** Bearer-token authentication: one shared token, checked on every route except the public ones. */
import { createHash, timingSafeEqual } from "node:crypto";
import { BerthError } from "../wire/errors.js";
import type { ZodApp } from "./routes/shared.js";

const PUBLIC_PATHS: ReadonlySet<string> = new Set(["/health", "/openapi.json"]);

export function installAuth(app: ZodApp, apiToken: string | undefined): void {
  if (apiToken === undefined || apiToken === "") return;
  // Compare digests: timingSafeEqual needs equal lengths, and the length of the token must not leak either.
  const expected = digest(`Bearer ${apiToken}`);
  app.addHook("onRequest", async (request) => {
    const path = request.url.split("?")[0] ?? "";
    if (PUBLIC_PATHS.has(path)) return;
    const given = request.headers.authorization;
    if (given === undefined || !timingSafeEqual(digest(given), expected)) {
      throw new BerthError(
        "BERTH_E_UNAUTHORIZED",
        given === undefined
          ? "this server requires an API token: send `Authorization: Bearer <token>` (set BERTH_API_TOKEN)"
          : "the API token was not accepted: check BERTH_API_TOKEN",
      );
    }
  });
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/**
 * Build contexts, kept by the server for agents that build storage images: uploaded by `berth register`
 * (content-addressed, so an unchanged context is uploaded once), asked after with HEAD, downloaded by agents.
 * The body is the raw tar archive; its sha256 must be the one in the path.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { BerthError } from "../../wire/errors.js";
import { buildContextNotFound } from "../../store/build-contexts.js";
import { BuildContextStored, Sha256 } from "../../wire/schema.js";
import type { ServerContext } from "../context.js";
import { withErrors, type ZodApp } from "./shared.js";

const Params = z.strictObject({ sha256: Sha256 });
const TAR = "application/x-tar";

/** The setting a 413 on these routes names (server/error-handler.ts reads it from the route's config). */
export const BODY_LIMIT_SETTING = "server.buildContextLimit";

/**
 * In a scope of their own: these routes take raw archives, and nothing but archives. The parser and the
 * limit stay here: every other route keeps JSON only, bounded by server.bodyLimit.
 */
export async function registerBuildContextRoutes(app: ZodApp, ctx: ServerContext): Promise<void> {
  await app.register(async (scoped) => {
    buildContextRoutes(scoped as unknown as ZodApp, ctx);
  });
}

function buildContextRoutes(app: ZodApp, ctx: ServerContext): void {
  const limit = ctx.options.buildContextLimitBytes;
  app.removeAllContentTypeParsers();
  // Archives arrive as bytes; they are parsed by nobody, only hashed and kept.
  app.addContentTypeParser([TAR, "application/octet-stream"], { parseAs: "buffer" }, (_request, body, done) => done(null, body));
  const config = { bodyLimitSetting: BODY_LIMIT_SETTING };

  app.head(
    "/api/build-contexts/:sha256",
    { config, schema: { summary: "Whether the server keeps this build context (200) or not (404)", tags: ["build contexts"], params: Params } },
    async (request, reply) => {
      const size = await ctx.store.buildContextSize(request.params.sha256);
      if (size === undefined) return reply.code(404).send();
      return reply.code(200).header("content-length", size).header("content-type", TAR).send();
    },
  );

  app.put(
    "/api/build-contexts/:sha256",
    {
      bodyLimit: limit,
      config,
      schema: {
        summary: "Keep a build context (a tar archive) under its sha256; keeping one already kept changes nothing",
        tags: ["build contexts"],
        params: Params,
        response: withErrors({ 200: BuildContextStored, 201: BuildContextStored }),
      },
    },
    async (request, reply) => {
      const { sha256 } = request.params;
      const body = request.body;
      // Only the archive parser is here; a body without a content type arrives as nothing.
      if (!Buffer.isBuffer(body)) throw new BerthError("BERTH_E_UNSUPPORTED_MEDIA_TYPE", `send the build context as ${TAR}`);
      const actual = createHash("sha256").update(body).digest("hex");
      if (actual !== sha256) {
        throw new BerthError("BERTH_E_VALIDATION", `the build context received has sha256 ${actual}, not ${sha256}: it was changed or cut on the way; register again`, {
          details: { expected: sha256, actual, size: body.length },
        });
      }
      const { created } = await ctx.store.putBuildContext(sha256, body);
      if (created) request.log.info({ sha256, size: body.length }, "build context kept");
      return reply.code(created ? 201 : 200).send({ sha256, size: body.length, created });
    },
  );

  app.get(
    "/api/build-contexts/:sha256",
    {
      config: { ...config, access: "agents" as const },
      schema: {
        summary: "A build context, as the tar archive it was uploaded as (for agents that build storage images)",
        tags: ["build contexts"],
        params: Params,
        // A Buffer is sent as it is: no serializer touches it.
        response: withErrors({ 200: z.unknown().describe(`the archive, as ${TAR}`) }),
      },
    },
    async (request, reply) => {
      const data = await ctx.store.getBuildContext(request.params.sha256);
      if (!data) throw buildContextNotFound(request.params.sha256);
      return reply.code(200).type(TAR).send(data);
    },
  );
}

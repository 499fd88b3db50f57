/** Tokens and secrets: what admins manage, and the one route through which a run reads its flow's secrets. */
import { BerthError } from "../../wire/errors.js";
import {
  Ok,
  RunSecrets,
  RunSecretsRequest,
  SecretList,
  SecretNameParams,
  SecretSet,
  TokenCreate,
  TokenCreated,
  TokenList,
  TokenRecord,
} from "../../wire/schema.js";
import { newToken, tokenHash } from "../auth.js";
import type { ServerContext } from "../context.js";
import { IdParams, requireFlow, requireFlowRun, withErrors, type ZodApp } from "./shared.js";

export function registerTrustRoutes(app: ZodApp, ctx: ServerContext): void {
  app.post(
    "/api/tokens",
    {
      schema: {
        summary: "Create a token (admin or agent); its secret is in this answer and nowhere else",
        tags: ["tokens"],
        body: TokenCreate.strict(),
        response: withErrors({ 201: TokenCreated }),
      },
    },
    async (request, reply) => {
      const { role, name, labels } = request.body;
      if (role === "admin" && labels !== undefined) {
        throw new BerthError("BERTH_E_VALIDATION", "labels bound an agent token only: an admin token may do everything", {
          details: { issues: [{ in: "body", path: "labels", message: "only for an agent token" }] },
        });
      }
      if (role === "agent" && name === undefined) {
        throw new BerthError("BERTH_E_VALIDATION", "an agent token is bound to one agent: give the agent's name (berth token create --role agent --name NAME)", {
          details: { issues: [{ in: "body", path: "name", message: "required for an agent token" }] },
        });
      }
      const token = newToken(role);
      const { hash: _hash, ...record } = await ctx.store.createToken({ role, name: name ?? null, labels: labels ?? null, hash: tokenHash(token) });
      request.log.info({ tokenId: record.id, role, name }, `${role} token ${record.id} created`);
      return reply.code(201).send({ ...record, token });
    },
  );

  app.get(
    "/api/tokens",
    { schema: { summary: "Tokens, without their secrets", tags: ["tokens"], response: withErrors({ 200: TokenList }) } },
    async () => ({ tokens: await ctx.store.listTokens() }),
  );

  app.post(
    "/api/tokens/:id/revoke",
    {
      schema: {
        summary: "Revoke a token: every request with it is refused from now on",
        tags: ["tokens"],
        params: IdParams,
        response: withErrors({ 200: TokenRecord }),
      },
    },
    async (request) => {
      const token = await ctx.store.revokeToken(request.params.id);
      if (!token) throw new BerthError("BERTH_E_NOT_FOUND", `token ${request.params.id} not found: list tokens with \`berth token ls\``);
      request.log.info({ tokenId: token.id }, `token ${token.id} revoked`);
      return token;
    },
  );

  app.put(
    "/api/secrets/:name",
    {
      schema: {
        summary: "Set a secret (stored encrypted; never returned by any route but to a run of a flow that reads it)",
        tags: ["secrets"],
        params: SecretNameParams,
        body: SecretSet.strict(),
        response: withErrors({ 200: Ok, 201: Ok }),
      },
    },
    async (request, reply) => {
      const { created } = await ctx.secrets.set(request.params.name, request.body.value);
      request.log.info(`secret ${request.params.name} ${created ? "created" : "changed"}`);
      return reply.code(created ? 201 : 200).send({ ok: true as const });
    },
  );

  app.get(
    "/api/secrets",
    { schema: { summary: "Secrets' names and times, never their values", tags: ["secrets"], response: withErrors({ 200: SecretList }) } },
    async () => ({ secrets: await ctx.store.listSecrets() }),
  );

  app.delete(
    "/api/secrets/:name",
    { schema: { summary: "Remove a secret", tags: ["secrets"], params: SecretNameParams, response: withErrors({ 200: Ok }) } },
    async (request) => {
      if (!(await ctx.secrets.delete(request.params.name))) throw secretNotFound(request.params.name);
      request.log.info(`secret ${request.params.name} removed`);
      return { ok: true as const };
    },
  );

  app.post(
    "/api/flow-runs/:id/secrets",
    {
      config: { access: "run-secrets" },
      schema: {
        summary: "The values of secrets the run's flow reads (its Secret tasks), for the run's own token",
        tags: ["secrets"],
        params: IdParams,
        body: RunSecretsRequest.strict(),
        response: withErrors({ 200: RunSecrets }),
      },
    },
    async (request) => {
      const run = await requireFlowRun(ctx.store, request.params.id);
      const flow = await requireFlow(ctx.store, run.flowId);
      const used = new Set(flow.tasks.flatMap((task) => (task.secret ? [task.secret] : [])));
      const refused = request.body.names.filter((name) => !used.has(name));
      if (refused.length > 0) {
        throw new BerthError(
          "BERTH_E_FORBIDDEN",
          `flow ${flow.name} v${flow.version} reads no secret named ${refused.join(", ")}: a run reads only the secrets its flow's Secret() tasks name`,
          { details: { refused } },
        );
      }
      const values = await ctx.secrets.read(request.body.names);
      const missing = request.body.names.filter((name) => !values.has(name));
      if (missing.length > 0) throw secretNotFound(missing.join(", "));
      return { secrets: Object.fromEntries(values) };
    },
  );
}

function secretNotFound(name: string): BerthError {
  return new BerthError("BERTH_E_NOT_FOUND", `secret ${name} is not set: set it with \`berth secret set ${name}\``);
}

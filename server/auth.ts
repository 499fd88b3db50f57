/**
 * Who is calling, and what they may do. Every request's bearer token resolves to a principal:
 *
 * - `admin`: the server's configured apiToken, or an admin token made with `berth token create`;
 * - `agent`: an agent token, bound to one agent name; it may register, heartbeat and claim as that agent,
 *   read flows and runs, and write only the runs that agent holds;
 * - `run`: minted by a claim for one run at one epoch (an HMAC of both under the server's key, so nothing
 *   is stored); it may read and write only its own run, and dies when the run is final or claimed again.
 *
 * Each route says who may call it through its `config.access` (see `Access`); a route that says nothing is
 * for admins only. A server with no apiToken configured (`--insecure`, or embedded in a test) treats a request
 * without a token as an admin's, while a token that is sent is still checked and scoped.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { BerthError, isBerthError } from "../wire/errors.js";
import type { FlowRun, TokenRole } from "../wire/schema.js";
import type { StateStore, StoredAgent, StoredToken } from "../store/port.js";
import type { ZodApp } from "./routes/shared.js";
import { flowRunNotFound } from "./routes/shared.js";
import { staleLease } from "../store/fencing.js";
import { deriveKey } from "./secrets.js";
import { isFinalState } from "./states.js";

export type Principal =
  | { role: "admin"; via: "config" | "token" | "open"; tokenId?: string }
  | { role: "agent"; agentName: string; tokenId: string; hash: string; labels: string[] | null }
  | { role: "run"; flowRunId: string; epoch: number };

/**
 * Who may call a route:
 * - `public`: anyone, no token needed;
 * - `admin` (the default);
 * - `agents`: admins and any agent (reads agents need: a build context, a flow, a run);
 * - `agent-self`: admins, and the agent whose name the route's agent (`:id`, or the body's `name`) has;
 * - `run-read` / `run-write`: admins, the run's own run token, and agents (for writes, only the agent
 *   holding the run); `run-logs` is `run-write` that a run's token may still do shortly after the run ended,
 *   so its last lines arrive; `run-secrets`: admins and the run's own token;
 * - `flow-read`: admins, agents, and the run tokens of runs of that flow version.
 */
export type Access = "public" | "admin" | "agents" | "agent-self" | "run-read" | "run-write" | "run-logs" | "run-secrets" | "flow-read";

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal | undefined;
    /** The route's agent as an agent token's request was authorized against it (agent-self routes with `:id`). */
    authorizedAgent: StoredAgent | undefined;
    /** The route's agent (agent-self routes with `:id`), read with a stored token; `agent` undefined: none. */
    agentRead: { id: string; agent: StoredAgent | undefined } | undefined;
  }
  interface FastifyContextConfig {
    access?: Access;
  }
}

const RUN_TOKEN_PREFIX = "berth_run";
/** How long after its run ended a run token may still append log lines and task states, and read its run. */
export const RUN_GRACE_MS = 60_000;

/** A new random token of a role, as `berth token create` prints it. */
export function newToken(role: TokenRole): string {
  return `berth_${role}_${randomBytes(32).toString("base64url")}`;
}

export function tokenHash(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export class RunTokens {
  private readonly key: Buffer;
  constructor(serverKey: Buffer) {
    this.key = deriveKey(serverKey, "run tokens");
  }

  mint(flowRunId: string, epoch: number): string {
    return `${RUN_TOKEN_PREFIX}.${Buffer.from(flowRunId, "utf8").toString("base64url")}.${epoch}.${this.sign(flowRunId, epoch)}`;
  }

  /** The run and epoch a token was minted for; undefined when it is not a run token at all. Throws when forged. */
  verify(token: string): { flowRunId: string; epoch: number } | undefined {
    if (!token.startsWith(`${RUN_TOKEN_PREFIX}.`)) return undefined;
    const [, id, epochText, signature] = token.split(".");
    const flowRunId = Buffer.from(id ?? "", "base64url").toString("utf8");
    const epoch = Number(epochText);
    const expected = Number.isSafeInteger(epoch) && flowRunId ? Buffer.from(this.sign(flowRunId, epoch)) : undefined;
    const given = Buffer.from(signature ?? "");
    if (!expected || expected.length !== given.length || !timingSafeEqual(expected, given)) throw notAccepted("this run token");
    return { flowRunId, epoch };
  }

  private sign(flowRunId: string, epoch: number): string {
    return createHmac("sha256", this.key).update(`${flowRunId}\n${epoch}`).digest("base64url");
  }
}

export interface AuthOptions {
  store: StateStore;
  /** The configured admin token; undefined for a server open to requests without a token. */
  apiToken: string | undefined;
  runTokens: RunTokens;
  now: () => number;
}

export function installAuth(app: ZodApp, options: AuthOptions): void {
  const { store, apiToken, runTokens } = options;
  // Digests, so that timingSafeEqual compares equal lengths and the configured token's length does not leak.
  const configured = apiToken ? digest(apiToken) : undefined;
  app.decorateRequest("principal", undefined);
  app.decorateRequest("authorizedAgent", undefined);
  app.decorateRequest("agentRead", undefined);

  app.addHook("onRequest", async (request) => {
    const access = request.routeOptions.config.access ?? "admin";
    const header = request.headers.authorization;
    if (header === undefined) {
      if (access === "public") return;
      if (configured === undefined) {
        request.principal = { role: "admin", via: "open" };
        return;
      }
      throw new BerthError("BERTH_E_UNAUTHORIZED", "this server requires an API token: send `Authorization: Bearer <token>` (set BERTH_API_TOKEN)", {
        details: { needed: needed(access) },
      });
    }
    const token = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    try {
      if (token === undefined) throw new BerthError("BERTH_E_UNAUTHORIZED", "the Authorization header must be `Bearer <token>`");
      request.principal = await resolve(token, request, access);
    } catch (err) {
      // An open server takes any token it does not know as it takes none; a run's or agent's is still scoped.
      if (configured !== undefined || !isBerthError(err, "BERTH_E_UNAUTHORIZED")) throw err;
      request.principal = access === "public" ? undefined : { role: "admin", via: "open" };
    }
    // What the role alone decides is refused now, before a body (up to a build context's size) is read.
    const principal = request.principal;
    if (principal !== undefined && principal.role !== "admin" && !roleMayCall(principal.role, access)) {
      throw forbidden(principal, access, `${request.method} ${request.routeOptions.url ?? request.url}`);
    }
  });

  app.addHook("preHandler", async (request) => {
    const access = request.routeOptions.config.access ?? "admin";
    if (access === "public" || request.principal === undefined) return;
    await authorize(store, request, access, options.now);
  });

  async function resolve(token: string, request: FastifyRequest, access: Access): Promise<Principal> {
    if (configured !== undefined && timingSafeEqual(digest(token), configured)) return { role: "admin", via: "config" };
    const run = runTokens.verify(token);
    if (run) return { role: "run", ...run };
    const hash = tokenHash(token);
    // An agent's request about itself is authorized against the agent's row: read with the token, not after it.
    const agentId = access === "agent-self" ? (request.params as Record<string, string | undefined>)["id"] : undefined;
    let stored: StoredToken | undefined;
    if (agentId === undefined) stored = await store.findToken(hash);
    else {
      const read = await store.findTokenAndAgent(hash, agentId);
      stored = read.token;
      request.agentRead = { id: agentId, agent: read.agent };
    }
    // The lookup is by digest; comparing the digests again keeps the final check constant-time.
    if (!stored || !timingSafeEqual(Buffer.from(stored.hash, "hex"), Buffer.from(hash, "hex"))) throw notAccepted("this API token");
    if (stored.revokedAt !== null) throw notAccepted(`token ${stored.id}, revoked at ${stored.revokedAt},`);
    if (stored.role === "admin") return { role: "admin", via: "token", tokenId: stored.id };
    return { role: "agent", agentName: stored.name ?? "", tokenId: stored.id, hash, labels: stored.labels };
  }
}

/**
 * Throws when the request's stored token has been revoked since the request began: a claim parked for
 * seconds checks again before it takes a run, so a revoked agent gets none.
 */
export async function assertNotRevoked(store: StateStore, principal: Principal | undefined): Promise<void> {
  if (principal?.role !== "agent") return;
  const stored = await store.findToken(principal.hash);
  if (!stored || stored.revokedAt !== null) throw notAccepted(`token ${principal.tokenId}, revoked,`);
}

/** Whether a role can call a route of this access at all (the run or agent it is bound to is checked later). */
function roleMayCall(role: "agent" | "run", access: Access): boolean {
  switch (access) {
    case "public":
    case "run-read":
    case "run-write":
    case "run-logs":
    case "flow-read":
      return true;
    case "admin":
      return false;
    case "agents":
    case "agent-self":
      return role === "agent";
    case "run-secrets":
      return role === "run";
  }
}

function notAccepted(what: string): BerthError {
  return new BerthError("BERTH_E_UNAUTHORIZED", `the server does not accept ${what}: check BERTH_API_TOKEN (or --token)`);
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/** The roles a route accepts, as refusals name them. */
function needed(access: Access): string[] {
  switch (access) {
    case "public":
      return [];
    case "admin":
      return ["admin"];
    case "agents":
      return ["admin", "agent"];
    case "agent-self":
      return ["admin", "agent (as itself)"];
    case "run-read":
      return ["admin", "agent", "run (its own run)"];
    case "run-write":
    case "run-logs":
      return ["admin", "agent (holding the run)", "run (its own run)"];
    case "run-secrets":
      return ["admin", "run (its own run)"];
    case "flow-read":
      return ["admin", "agent", "run (of this flow)"];
  }
}

function describe(principal: Principal): string {
  if (principal.role === "admin") return "an admin token";
  if (principal.role === "agent") return `the agent token of ${principal.agentName}`;
  return `the run token of flow run ${principal.flowRunId} (epoch ${principal.epoch})`;
}

export function forbidden(principal: Principal, access: Access, what: string): BerthError {
  const roles = needed(access);
  return new BerthError("BERTH_E_FORBIDDEN", `${what} needs ${roles.join(" or ")}; the request has ${describe(principal)}`, {
    details: { needed: roles, role: principal.role },
  });
}

async function authorize(store: StateStore, request: FastifyRequest, access: Access, now: () => number): Promise<void> {
  const principal = request.principal!;
  if (principal.role === "admin") return;
  const what = `${request.method} ${request.routeOptions.url ?? request.url}`;
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  switch (access) {
    case "admin":
      throw forbidden(principal, access, what);
    case "agents":
      if (principal.role === "agent") return;
      throw forbidden(principal, access, what);
    case "agent-self": {
      if (principal.role !== "agent") throw forbidden(principal, access, what);
      const id = params["id"];
      const known = id === undefined ? undefined : request.agentRead?.id === id ? request.agentRead.agent : await store.getAgent(id);
      // An unknown agent id is the route's own 404.
      if (id !== undefined && known === undefined) return;
      const body = request.body as { name?: string; labels?: string[] } | undefined;
      const name = known?.name ?? body?.name;
      if (name?.trim() !== principal.agentName) {
        throw forbidden(principal, access, `${what} as agent ${name ?? "?"}`);
      }
      // The labels its claims match: those it registers with, or those it has (an agent of this name may have
      // registered with others, under another token). A token bound to labels may not go beyond them.
      const asked = known?.labels ?? body?.labels ?? [];
      const allowed = principal.labels;
      const outside = allowed === null ? [] : asked.filter((label) => !allowed.includes(label));
      // With no labels it would take the unlabelled runs, which are not the token's either (unless it has none).
      if (allowed !== null && allowed.length > 0 && asked.length === 0) outside.push("(no labels)");
      if (outside.length > 0) {
        throw new BerthError(
          "BERTH_E_FORBIDDEN",
          `the agent token of ${principal.agentName} allows the labels ${allowed?.join(", ") || "(none)"}, not ${outside.join(", ")}: create a token with them (berth token create --role agent --label L)`,
          { details: { needed: ["admin", "agent (as itself, with its token's labels)"], role: "agent", refused: outside } },
        );
      }
      // What was checked is what the route uses (a claim, its labels), not a row read again later.
      request.authorizedAgent = known;
      return;
    }
    case "flow-read": {
      if (principal.role === "agent") return;
      if (principal.role === "run") {
        const run = await liveRun(store, principal, principal.flowRunId, access, what, now);
        if (run.flowId === params["id"]) return;
      }
      throw forbidden(principal, access, what);
    }
    case "run-read":
    case "run-write":
    case "run-logs":
    case "run-secrets": {
      const id = params["id"] ?? "";
      if (principal.role === "agent") {
        if (access === "run-read") return;
        if (access === "run-secrets") throw forbidden(principal, access, what);
        const run = await store.getFlowRun(id);
        if (!run) throw flowRunNotFound(id);
        const holder = run.agentId === null ? undefined : await store.getAgent(run.agentId);
        if (holder?.name !== principal.agentName) {
          // An attempt of its own that is over (the run was given back or claimed again): the agent must stop it.
          const epoch = (request.body as { epoch?: number } | null | undefined)?.epoch;
          if (typeof epoch === "number") throw staleLease(id, run.epoch, epoch);
          throw forbidden(principal, access, `${what}: agent ${principal.agentName} does not hold flow run ${id}, so it`);
        }
        return;
      }
      if (id !== principal.flowRunId) throw forbidden(principal, access, `${what} (another flow run)`);
      await liveRun(store, principal, id, access, what, now);
      fenceBody(request, principal.epoch);
      return;
    }
    case "public":
      return;
  }
}

/** The run of a run token, refusing a token whose run has ended or moved to another attempt. */
async function liveRun(
  store: StateStore,
  principal: Extract<Principal, { role: "run" }>,
  id: string,
  access: Access,
  what: string,
  now: () => number,
): Promise<FlowRun> {
  const run = await store.getFlowRun(id);
  if (!run) throw flowRunNotFound(id);
  if (run.epoch !== principal.epoch) {
    // The same answer a fenced write gets: the container stops, as it does for any superseded write.
    throw new BerthError(
      "BERTH_E_STALE_LEASE",
      `flow run ${id} is at epoch ${run.epoch}, not ${principal.epoch}: another attempt owns this run, so this run token no longer works`,
      { details: { expected: run.epoch, actual: principal.epoch } },
    );
  }
  if (run.state === "Scheduled") {
    // Given back (lost, or not started in time) and waiting for its next claim: this attempt is over.
    throw new BerthError("BERTH_E_STALE_LEASE", `flow run ${id} was given back to be claimed again: this run token's attempt (epoch ${principal.epoch}) is over`, {
      details: { expected: run.epoch + 1, actual: principal.epoch },
    });
  }
  if (isFinalState(run.state)) {
    // Its last lines, task states and reads may still arrive for a minute; the state itself can no longer
    // change (the transition rules refuse it), and nothing else works.
    const endedAt = Date.parse(run.endedAt ?? run.updatedAt);
    const graceful = access === "run-logs" || access === "run-write" || access === "run-read" || access === "flow-read";
    if (graceful && now() - endedAt < RUN_GRACE_MS) return run;
    throw new BerthError("BERTH_E_UNAUTHORIZED", `the run token of flow run ${id} no longer works: the run is ${run.state}`, {
      details: { state: run.state, needed: needed(access) },
    });
  }
  void what;
  return run;
}

/** A run token's writes carry its epoch, whether or not the body said so: the store then fences them. */
function fenceBody(request: FastifyRequest, epoch: number): void {
  if (request.method === "GET") return;
  const body = request.body as { epoch?: number } | null | undefined;
  if (body && typeof body === "object" && !Array.isArray(body)) {
    if (body.epoch !== undefined && body.epoch !== epoch) {
      throw new BerthError("BERTH_E_STALE_LEASE", `this run token is for epoch ${epoch}, and the write says epoch ${body.epoch}`, {
        details: { expected: epoch, actual: body.epoch },
      });
    }
    body.epoch = epoch;
  } else if (request.routeOptions.url === "/api/flow-runs/:id/heartbeat") {
    request.body = { epoch };
  }
}

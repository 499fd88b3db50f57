/**
 * `berth agent --http HOST:PORT`: the agent's own endpoints, on node:http (two routes need no framework).
 * - GET /health: 200 when the engine answers, the claim loop turns within its bound and free disk is above
 *   the low watermark; 503 otherwise, with the reasons. The body is JSON either way (AgentHealth).
 * - GET /metrics: Prometheus text (agent/metrics.ts).
 * Meant for a loopback or private address: it has no authentication, and says nothing secret.
 */
import { createServer, type Server } from "node:http";
import { once } from "node:events";
import type { Logger } from "pino";
import { BerthError } from "../wire/errors.js";
import type { AgentMetrics } from "./metrics.js";
import type { AgentState } from "./agent.js";

export interface AgentHealth {
  status: "ok" | "unhealthy";
  /** Why it is unhealthy, one sentence each; empty when ok. */
  reasons: string[];
  state: AgentState;
  engine: { up: boolean };
  claimLoop: { turnedSecondsAgo: number; waitingFor: "slot" | "engine" | null };
  disk: { path: string; freeBytes: number | null; lowWatermarkBytes: number };
  slots: { used: number; total: number };
}

export class AgentHttp {
  private server: Server | undefined;

  constructor(
    private readonly health: () => Promise<AgentHealth>,
    private readonly metrics: AgentMetrics,
    private readonly log: () => Logger,
  ) {}

  /** Listens; resolves with the bound port (useful with port 0), rejects with a clear error when it cannot. */
  async listen(host: string, port: number): Promise<number> {
    const server = createServer((request, response) => {
      const reply = (status: number, type: string, body: string) => {
        response.writeHead(status, { "content-type": type, "cache-control": "no-store" });
        response.end(body);
      };
      const path = (request.url ?? "/").split("?")[0];
      if (request.method !== "GET" && request.method !== "HEAD") return reply(405, "application/json", JSON.stringify({ error: "only GET" }));
      const answer =
        path === "/health"
          ? this.health().then((h) => reply(h.status === "ok" ? 200 : 503, "application/json", JSON.stringify(h)))
          : path === "/metrics"
            ? this.metrics.registry.metrics().then((text) => reply(200, this.metrics.registry.contentType, text))
            : Promise.resolve(reply(404, "application/json", JSON.stringify({ error: `no ${path} here: the agent serves /health and /metrics` })));
      answer.catch((err: unknown) => {
        this.log().warn({ err, path }, "agent http request failed");
        if (!response.headersSent) reply(500, "application/json", JSON.stringify({ error: String(err) }));
      });
    });
    server.listen(port, host);
    try {
      await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err as Error))]);
    } catch (err) {
      throw new BerthError("BERTH_E_CONFIG", `the agent cannot serve /health and /metrics on ${host}:${port} (agent.http): ${(err as Error).message}`);
    }
    this.server = server;
    const address = server.address();
    return typeof address === "object" && address ? address.port : port;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

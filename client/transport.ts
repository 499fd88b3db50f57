/**
 * A keep-alive HTTP transport over node:http, for the flow-run container and the agent. It does not load
 * undici (global fetch), whose first request costs about 50 ms of CPU to compile, more than the rest of a
 * trivial run's requests together; and each request costs less than through fetch (a claim's round trip on
 * loopback: about 0.2 ms against 0.5 ms).
 */
import http from "node:http";
import https from "node:https";
import type { Transport } from "./http.js";

/**
 * A transport whose connections stay open between requests (and never keep the process alive), at most
 * `maxSockets` at once per server (default 8: a container's few requests; an agent's long-polls need more).
 */
export function keepAliveTransport({ maxSockets = 8 }: { maxSockets?: number } = {}): Transport {
  const agents = {
    "http:": new http.Agent({ keepAlive: true, maxSockets }),
    "https:": new https.Agent({ keepAlive: true, maxSockets }),
  };
  const send: Transport = (url, init) =>
    new Promise((resolve, reject) => {
      const secure = url.protocol === "https:";
      const headers: Record<string, string | number> = { ...init.headers };
      if (init.body !== null) headers["content-length"] = Buffer.byteLength(init.body);
      const req = (secure ? https : http).request(
        url,
        { method: init.method, headers, agent: secure ? agents["https:"] : agents["http:"], signal: init.signal },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const body = Buffer.concat(chunks);
            resolve({
              status: res.statusCode ?? 0,
              headers: { get: (name) => (res.headers[name.toLowerCase()] as string | undefined) ?? null },
              arrayBuffer: () => Promise.resolve(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer),
            });
          });
        },
      );
      req.on("error", (err: NodeJS.ErrnoException) => {
        // A kept connection the server closed as it went idle: the request almost surely never reached it, so it
        // goes again on a new connection, as Node's documentation advises for keep-alive agents. The container's
        // writes bear a repeat: state writes compare versions, task-run writes replace by slug.
        if (req.reusedSocket && err.code === "ECONNRESET" && !init.signal.aborted) send(url, init).then(resolve, reject);
        else reject(err);
      });
      req.end(init.body ?? undefined);
    });
  return send;
}

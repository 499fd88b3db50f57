/**
 * The floor under every claim figure: a bare node:http server, in a process of its own like `berth server`,
 * that reads each request's body and answers a fixed JSON reply. The claimers of bench/scale.ts against it
 * measure what this machine's HTTP alone allows, with no routing, auth, validation or store.
 */
import http from "node:http";

const reply = JSON.stringify({ claims: [], startTimeoutMs: 0 });
const server = http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(reply) });
    res.end(reply);
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${typeof address === "object" && address ? address.port : 0}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));

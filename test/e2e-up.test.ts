/**
 * `berth up` as the quickstart uses it, in a fresh home with no token configured: it makes an admin token
 * that the CLI finds by itself, and its runs reach the server on a Docker network of their own, not the host
 * network, so a service listening only on the host's loopback is out of their reach.
 */
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerAvailable } from "./support/docker.js";
import { BerthProcess, REPO, berth, freePort } from "./support/processes.js";

describe.skipIf(!dockerAvailable)("berth up", () => {
  let home: string;
  let loopbackOnly: net.Server;
  let servicePort: number;

  beforeAll(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), "berth-up-"));
    const image = await berth(["image", "build"], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    loopbackOnly = net.createServer((socket) => socket.end("secret\n"));
    loopbackOnly.listen(0, "127.0.0.1");
    await once(loopbackOnly, "listening");
    servicePort = (loopbackOnly.address() as net.AddressInfo).port;
  }, 900_000);

  afterAll(async () => {
    loopbackOnly?.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it("needs no set-up, and its runs reach the API but not the host's loopback", async () => {
    const port = await freePort();
    const env = { BERTH_HOME: home, BERTH_API_TOKEN: "" };
    await using up = new BerthProcess(["up", "--port", String(port), "--label", "netprobe", "--db", path.join(home, "berth.db")], env);
    await up.waitFor(/berth is up at/, 300_000);
    expect(up.output).not.toContain("use the host network");
    const api = `http://127.0.0.1:${port}`;
    const registered = await berth(["register", path.join(REPO, "test", "fixtures", "net-probe-flow.ts"), "--no-push", "--api", api], { env });
    expect(registered.code, registered.stderr).toBe(0);
    const watched = await berth(["run", "Net Probe Flow", "--param", `port=${servicePort}`, "--watch", "--api", api], { env, timeoutMs: 180_000 });
    expect(watched.code, watched.stdout + watched.stderr).toBe(0);
    expect(watched.stdout).toMatch(/flow run \S+: Success/);
    expect(watched.stdout).toContain("host loopback service: ECONNREFUSED");
    await up.stop();
  }, 600_000);
});

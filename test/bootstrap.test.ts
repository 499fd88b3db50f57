/**
 * How a server gets its admin token when given none, and how clients on its machine find it: real `berth`
 * processes in a fresh home, with no BERTH_API_TOKEN.
 */
import { mkdtemp, rm, stat, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { compileServerOptions } from "../config/compile.js";
import { defaultConfig } from "../config/load.js";
import { clientToken, serverSecrets } from "../config/tokens.js";
import { spawnSync } from "node:child_process";
import { chmodSync } from "node:fs";
import { BerthProcess, CLI, berth, freePort } from "./support/processes.js";

describe("bootstrapping tokens", () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), "berth-bootstrap-"));
  });
  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it("a loopback server with no token makes one in the home, readable by its owner only, and local clients use it", async () => {
    const port = await freePort();
    const env = { BERTH_HOME: home, BERTH_API_TOKEN: "" };
    await using server = new BerthProcess(["server", "--port", String(port), "--db", path.join(home, "berth.db")], env);
    expect(await server.waitFor(/the admin token is in/)).toContain(`the admin token is in ${path.join(home, "admin.token")}`);
    const file = await stat(path.join(home, "admin.token"));
    expect(file.mode & 0o777).toBe(0o600);
    expect((await stat(path.join(home, "server.key"))).mode & 0o777).toBe(0o600);
    const token = (await readFile(path.join(home, "admin.token"), "utf8")).trim();
    expect(token).toMatch(/^berth_admin_/);
    expect(server.output).not.toContain(token);

    const api = `http://127.0.0.1:${port}`;
    const listed = await berth(["flows", "--api", api], { env });
    expect(listed.code, listed.stderr).toBe(0);
    // Without the home's token (another user, another machine): refused, saying what to set.
    const stranger = await berth(["flows", "--api", api], { env: { BERTH_HOME: path.join(home, "elsewhere"), BERTH_API_TOKEN: "" } });
    expect(stranger.code).not.toBe(0);
    expect(stranger.stderr).toContain("this server requires an API token");
    const tokens = await berth(["token", "create", "--role", "agent", "--name", "a1", "--api", api], { env });
    expect(tokens.code, tokens.stderr).toBe(0);
    expect(tokens.stdout.trim()).toMatch(/^berth_agent_/);

    // Secrets: the value from stdin, never an argument; listed by name only.
    const set = spawnSync(process.execPath, [CLI, "secret", "set", "DB_PASSWORD", "--api", api], {
      input: "hunter2-but-longer\n",
      env: { ...process.env, ...env },
      encoding: "utf8",
    });
    expect(set.status, set.stderr).toBe(0);
    expect(set.stdout).toContain("secret DB_PASSWORD set");
    const secrets = await berth(["secret", "ls", "--api", api], { env });
    expect(secrets.stdout).toContain("DB_PASSWORD");
    expect(secrets.stdout).not.toContain("hunter2");
    const empty = await berth(["secret", "set", "EMPTY", "--api", api], { env });
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toContain("no value for secret EMPTY: pipe it in");
  });

  it("a server bound beyond loopback refuses to start without a token, unless --insecure", async () => {
    const port = await freePort();
    const env = { BERTH_HOME: home, BERTH_API_TOKEN: "" };
    const refused = await berth(["server", "--host", "0.0.0.0", "--port", String(port), "--db", path.join(home, "berth.db")], { env, timeoutMs: 30_000 });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("berth server on 0.0.0.0 is reachable from other machines, and it has no admin token");
    await using insecure = new BerthProcess(["server", "--host", "127.0.0.2", "--port", String(port), "--insecure", "--db", path.join(home, "berth.db")], env);
    await insecure.waitFor(/listening on/);
    expect(insecure.output).toContain("--insecure: this server accepts requests without a token");
  });

  it("clients send the home's token only to a loopback server, and a named token file must exist", () => {
    const config = (overrides: object) => defaultConfig({ home, ...overrides });
    const secrets = serverSecrets(compileServerOptions(config({})));
    expect(secrets.apiToken).toMatch(/^berth_admin_/);
    expect(serverSecrets(compileServerOptions(config({}))).apiToken).toBe(secrets.apiToken);
    expect(serverSecrets(compileServerOptions(config({}))).serverKey.equals(secrets.serverKey)).toBe(true);
    expect(clientToken(config({ apiUrl: "http://127.0.0.1:4200" }))).toBe(secrets.apiToken);
    expect(clientToken(config({ apiUrl: "http://localhost:4200" }))).toBe(secrets.apiToken);
    expect(clientToken(config({ apiUrl: "http://berth.example:4200" }))).toBeUndefined();
    expect(clientToken(config({ apiUrl: "http://berth.example:4200", apiToken: "given" }))).toBe("given");
    expect(() => clientToken(config({ apiTokenFile: path.join(home, "missing.token") }))).toThrow(/does not exist: the server creates it on its first start/);
    expect(() => serverSecrets(compileServerOptions(config({ server: { key: "c2hvcnQ=" } })))).toThrow(/at least 32 bytes/);
    expect(() => serverSecrets(compileServerOptions(config({ server: { host: "0.0.0.0" } })))).toThrow(/reachable from other machines/);
    expect(serverSecrets(compileServerOptions(config({ server: { host: "0.0.0.0", insecure: true } }))).apiToken).toBeUndefined();
    chmodSync(path.join(home, "admin.token"), 0o644);
    expect(() => serverSecrets(compileServerOptions(config({})))).toThrow(/may be read by other users \(mode 0644\): make it private/);
    chmodSync(path.join(home, "admin.token"), 0o600);
    const shared = serverSecrets(compileServerOptions(config({ server: { host: "0.0.0.0" }, apiTokenFile: path.join(home, "shared", "admin.token") })));
    expect(clientToken(config({ apiUrl: "http://server:4200", apiTokenFile: path.join(home, "shared", "admin.token") }))).toBe(shared.apiToken);
  });
});

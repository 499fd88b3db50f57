/** `berth token ...` and `berth secret ...`: who may call the server, and the values flows read. */
import { BerthError } from "../../wire/errors.js";
import { SecretName, TokenRole } from "../../wire/schema.js";
import { apiClient, print, type ApiOpts, type GlobalOptions } from "../context.js";
import { shortTime, table } from "../format.js";

export async function tokenCreateCommand(global: GlobalOptions, opts: ApiOpts & { role: string; name?: string; label?: string[] }): Promise<void> {
  const role = TokenRole.safeParse(opts.role);
  if (!role.success) throw new BerthError("BERTH_E_USAGE", `--role must be admin or agent, not "${opts.role}" (run tokens are made by claims)`);
  if (role.data === "agent" && !opts.name) throw new BerthError("BERTH_E_USAGE", "an agent token is bound to one agent: give its name with --name (the agent's --name)");
  if (role.data === "admin" && opts.label) throw new BerthError("BERTH_E_USAGE", "--label binds an agent token only: an admin token may do everything");
  const created = await apiClient(global, opts).createToken({
    role: role.data,
    ...(opts.name ? { name: opts.name } : {}),
    ...(opts.label ? { labels: opts.label } : {}),
  });
  if (opts.json) return print(created);
  process.stderr.write(`${created.role} token ${created.id}${created.name ? ` (${created.name})` : ""} created; it is shown once, keep it:\n`);
  print(created.token);
}

export async function tokenListCommand(global: GlobalOptions, opts: ApiOpts): Promise<void> {
  const tokens = await apiClient(global, opts).listTokens();
  if (opts.json) return print(tokens);
  if (tokens.length === 0) return print("no tokens: berth token create --role agent --name NAME");
  print(
    table(
      ["ID", "ROLE", "NAME", "LABELS", "CREATED", "REVOKED"],
      tokens.map((t) => [t.id, t.role, t.name ?? "-", t.labels === null ? "any" : t.labels.join(",") || "none", shortTime(t.createdAt), t.revokedAt ? shortTime(t.revokedAt) : "-"]),
    ),
  );
}

export async function tokenRevokeCommand(global: GlobalOptions, id: string, opts: ApiOpts): Promise<void> {
  const token = await apiClient(global, opts).revokeToken(id);
  print(`token ${token.id} revoked: requests with it are refused from now on`);
}

function secretName(name: string): string {
  const parsed = SecretName.safeParse(name);
  if (!parsed.success) throw new BerthError("BERTH_E_USAGE", `"${name}" is not a secret name: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  return parsed.data;
}

/** The value comes from stdin (never an argument: arguments are visible to every user of the machine). */
export async function secretSetCommand(global: GlobalOptions, name: string, opts: ApiOpts): Promise<void> {
  const valid = secretName(name);
  if (process.stdin.isTTY) process.stderr.write(`value of ${valid} (end with Ctrl-D): `);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  // One trailing newline is how `echo` and a terminal end the value, not part of it.
  const value = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  if (value === "") throw new BerthError("BERTH_E_USAGE", `no value for secret ${valid}: pipe it in, e.g. \`printf %s "$VALUE" | berth secret set ${valid}\``);
  await apiClient(global, opts).setSecret(valid, value);
  print(`secret ${valid} set`);
}

export async function secretListCommand(global: GlobalOptions, opts: ApiOpts): Promise<void> {
  const secrets = await apiClient(global, opts).listSecrets();
  if (opts.json) return print(secrets);
  if (secrets.length === 0) return print("no secrets: printf %s VALUE | berth secret set NAME");
  print(table(["NAME", "CREATED", "UPDATED"], secrets.map((s) => [s.name, shortTime(s.createdAt), shortTime(s.updatedAt)])));
}

export async function secretRemoveCommand(global: GlobalOptions, name: string, opts: ApiOpts): Promise<void> {
  await apiClient(global, opts).deleteSecret(secretName(name));
  print(`secret ${name} removed`);
}

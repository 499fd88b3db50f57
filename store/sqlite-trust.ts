/** The SQLite store's tokens and secrets: small tables, each method one statement or one transaction. */
import { randomUUID } from "node:crypto";
import type { SecretInfo, TokenRecord, TokenRole } from "../wire/schema.js";
import type { SealedSecret, StoredToken } from "./port.js";
import { normalizeLabels } from "./labels.js";
import type { SqlAccess } from "./sqlite-orchestration.js";

interface TokenRow {
  id: string;
  hash: string;
  role: TokenRole;
  name: string | null;
  labels: string | null;
  created_at: string;
  revoked_at: string | null;
}

interface SecretRow {
  name: string;
  sealed: string;
  created_at: string;
  updated_at: string;
}

function toToken(row: TokenRow): StoredToken {
  const labels = row.labels === null ? null : (JSON.parse(row.labels) as string[]);
  return { id: row.id, hash: row.hash, role: row.role, name: row.name, labels, createdAt: row.created_at, revokedAt: row.revoked_at };
}

function withoutHash({ hash: _hash, ...record }: StoredToken): TokenRecord {
  return record;
}

export function createToken(sql: SqlAccess, input: { role: TokenRole; name: string | null; labels: string[] | null; hash: string }): StoredToken {
  const row: TokenRow = {
    id: randomUUID(),
    hash: input.hash,
    role: input.role,
    name: input.name,
    labels: input.labels === null ? null : JSON.stringify(normalizeLabels(input.labels)),
    created_at: sql.timestamp(),
    revoked_at: null,
  };
  sql.run(
    "INSERT INTO api_tokens (id, hash, role, name, labels, created_at, revoked_at) VALUES (@id, @hash, @role, @name, @labels, @created_at, @revoked_at)",
    row,
  );
  return toToken(row);
}

export function findToken(sql: SqlAccess, hash: string): StoredToken | undefined {
  const row = sql.get<TokenRow>("SELECT * FROM api_tokens WHERE hash = ?", hash);
  return row && toToken(row);
}

export function listTokens(sql: SqlAccess): TokenRecord[] {
  return sql.all<TokenRow>("SELECT * FROM api_tokens ORDER BY created_at, id").map((row) => withoutHash(toToken(row)));
}

export function revokeToken(sql: SqlAccess, id: string): TokenRecord | undefined {
  sql.run("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", sql.timestamp(), id);
  const row = sql.get<TokenRow>("SELECT * FROM api_tokens WHERE id = ?", id);
  return row && withoutHash(toToken(row));
}

export function putSecret(sql: SqlAccess, secret: SealedSecret): { created: boolean } {
  const now = sql.timestamp();
  const known = sql.get<{ name: string }>("SELECT name FROM secrets WHERE name = ?", secret.name);
  if (known) sql.run("UPDATE secrets SET sealed = ?, updated_at = ? WHERE name = ?", secret.sealed, now, secret.name);
  else sql.run("INSERT INTO secrets (name, sealed, created_at, updated_at) VALUES (?, ?, ?, ?)", secret.name, secret.sealed, now, now);
  return { created: !known };
}

export function listSecrets(sql: SqlAccess): SecretInfo[] {
  return sql
    .all<SecretRow>("SELECT name, created_at, updated_at FROM secrets ORDER BY name")
    .map((row) => ({ name: row.name, createdAt: row.created_at, updatedAt: row.updated_at }));
}

export function getSecrets(sql: SqlAccess, names?: readonly string[]): SealedSecret[] {
  const rows =
    names === undefined
      ? sql.all<SecretRow>("SELECT name, sealed FROM secrets ORDER BY name")
      : names.flatMap((name) => sql.all<SecretRow>("SELECT name, sealed FROM secrets WHERE name = ?", name));
  return rows.map((row) => ({ name: row.name, sealed: row.sealed }));
}

export function deleteSecret(sql: SqlAccess, name: string): boolean {
  return sql.run("DELETE FROM secrets WHERE name = ?", name).changes > 0;
}

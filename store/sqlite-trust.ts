/** The SQLite store's tokens and secrets: small tables, each method one statement or one transaction. */
import type { SecretInfo, TokenRecord, TokenRole } from "../wire/schema.js";
import type { SealedSecret, StoredToken } from "./port.js";
import type { SqlAccess } from "./sqlite-orchestration.js";
import { newTokenRow, toToken, withoutHash, type TokenRow } from "./sqlite-rows.js";

interface SecretRow {
  name: string;
  sealed: string;
  created_at: string;
  updated_at: string;
}

export function createToken(sql: SqlAccess, input: { role: TokenRole; name: string | null; labels: string[] | null; hash: string }): StoredToken {
  const row = newTokenRow(input, sql.timestamp());
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

/**
 * Secrets at rest and in logs. Values are sealed with AES-256-GCM under a key derived from the server's key,
 * with the secret's name as associated data (a sealed value cannot be moved to another name). Every log line,
 * state message and task message the server stores passes through `redact`, which replaces the value of each
 * secret with "[redacted]".
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { BerthError } from "../wire/errors.js";
import type { StateStore } from "../store/port.js";

export const REDACTED = "[redacted]";
/** Shorter values are refused: replacing every "ab" in every log line would ruin the logs and hide nothing. */
export const MIN_SECRET_LENGTH = 4;
const SEALED_VERSION = "v1";
/** How long another replica's change to a secret may take to reach this one's redaction. */
const CACHE_MS = 5_000;

export function deriveKey(serverKey: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync("sha256", serverKey, Buffer.alloc(0), `berth ${purpose}`, 32));
}

export class Secrets {
  private readonly key: Buffer;
  private values: { at: number; list: string[] } | undefined;

  constructor(
    private readonly store: StateStore,
    serverKey: Buffer,
    private readonly now: () => number = Date.now,
  ) {
    this.key = deriveKey(serverKey, "secrets");
  }

  seal(name: string, value: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(name, "utf8"));
    const data = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
    return [SEALED_VERSION, iv.toString("base64"), cipher.getAuthTag().toString("base64"), data.toString("base64")].join(":");
  }

  open(name: string, sealed: string): string {
    const [version, iv, tag, data] = sealed.split(":");
    try {
      if (version !== SEALED_VERSION || !iv || !tag || data === undefined) throw new Error(`unknown format ${version ?? ""}`);
      const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64"));
      decipher.setAAD(Buffer.from(name, "utf8"));
      decipher.setAuthTag(Buffer.from(tag, "base64"));
      return Buffer.concat([decipher.update(Buffer.from(data, "base64")), decipher.final()]).toString("utf8");
    } catch (err) {
      throw new BerthError(
        "BERTH_E_CONFIG",
        `secret ${name} cannot be decrypted with this server's key: the key changed (server.keyFile, BERTH_SERVER_KEY); set the secret again or restore the key`,
        { cause: err },
      );
    }
  }

  async set(name: string, value: string): Promise<{ created: boolean }> {
    if (value.length < MIN_SECRET_LENGTH) {
      throw new BerthError("BERTH_E_VALIDATION", `secret ${name}: a value of fewer than ${MIN_SECRET_LENGTH} characters cannot be redacted from logs; use a longer one`);
    }
    const result = await this.store.putSecret({ name, sealed: this.seal(name, value) });
    this.values = undefined;
    return result;
  }

  async delete(name: string): Promise<boolean> {
    const deleted = await this.store.deleteSecret(name);
    this.values = undefined;
    return deleted;
  }

  /** The values of these secrets, by name; unknown names are left out. */
  async read(names: readonly string[]): Promise<Record<string, string>> {
    const sealed = await this.store.getSecrets(names);
    return Object.fromEntries(sealed.map((secret) => [secret.name, this.open(secret.name, secret.sealed)]));
  }

  /** `text` with every secret's value (and its JSON-escaped form) replaced by [redacted]. */
  async redact(text: string): Promise<string> {
    const values = await this.allValues();
    let out = text;
    for (const value of values) if (out.includes(value)) out = out.replaceAll(value, REDACTED);
    return out;
  }

  /** Redacts a field of each item, returning new items only where something changed. */
  async redactEach<T>(items: readonly T[], field: (item: T) => string | null | undefined, set: (item: T, text: string) => T): Promise<T[]> {
    const values = await this.allValues();
    if (values.length === 0) return [...items];
    return Promise.all(
      items.map(async (item) => {
        const text = field(item);
        if (!text) return item;
        const redacted = await this.redact(text);
        return redacted === text ? item : set(item, redacted);
      }),
    );
  }

  private async allValues(): Promise<string[]> {
    const now = this.now();
    if (this.values && now - this.values.at < CACHE_MS) return this.values.list;
    const sealed = await this.store.getSecrets();
    const list = new Set<string>();
    for (const secret of sealed) {
      let value: string;
      try {
        value = this.open(secret.name, secret.sealed);
      } catch {
        continue;
      }
      list.add(value);
      // A value printed inside JSON appears escaped.
      const escaped = JSON.stringify(value).slice(1, -1);
      if (escaped !== value) list.add(escaped);
    }
    // Longest first, so that a value containing another is replaced whole.
    this.values = { at: now, list: [...list].filter((v) => v.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length) };
    return this.values.list;
  }
}

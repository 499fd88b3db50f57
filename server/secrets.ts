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
  /** Per secret, the forms of its value to redact, longest first. */
  private values: { at: number; byName: Map<string, string[]> } | undefined;
  /** The secrets each flow version declares (versions never change), by flow id. */
  private readonly declared = new Map<string, ReadonlySet<string>>();

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
  async read(names: readonly string[]): Promise<Map<string, string>> {
    const sealed = await this.store.getSecrets(names);
    return new Map(sealed.map((secret) => [secret.name, this.open(secret.name, secret.sealed)]));
  }

  /**
   * The secrets whose values are redacted from what a writer sends about a flow run: for a run's or an
   * agent's writes, only those the run's flow declares (which its code can read anyway), so that the
   * redaction cannot be used to test guesses at other flows' secrets; every secret for an admin's.
   */
  async scopeFor(flowId: string | undefined): Promise<ReadonlySet<string> | undefined> {
    if (flowId === undefined) return undefined;
    let names = this.declared.get(flowId);
    if (names === undefined) {
      const flow = await this.store.getFlow(flowId);
      names = new Set(flow?.tasks.flatMap((task) => (task.secret ? [task.secret] : [])) ?? []);
      if (this.declared.size >= 1000) this.declared.clear();
      this.declared.set(flowId, names);
    }
    return names;
  }

  /** `text` with the value of each secret in `scope` (every one when undefined), and its JSON-escaped form, replaced by [redacted]. */
  async redact(text: string, scope?: ReadonlySet<string>): Promise<string> {
    const forms = await this.forms(scope);
    let out = text;
    for (const form of forms) if (out.includes(form)) out = out.replaceAll(form, REDACTED);
    return out;
  }

  /** Redacts a field of each item, returning new items only where something changed. */
  async redactEach<T>(items: readonly T[], field: (item: T) => string | null | undefined, set: (item: T, text: string) => T, scope?: ReadonlySet<string>): Promise<T[]> {
    if (scope !== undefined && scope.size === 0) return [...items];
    const forms = await this.forms(scope);
    if (forms.length === 0) return [...items];
    return items.map((item) => {
      const text = field(item);
      if (!text) return item;
      let out = text;
      for (const form of forms) if (out.includes(form)) out = out.replaceAll(form, REDACTED);
      return out === text ? item : set(item, out);
    });
  }

  /** The forms to redact for these secrets, longest first, so that a value containing another is replaced whole. */
  private async forms(scope: ReadonlySet<string> | undefined): Promise<string[]> {
    if (scope !== undefined && scope.size === 0) return [];
    const byName = await this.allValues();
    const forms = [...byName].flatMap(([name, values]) => (scope === undefined || scope.has(name) ? values : []));
    return forms.sort((a, b) => b.length - a.length);
  }

  private async allValues(): Promise<Map<string, string[]>> {
    const now = this.now();
    if (this.values && now - this.values.at < CACHE_MS) return this.values.byName;
    const sealed = await this.store.getSecrets();
    const byName = new Map<string, string[]>();
    for (const secret of sealed) {
      let value: string;
      try {
        value = this.open(secret.name, secret.sealed);
      } catch {
        continue;
      }
      // A value printed inside JSON appears escaped.
      const escaped = JSON.stringify(value).slice(1, -1);
      byName.set(secret.name, [...new Set([value, escaped])].filter((v) => v.length >= MIN_SECRET_LENGTH));
    }
    this.values = { at: now, byName };
    return byName;
  }
}

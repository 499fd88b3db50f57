/** inject() helpers that check every error body has the one shape. */
import type { FastifyInstance, InjectOptions } from "fastify";
import { expect } from "vitest";
import { ErrorBodySchema } from "../../wire/schema.js";

export interface Injected {
  status: number;
  body: any;
}

export async function call(app: FastifyInstance, options: InjectOptions): Promise<Injected> {
  const res = await app.inject(options);
  const body = res.body === "" ? undefined : JSON.parse(res.body);
  if (res.statusCode >= 400) {
    expect(ErrorBodySchema.safeParse(body).success, `error body shape: ${res.body}`).toBe(true);
    expect(res.statusCode, "no input may produce a 500").toBeLessThan(500);
  }
  return { status: res.statusCode, body };
}

/** Asserts an error answer with this status and code; returns the error object. */
export async function expectError(app: FastifyInstance, options: InjectOptions, status: number, code: string): Promise<any> {
  const res = await call(app, options);
  expect({ status: res.status, code: res.body?.error?.code }, JSON.stringify(res.body)).toEqual({ status, code });
  return res.body.error;
}

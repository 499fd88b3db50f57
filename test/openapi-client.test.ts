/**
 * The served OpenAPI document: valid OpenAPI 3.0 (checked by swagger-parser against the specification's
 * schema), with named types, from which a typed client is generated (openapi-typescript) and type-checked.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { startTestServer } from "./support/server.js";

const NAMED = ["Flow", "FlowCreate", "FlowRun", "FlowRunView", "FlowRunState", "Agent", "TaskRun", "LogLine", "StoredLog", "LogsPage", "Error", "Storage", "Schedule", "Token"];

describe("the OpenAPI document", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("is valid OpenAPI 3.0, names its schemas, and generates a typed client that compiles", { timeout: 60_000 }, async () => {
    const server = await startTestServer();
    let document: Record<string, unknown>;
    try {
      document = JSON.parse((await server.app.inject({ method: "GET", url: "/openapi.json" })).body) as Record<string, unknown>;
    } finally {
      await server.close();
    }
    // validate() dereferences in place: give it a copy.
    await SwaggerParser.validate(structuredClone(document) as never);
    const schemas = Object.keys((document.components as { schemas?: object }).schemas ?? {});
    expect(schemas).toEqual(expect.arrayContaining(NAMED));
    // Routes refer to them rather than inlining each: a flow's GET answers a Flow, a run's a FlowRunView.
    const paths = document.paths as Record<string, Record<string, { responses: Record<string, { content: { "application/json": { schema: unknown } } }> }>>;
    expect(paths["/api/flows/{id}"]!.get!.responses["200"]!.content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Flow" });
    expect(paths["/api/flow-runs/{id}"]!.get!.responses["4XX"]!.content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Error" });

    const client = astToString(await openapiTS(document as never));
    const dir = await mkdtemp(path.join(os.tmpdir(), "berth-openapi-"));
    dirs.push(dir);
    await writeFile(path.join(dir, "api.ts"), client);
    // A consumer of the generated types: it compiles only if each named type exists with the fields used.
    await writeFile(
      path.join(dir, "use.ts"),
      `import type { components, paths } from "./api.js";
type S = components["schemas"];
export function describeRun(run: S["FlowRunView"], flow: S["Flow"], agent: S["Agent"], line: S["LogLine"], task: S["TaskRun"]): string {
  const state: S["FlowRunState"] = run.state;
  return [flow.name, flow.version, state, agent.name, agent.status, line.message, task.state].join(" ");
}
export type GetFlow = paths["/api/flows/{id}"]["get"]["responses"][200]["content"]["application/json"];
export const same = (flow: GetFlow): S["Flow"] => flow;
export const failure = (body: S["Error"]): string => body.error.code + body.error.message;
`,
    );
    const program = ts.createProgram([path.join(dir, "use.ts")], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      skipLibCheck: false,
      types: [],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
    expect(problems).toEqual([]);
    expect(client).toMatch(/^\s+Flow: \{$/m);
  });
});

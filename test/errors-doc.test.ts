/** docs/errors.md documents every error code with its HTTP status and how to solve it; this keeps them in step. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../wire/errors.js";
import { REPO } from "./support/processes.js";

interface Row {
  code: string;
  status: number;
  where: string;
  meaning: string;
  solve: string;
}

function documented(): Row[] {
  const text = readFileSync(path.join(REPO, "docs", "errors.md"), "utf8");
  return text
    .split("\n")
    .filter((line) => line.startsWith("| `BERTH_E_"))
    .map((line) => {
      const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
      const [code = "", status = "", where = "", meaning = "", solve = ""] = cells;
      return { code: code.replace(/`/g, ""), status: Number(status), where, meaning, solve };
    });
}

describe("docs/errors.md", () => {
  it("has one row for every error code, and none for a code that does not exist", () => {
    const codes = documented().map((row) => row.code);
    expect(new Set(codes).size, "a code documented twice").toBe(codes.length);
    expect([...codes].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it("gives each code the HTTP status the server answers with", () => {
    for (const row of documented()) expect(row.status, row.code).toBe(ERROR_CODES[row.code as keyof typeof ERROR_CODES]);
  });

  it("says where each code comes from, what it means and how to solve it", () => {
    for (const row of documented()) {
      expect(row.where, row.code).toMatch(/^(server|local|server, local)$/);
      expect(row.meaning.length, `${row.code}: meaning`).toBeGreaterThan(20);
      expect(row.solve.length, `${row.code}: how to solve`).toBeGreaterThan(5);
    }
  });
});

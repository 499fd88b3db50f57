import { readFileSync } from "node:fs";

/** berth's version, from its package.json (two levels above the compiled cli/ directory). */
export const VERSION: string = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

#!/usr/bin/env node
/**
 * `berth`: the command line (cli/program.ts). `berth execute flow-run`, the entry point of every flow-run
 * container, goes straight to flow-run/main.ts: it takes no arguments, so it skips the command-line parser
 * and loads only what a run needs.
 */
const args = process.argv.slice(2);
if (args.length === 2 && args[0] === "execute" && args[1] === "flow-run") await (await import("../flow-run/main.js")).main();
else await import("./program.js");

#!/usr/bin/env node
/**
 * `berth`: the command line (cli/program.ts). `berth execute flow-run`, the entry point of every flow-run
 * container, goes straight to flow-run/main.ts: it takes no arguments, so it skips the command-line parser
 * and loads only what a run needs.
 */
const args = process.argv.slice(2);
if (args.length === 2 && args[0] === "execute" && args[1] === "flow-run") {
  // A warm container (flow-run/main.ts) has time before its run: V8 compiles berth's own code now, whole,
  // rather than each function at its first call on the run's clock. flow-run/main.ts turns lazy compiling
  // back on before the run's flow is loaded (a large bundled flow compiles as it would in a cold container).
  // (BERTH_WARM_TTL_MS is config/flow-run-env.ts's WARM_TTL_ENV, not imported: it would load lazily.)
  if (process.env.BERTH_WARM_TTL_MS) (await import("node:v8")).setFlagsFromString("--no-lazy");
  await (await import("../flow-run/main.js")).main();
} else await import("./program.js");

/**
 * Bundles a user's flow file with esbuild into one ESM module.
 *
 * Two targets, because `berth` itself must never be bundled into a flow: a custom environment's
 * `instanceof Environment` only holds if the flow and the flow-run process share one copy of berth.
 * - "image": `berth` stays a bare import, resolved inside the image from /opt/berth/node_modules/berth.
 * - "host": `berth` is rewritten to this very package's files, so `berth register` can load the flow
 *   with the same classes the CLI uses.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../shared/package.js";
import { BerthError } from "../wire/errors.js";
import { nameTasks } from "./task-names.js";

export type BundleTarget = "image" | "host";

export interface BundleOptions {
  target: BundleTarget;
  /** Modules left as imports (for the image: the storage's npm dependencies, installed in the image). */
  external?: readonly string[];
  signal?: AbortSignal;
}

const BERTH_IMPORT = /^berth(\/.*)?$/;

/** The package's own compiled entry points, by subpath ("" for the root). */
function hostEntry(subpath: string): string {
  const distRoot = path.join(packageRoot(), "dist");
  const rel = subpath === "" ? "index.js" : `${subpath.replace(/^\//, "")}/index.js`;
  const file = path.join(distRoot, rel);
  if (!existsSync(file)) {
    throw new BerthError("BERTH_E_FLOW_FILE", `the flow imports "berth${subpath}", which this berth does not provide`);
  }
  return pathToFileURL(file).href;
}

export async function bundleFlowFile(file: string, options: BundleOptions): Promise<string> {
  const absolute = path.resolve(file);
  if (!existsSync(absolute)) {
    throw new BerthError("BERTH_E_FLOW_FILE", `flow file not found: ${absolute}`);
  }
  const esbuild = await import("esbuild");
  const hostEntries = new Set<string>();
  const berthPlugin: import("esbuild").Plugin = {
    name: "berth-import",
    setup(build) {
      build.onResolve({ filter: BERTH_IMPORT }, (args) => {
        if (options.target === "image") return { path: args.path, external: true };
        const entry = hostEntry(args.path.slice("berth".length));
        hostEntries.add(entry);
        return { path: entry, external: true };
      });
    },
  };
  let result: import("esbuild").BuildResult & { outputFiles: import("esbuild").OutputFile[] };
  try {
    result = await esbuild.build({
      entryPoints: [absolute],
      absWorkingDir: path.dirname(absolute),
      bundle: true,
      write: false,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "silent",
      legalComments: "none",
      external: [...(options.external ?? [])],
      plugins: [berthPlugin],
      // Bundled CommonJS dependencies may call require() for Node built-ins.
      banner: {
        js: 'import { createRequire as __berthCreateRequire } from "node:module"; const require = __berthCreateRequire(import.meta.url);',
      },
    });
  } catch (err) {
    throw new BerthError("BERTH_E_FLOW_FILE", `cannot bundle ${file}:\n${formatEsbuildFailure(err)}`, { cause: err });
  }
  options.signal?.throwIfAborted();
  const output = result.outputFiles[0];
  if (!output) throw new BerthError("BERTH_E_FLOW_FILE", `bundling ${file} produced no output`);
  // Both targets name tasks alike, so the tasks registered on the host are the tasks that run in the image.
  return nameTasks(output.text, (source) => BERTH_IMPORT.test(source) || hostEntries.has(source));
}

function formatEsbuildFailure(err: unknown): string {
  const errors = (err as { errors?: Array<{ text: string; location?: { file: string; line: number; column: number; lineText: string } | null }> }).errors;
  if (!Array.isArray(errors) || errors.length === 0) return String((err as Error)?.message ?? err);
  return errors
    .slice(0, 10)
    .map((e) => {
      const at = e.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}: ` : "";
      const code = e.location?.lineText ? `\n    ${e.location.lineText.trim()}` : "";
      return `  ${at}error: ${e.text}${code}`;
    })
    .join("\n");
}

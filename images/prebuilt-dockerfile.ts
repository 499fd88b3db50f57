/**
 * The single-stage Dockerfile that builds the berth image from prebuilt artifacts (an installed berth's dist/
 * and production node_modules), derived from the repository's multi-stage Dockerfile so that its final stage
 * stays the one description of the image's layout.
 *
 * The derived file is the global ARGs the final FROM names, then the final stage, with each
 * `COPY --from=<stage> <that stage's WORKDIR>/<path> <dest>` turned into `COPY <path> <dest>` from the build
 * context. Building the original with the final stage as target would not do: the classic builder builds
 * every stage before the target, compiler and `npm ci` included.
 */
import path from "node:path";
import { DockerfileParser, Workdir, type Copy, type Flag, type ImageTemplate } from "dockerfile-ast";
import { BerthError } from "../wire/errors.js";

type Range = ReturnType<Flag["getRange"]>;
type Position = Range["start"];

interface Edit {
  start: number;
  end: number;
  text: string;
}

const HEADER = "# Derived by berth from its Dockerfile's final stage, to build from a prebuilt dist/ and node_modules/.\n";

/** `dockerfile`'s final stage, reading from the build context what it copied from earlier stages. */
export function prebuiltDockerfile(dockerfile: string, name = "Dockerfile"): string {
  const fail = (why: string): never => {
    throw new BerthError("BERTH_E_IMAGE_BUILD", `cannot derive the berth image's Dockerfile from ${name}: ${why}`);
  };
  const parsed = DockerfileParser.parse(dockerfile);
  const froms = parsed.getFROMs();
  const last = froms.at(-1) ?? fail("it has no FROM");
  const stage = parsed.getContainingImage(last.getRange().start) ?? fail("its final stage cannot be found");
  const stages = new Map<string, ImageTemplate>();
  for (const from of froms.slice(0, -1)) {
    const stageName = from.getBuildStage();
    const template = parsed.getContainingImage(from.getRange().start);
    if (stageName !== null && template !== null) stages.set(stageName.toLowerCase(), template);
  }

  const offsets = lineOffsets(dockerfile);
  const offset = (position: Position): number => (offsets[position.line] ?? dockerfile.length) + position.character;
  const stageStart = offset(last.getRange().start);
  const edits: Edit[] = [];
  const at = (range: Range, text: string, end = offset(range.end)): Edit => ({ start: offset(range.start) - stageStart, end: end - stageStart, text });

  for (const copy of stage.getCOPYs()) {
    const flags = copy.getFlags();
    const from = flags.find((flag) => flag.getName().toLowerCase() === "from");
    if (from === undefined) continue;
    const line = `line ${copy.getRange().start.line + 1}`;
    if (copy.getJSONStrings().length > 0) fail(`${line}: write COPY --from in the final stage in shell form, not JSON`);
    const source = from.getValue() ?? "";
    const workdir = stageWorkdir(stages.get(source.toLowerCase()) ?? fail(`${line} copies from "${source}", which is not a stage of this Dockerfile`));
    if (workdir === undefined) fail(`${line}: stage "${source}" has no absolute WORKDIR to read paths against`);
    const args = copy.getArguments();
    const sources = args.slice(0, -1);
    if (sources.length === 0) fail(`${line}: COPY needs a source and a destination`);
    edits.push(at(from.getRange(), "", offset(nextToken(copy, from).start)));
    for (const arg of sources) {
      const relative = underWorkdir(arg.getValue(), workdir as string);
      if (relative === undefined) fail(`${line} copies ${arg.getValue()}, which is not under stage "${source}"'s WORKDIR ${workdir}`);
      edits.push(at(arg.getRange(), relative as string));
    }
  }

  let body = dockerfile.slice(stageStart);
  for (const edit of edits.sort((a, b) => b.start - a.start)) body = body.slice(0, edit.start) + edit.text + body.slice(edit.end);
  const names = new Set(last.getVariables().map((variable) => variable.getName()));
  const args = parsed
    .getInitialARGs()
    .filter((arg) => names.has(arg.getProperty()?.getName() ?? ""))
    .map((arg) => `${dockerfile.slice(offset(arg.getRange().start), offset(arg.getRange().end))}\n`);
  return `${HEADER}${args.join("")}\n${body}`;
}

/** Offset of the first character of each line. */
function lineOffsets(text: string): number[] {
  const offsets = [0];
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) offsets.push(i + 1);
  return offsets;
}

/** Where the flag's successor (another flag, or the first argument) starts: deleting up to it drops the flag and its blank. */
function nextToken(copy: Copy, flag: Flag): Range {
  const after = [...copy.getFlags().map((f) => f.getRange()), ...copy.getArguments().map((a) => a.getRange())].filter(
    (range) => range.start.line > flag.getRange().end.line || (range.start.line === flag.getRange().end.line && range.start.character >= flag.getRange().end.character),
  );
  after.sort((a, b) => a.start.line - b.start.line || a.start.character - b.start.character);
  return after[0] ?? flag.getRange();
}

/** The stage's last WORKDIR as an absolute path without a trailing slash. */
function stageWorkdir(stage: ImageTemplate): string | undefined {
  const workdirs = stage.getInstructions().filter((instruction): instruction is Workdir => instruction instanceof Workdir);
  const workdir = workdirs.at(-1)?.getAbsolutePath();
  if (typeof workdir !== "string" || !workdir.startsWith("/")) return undefined;
  return path.posix.normalize(workdir).replace(/\/+$/, "") || "/";
}

/** `source` relative to `workdir`, keeping a trailing slash; undefined when it lies elsewhere. */
function underWorkdir(source: string, workdir: string): string | undefined {
  const relative = path.posix.relative(workdir, path.posix.normalize(source));
  if (relative === "" || relative.startsWith("..") || path.posix.isAbsolute(relative) || !source.startsWith("/")) return undefined;
  return source.endsWith("/") ? `${relative}/` : relative;
}

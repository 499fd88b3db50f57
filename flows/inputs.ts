/**
 * Which named inputs a task declares. Given explicitly (`inputs: ["a", "b?"]`, a trailing "?" marks an
 * optional input) or read off the source of a function whose first parameter is an object destructuring
 * pattern, so that binding a misspelt input fails where the flow is defined rather than deep in a run.
 * Anything the reader does not fully understand (rest elements, computed keys, `(inputs) => ...`) yields
 * `undefined`: the task then accepts any input names.
 */

export interface DeclaredInputs {
  readonly names: ReadonlySet<string>;
  /** Inputs without a default: a flow must bind them. */
  readonly required: readonly string[];
}

export function declareInputs(list: readonly string[]): DeclaredInputs {
  const names = new Set<string>();
  const required: string[] = [];
  for (const entry of list) {
    const optional = entry.endsWith("?");
    const name = optional ? entry.slice(0, -1) : entry;
    names.add(name);
    if (!optional) required.push(name);
  }
  return { names, required };
}

export function inferInputs(fn: Function): DeclaredInputs | undefined {
  let src: string;
  try {
    src = Function.prototype.toString.call(fn);
  } catch {
    return undefined;
  }
  // Native and bound functions show no parameters at all.
  if (src.endsWith("{ [native code] }")) return undefined;
  const open = parameterListStart(src);
  if (open < 0) return undefined;
  const first = skipSpace(src, open + 1);
  if (src[first] === ")") return { names: new Set(), required: [] };
  if (src[first] !== "{") return undefined;
  return parseObjectPattern(src, first);
}

/** Index of the "(" opening the parameter list; -1 for `x => ...`, classes, and the unrecognised. */
function parameterListStart(src: string): number {
  let i = skipSpace(src, 0);
  if (src.startsWith("async", i) && !isIdentChar(src[i + 5])) i = skipSpace(src, i + 5);
  if (src.startsWith("function", i) && !isIdentChar(src[i + 8])) return src.indexOf("(", i);
  if (src[i] === "(") return i;
  let j = i;
  while (isIdentChar(src[j])) j++;
  if (j === i) return -1;
  j = skipSpace(src, j);
  // Method shorthand `name({ a }) {}`; an arrow's single bare parameter is not a pattern.
  return src[j] === "(" ? j : -1;
}

function parseObjectPattern(src: string, open: number): DeclaredInputs | undefined {
  const names = new Set<string>();
  const required: string[] = [];
  let i = open + 1;
  for (;;) {
    i = skipSpace(src, i);
    const c = src[i];
    if (c === "}") return { names, required };
    if (c === undefined || c === "[" || src.startsWith("...", i)) return undefined;
    let key: string;
    if (c === '"' || c === "'") {
      const end = skipString(src, i);
      if (end < 0) return undefined;
      key = src.slice(i + 1, end - 1);
      if (key.includes("\\")) return undefined;
      i = end;
    } else {
      let j = i;
      while (isIdentChar(src[j])) j++;
      if (j === i) return undefined;
      key = src.slice(i, j);
      i = j;
    }
    // The rest of the entry is `[: pattern] [= default]`; a depth-0 "=" can only start the default.
    let hasDefault = false;
    const end = scan(src, i, (ch) => {
      if (ch === "=") hasDefault = true;
      return ch === "," || ch === "}";
    });
    if (end < 0) return undefined;
    names.add(key);
    if (!hasDefault) required.push(key);
    i = src[end] === "," ? end + 1 : end;
  }
}

/**
 * The index of the first character at nesting depth 0 that `stop` accepts, skipping strings, template
 * literals and comments; -1 when brackets close first or the source ends. (Regex literals are not
 * recognised: a default value containing one with an unbalanced bracket reads as unparseable or wrong.)
 */
function scan(src: string, from: number, stop: (c: string) => boolean): number {
  let depth = 0;
  let i = from;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '"' || c === "'") {
      i = skipString(src, i);
    } else if (c === "`") {
      i = skipTemplate(src, i);
    } else if (c === "/" && (src[i + 1] === "/" || src[i + 1] === "*")) {
      i = skipComment(src, i);
    } else {
      if (depth === 0 && stop(c)) return i;
      if (c === "(" || c === "[" || c === "{") depth++;
      else if (c === ")" || c === "]" || c === "}") {
        if (depth === 0) return -1;
        depth--;
      }
      i++;
    }
    if (i < 0) return -1;
  }
  return -1;
}

function skipString(src: string, open: number): number {
  const quote = src[open];
  for (let i = open + 1; i < src.length; i++) {
    const c = src[i];
    if (c === "\\") i++;
    else if (c === quote) return i + 1;
    else if (c === "\n") return -1;
  }
  return -1;
}

function skipTemplate(src: string, open: number): number {
  let i = open + 1;
  while (i < src.length) {
    const c = src[i];
    if (c === "\\") i += 2;
    else if (c === "`") return i + 1;
    else if (c === "$" && src[i + 1] === "{") {
      const close = scan(src, i + 2, (ch) => ch === "}");
      if (close < 0) return -1;
      i = close + 1;
    } else i++;
  }
  return -1;
}

function skipComment(src: string, open: number): number {
  if (src[open + 1] === "/") {
    const nl = src.indexOf("\n", open);
    return nl < 0 ? src.length : nl + 1;
  }
  const close = src.indexOf("*/", open + 2);
  return close < 0 ? -1 : close + 2;
}

function skipSpace(src: string, from: number): number {
  let i = from;
  for (;;) {
    const c = src[i];
    if (c === " " || c === "\n" || c === "\t" || c === "\r") i++;
    else if (c === "/" && (src[i + 1] === "/" || src[i + 1] === "*")) {
      i = skipComment(src, i);
      if (i < 0) return src.length;
    } else return i;
  }
}

function isIdentChar(c: string | undefined): boolean {
  if (c === undefined) return false;
  const code = c.charCodeAt(0);
  return (
    (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || (code >= 48 && code <= 57) || c === "_" || c === "$" || code > 127
  );
}

/**
 * Which named inputs a task declares. Given explicitly (`inputs: ["a", "b?"]`, a trailing "?" marks an
 * optional input) or read off the source of a function whose first parameter is an object destructuring
 * pattern, so that binding a misspelt input fails where the flow is defined rather than deep in a run.
 * The source is parsed with acorn; anything that is not a plain pattern of named keys (rest elements,
 * computed keys, `(inputs) => ...`, native code) yields `undefined`: the task then accepts any input names.
 */
import { parse, type Expression, type Node, type Pattern } from "acorn";

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

/** Parsing is cached per function: one task function is often wrapped many times (builders, copies). */
const inferred = new WeakMap<Function, DeclaredInputs | undefined>();

export function inferInputs(fn: Function): DeclaredInputs | undefined {
  if (inferred.has(fn)) return inferred.get(fn);
  const inputs = readInputs(fn);
  inferred.set(fn, inputs);
  return inputs;
}

function readInputs(fn: Function): DeclaredInputs | undefined {
  let src: string;
  try {
    src = Function.prototype.toString.call(fn);
  } catch {
    return undefined;
  }
  const params = parameters(src);
  if (params === undefined) return undefined;
  const first = params[0];
  if (first === undefined) return { names: new Set(), required: [] };
  // `({ a } = {}) => ...`: the pattern is what names the inputs.
  const pattern = first.type === "AssignmentPattern" ? first.left : first;
  return pattern.type === "ObjectPattern" ? objectPatternInputs(pattern) : undefined;
}

/**
 * The parameters of a function given by its source: an arrow, a function expression or declaration, or a
 * method (`name(...) {}`, which only parses inside an object literal). Undefined when it does not parse.
 */
function parameters(src: string): Pattern[] | undefined {
  for (const wrapped of [`(${src});`, `({${src}});`]) {
    let node: Expression;
    try {
      // The whole text must be one expression statement: `(a) => b, c` is not a function's source.
      const program = parse(wrapped, { ecmaVersion: "latest" });
      const statement = program.body[0];
      if (program.body.length !== 1 || statement?.type !== "ExpressionStatement") continue;
      node = statement.expression;
    } catch {
      continue;
    }
    if (node.type === "ArrowFunctionExpression" || node.type === "FunctionExpression") return node.params;
    if (node.type === "ObjectExpression" && node.properties.length === 1) {
      const method = node.properties[0];
      if (method?.type === "Property" && method.value.type === "FunctionExpression") return method.value.params;
    }
  }
  return undefined;
}

function objectPatternInputs(pattern: Extract<Pattern, { type: "ObjectPattern" }>): DeclaredInputs | undefined {
  const names = new Set<string>();
  const required: string[] = [];
  for (const property of pattern.properties) {
    if (property.type === "RestElement" || property.computed) return undefined;
    const key = keyName(property.key);
    if (key === undefined) return undefined;
    names.add(key);
    if (property.value.type !== "AssignmentPattern") required.push(key);
  }
  return { names, required };
}

function keyName(key: Node): string | undefined {
  if (key.type === "Identifier") return (key as Node & { name: string }).name;
  if (key.type === "Literal") {
    const value = (key as Node & { value: unknown }).value;
    return typeof value === "string" || typeof value === "number" ? String(value) : undefined;
  }
  return undefined;
}

/**
 * Names for anonymous tasks. In `const getValue = task(() => "Example!")` the function has no name, but the
 * bundle knows the variable: after esbuild has bundled a flow, every such declaration is rewritten to hand
 * its variable's name to the task (Task's BINDING_NAME), so logs, states and the watch say `getValue` rather
 * than `task-1`. A task that has a name of its own (options.name, a named function) keeps it. The bundle is
 * parsed with acorn; code that does not parse is left as it is and its tasks are named by position.
 */
import { parse, type Node } from "acorn";
import { simple } from "acorn-walk";

/** The registered symbol of flows/task.ts's BINDING_NAME, spelled out: the bundle runs with its own copy of berth. */
const HELPER = `const __berthNamed = (t, n) => { const name = t?.[Symbol.for("berth.Task.bindingName")]; if (typeof name === "function") name.call(t, n); return t; };\n`;

interface Identifier extends Node {
  type: "Identifier";
  name: string;
}

/** Rewrites `code` (an ES module) so that tasks assigned to variables are named after them. */
export function nameTasks(code: string, isBerthImport: (source: string) => boolean): string {
  let program;
  try {
    program = parse(code, { ecmaVersion: "latest", sourceType: "module" });
  } catch {
    return code;
  }
  // What berth's task factory and Task class are called in this module, and what berth namespaces are.
  const factories = new Set<string>();
  const namespaces = new Set<string>();
  for (const statement of program.body) {
    if (statement.type !== "ImportDeclaration" || !isBerthImport(String(statement.source.value))) continue;
    for (const spec of statement.specifiers) {
      if (spec.type === "ImportNamespaceSpecifier") namespaces.add(spec.local.name);
      else if (spec.type === "ImportSpecifier") {
        const imported = spec.imported.type === "Identifier" ? spec.imported.name : String(spec.imported.value);
        if (imported === "task" || imported === "Task") factories.add(spec.local.name);
      }
    }
  }
  if (factories.size === 0 && namespaces.size === 0) return code;
  const makesTask = (node: Node): boolean => {
    if (node.type !== "CallExpression" && node.type !== "NewExpression") return false;
    const callee = (node as Node & { callee: Node }).callee;
    if (callee.type === "Identifier") return factories.has((callee as Identifier).name);
    if (callee.type !== "MemberExpression") return false;
    const member = callee as Node & { object: Node; property: Node; computed: boolean };
    return (
      member.object.type === "Identifier" &&
      namespaces.has((member.object as Identifier).name) &&
      !member.computed &&
      member.property.type === "Identifier" &&
      ["task", "Task"].includes((member.property as Identifier).name)
    );
  };
  const edits: { at: number; text: string }[] = [];
  simple(program, {
    VariableDeclarator(node) {
      if (node.id.type !== "Identifier" || !node.init || !makesTask(node.init)) return;
      edits.push({ at: node.init.start, text: "__berthNamed(" }, { at: node.init.end, text: `, ${JSON.stringify(node.id.name)})` });
    },
  });
  if (edits.length === 0) return code;
  let out = code;
  for (const edit of edits.sort((a, b) => b.at - a.at)) out = out.slice(0, edit.at) + edit.text + out.slice(edit.at);
  // A hashbang must stay the first line.
  const hashbang = /^#![^\n]*\n/.exec(out)?.[0] ?? "";
  return hashbang + HELPER + out.slice(hashbang.length);
}
